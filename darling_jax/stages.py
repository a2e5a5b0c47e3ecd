"""The cached stages of a run before RL: the starting policy (a checkpoint, or the task's own policy and its warm
start) and the pair classifier. Each stage that trains something writes an HF directory into the workdir
atomically (with `darling.json`: what it measured), and a later run loads it instead of training again.

    settings = PolicySettings(checkpoint="/path/to/model.gguf")
    policy = policy_stage(workdir / "policy_sft", settings, task, data, seed=0, mesh=mesh)
    equivalence, info = classifier_stage(workdir / "classifier", ClassifierSettings(path=...), task, data, seed=0)
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from darling_jax.config_sections import dataclass_from_section
from darling_jax.models import DecoderLM, load_pretrained, load_tokenizer, save_pretrained

STAGE_INFO_FILE = "darling.json"
DEFAULT_CLASSIFIER_THRESHOLD = 0.5
DEFAULT_CLASSIFIER_MAX_LENGTH = 256
CLASSIFIER_KINDS = ("bi_encoder", "cross_encoder")
BI_ENCODER_TRAIN_KEYS = ("l2",)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


# ---------------------------------------------------------------------------------------------- settings
@dataclasses.dataclass(frozen=True)
class PolicySettings:
  """The `policy` section: where the policy RL starts from.

  Attributes:
    checkpoint: an HF directory (config.json + safetensors + tokenizer files) or a llama.cpp `.gguf` file; its
      tokenizer, chat template and EOS ids come with it. Empty: the task's own policy (`Task.initial_policy`).
    dtype: compute dtype of the policy, "float32" or "bfloat16".
    param_dtype: storage dtype of its parameters, and so of the AdamW moments (empty: `dtype`). "float32" with
      `dtype="bfloat16"` is the usual mixed precision of LLM RL (verl's FSDP, MaxText): float32 master weights
      and optimizer state, bfloat16 matmuls.
    remat: rematerialise each layer in the update's backward pass (less memory, more compute).
  """

  checkpoint: str = ""
  dtype: str = "float32"
  param_dtype: str = ""
  remat: bool = False

  def __post_init__(self):
    if self.dtype not in DTYPES:
      raise ValueError(f"policy.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
    if self.param_dtype and self.param_dtype not in DTYPES:
      raise ValueError(f"policy.param_dtype must be one of {sorted(DTYPES)} (or empty), got {self.param_dtype!r}")
    if self.checkpoint and not os.path.exists(os.path.expanduser(self.checkpoint)):
      raise FileNotFoundError(f"policy.checkpoint {self.checkpoint!r} does not exist")

  def dtypes(self) -> dict[str, Any]:
    """`load_pretrained`'s `dtype` / `param_dtype` arguments."""
    return {"dtype": DTYPES[self.dtype], "param_dtype": DTYPES[self.param_dtype or self.dtype]}


@dataclasses.dataclass(frozen=True)
class ClassifierSettings:
  """The `classifier` section: the pair classifier of the "classifier" diversity source (and of evaluation).

  Where it comes from, in this order: `path` (a directory `darling_jax.equivalence.loading` reads: a bi-encoder
  saved by `save_bi_encoder`, or an HF directory of any `darling_jax.classifiers` model, e.g. written by
  `save_classifier`); else the task's own classifier (`Task.train_classifier`); else one trained here on
  `train_pairs` (a JSONL of labelled pairs, NoveltyBench's fields) from the BERT `encoder`, of `kind`
  "bi_encoder" (`train_bi_encoder`; `train` may set `l2`) or "cross_encoder" (`train`: `TrainConfig` fields of
  `darling_jax.equivalence.training`). Trained ones are cached in `workdir/classifier`.

  Attributes:
    path, train_pairs, encoder, kind, train: see above.
    threshold: P(similar) above which two responses are equivalent (None: the directory's `darling.json`
      value, else 0.5).
    max_length: tokens of a pair `[CLS] a [SEP] b [SEP]` (cross-encoder) or of one response (bi-encoder) (None:
      the directory's `darling.json` value, else 256).
    both_orders: cross-encoder: average P(similar) over (a, b) and (b, a).
    rows_per_call: pairs per jitted classifier call.
    short_answer_max_words: the official short-answer rule (responses of at most this many words are compared by
      word overlap, never by the model); None turns it off.
    dtype: a cross-encoder's compute and parameter dtype, "float32" or "bfloat16" (a 4B decoder classifier takes
      16 GB in float32).
  """

  path: str = ""
  threshold: float | None = None
  max_length: int | None = None
  both_orders: bool = True
  rows_per_call: int = 256
  short_answer_max_words: int | None = 5
  train_pairs: str = ""
  encoder: str = ""
  kind: str = "bi_encoder"
  train: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  dtype: str = "float32"

  def __post_init__(self):
    if self.dtype not in DTYPES:
      raise ValueError(f"classifier.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
    if self.kind not in CLASSIFIER_KINDS:
      raise ValueError(f"classifier.kind must be one of {CLASSIFIER_KINDS}, got {self.kind!r}")
    unknown = sorted(set(self.train) - set(BI_ENCODER_TRAIN_KEYS))
    if self.kind == "bi_encoder" and self.train_pairs and unknown:
      raise ValueError(f"classifier.train has keys {unknown} that a bi-encoder does not take (only "
                       f"{list(BI_ENCODER_TRAIN_KEYS)}; set classifier.kind='cross_encoder' for TrainConfig fields)")
    if self.path and not os.path.isdir(os.path.expanduser(self.path)):
      raise FileNotFoundError(f"classifier.path {self.path!r} is not a directory")
    if self.train_pairs and not self.path:
      if not os.path.isfile(os.path.expanduser(self.train_pairs)):
        raise FileNotFoundError(f"classifier.train_pairs {self.train_pairs!r} does not exist (set it to a JSONL of "
                                "labelled pairs, or classifier.path to a trained pair classifier)")
      if not self.encoder:
        raise ValueError("classifier.train_pairs is set but classifier.encoder is empty: name the BERT encoder "
                         "directory to train the pair classifier from")
      if not os.path.isdir(os.path.expanduser(self.encoder)):
        raise FileNotFoundError(f"classifier.encoder {self.encoder!r} is not a directory")
    if self.threshold is not None and not 0 <= self.threshold <= 1:
      raise ValueError(f"classifier.threshold must be in [0, 1], got {self.threshold}")
    if self.rows_per_call < 1:
      raise ValueError(f"classifier.rows_per_call must be >= 1, got {self.rows_per_call}")

  def source(self, task) -> str | None:
    """"path", "task", "pairs", or None (no classifier can be had)."""
    if self.path:
      return "path"
    if task.has_classifier():
      return "task"
    if self.train_pairs:
      return "pairs"
    return None


@dataclasses.dataclass
class Policy:
  """The starting policy: the model, its tokenizer, the ids that end a response, and where it came from."""

  model: DecoderLM
  tokenizer: Any
  eos_ids: tuple[int, ...]
  source: str
  info: dict[str, Any]


# ---------------------------------------------------------------------------------------------- helpers
def read_stage_info(directory: pathlib.Path) -> dict[str, Any] | None:
  path = pathlib.Path(directory) / STAGE_INFO_FILE
  return json.loads(path.read_text()) if path.exists() else None


def write_stage_info(directory: pathlib.Path, info: Mapping[str, Any]) -> None:
  (pathlib.Path(directory) / STAGE_INFO_FILE).write_text(json.dumps(dict(info), indent=2))


def parameter_count(model) -> int:
  return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def eos_ids_of(tokenizer, model: DecoderLM, checkpoint: str | None = None) -> tuple[int, ...]:
  """The token ids that end a response: the tokenizer's EOS, the model config's, and (HF directories) those of
  `generation_config.json` (e.g. Llama 3's `<|eot_id|>`)."""
  ids = []
  for value in (getattr(tokenizer, "eos_token_id", None), model.config.eos_token_id):
    ids.extend(value if isinstance(value, (list, tuple)) else [value])
  if checkpoint and os.path.isdir(checkpoint):
    generation = pathlib.Path(checkpoint) / "generation_config.json"
    if generation.exists():
      value = json.loads(generation.read_text()).get("eos_token_id")
      ids.extend(value if isinstance(value, list) else [value])
  ids = tuple(dict.fromkeys(int(i) for i in ids if i is not None))
  if not ids:
    raise ValueError(f"no end-of-sequence token id in the tokenizer or config of {checkpoint or 'the policy'}")
  return ids


def _check_vocabulary(model: DecoderLM, tokenizer, source: str) -> None:
  if model.config.vocab_size < len(tokenizer):
    raise ValueError(f"the policy in {source} has vocab_size={model.config.vocab_size}, fewer than the tokenizer's "
                     f"{len(tokenizer)} tokens: it was trained for another vocabulary; delete {source} to train it "
                     "again (or use a matching tokenizer)")


# ---------------------------------------------------------------------------------------------- policy
def load_policy_checkpoint(settings: PolicySettings, mesh=None) -> tuple[DecoderLM, Any, str]:
  """`(model, tokenizer, path)` of `settings.checkpoint` (HF directory or `.gguf`)."""
  path = os.path.expanduser(settings.checkpoint)
  model = load_pretrained(path, **settings.dtypes(), mesh=mesh, remat=settings.remat)
  if not isinstance(model, DecoderLM):
    raise ValueError(f"policy.checkpoint {path!r} is a {type(model).__name__}, not a causal LM")
  return model, load_tokenizer(path), path


def policy_stage(directory: pathlib.Path, settings: PolicySettings, task, data, *, seed: int, mesh=None,
                 log: Callable[[str], None] = print) -> Policy:
  """The policy RL starts from.

  * A task warm start (`task.warm_start_enabled()`), from `settings.checkpoint` or the task's own policy: trained
    once into `directory` (an HF directory with the tokenizer) and loaded from there afterwards.
  * No warm start, a checkpoint: the checkpoint itself.
  * No warm start, the task's own policy: its initialisation, saved into `directory` (so a resumed run and the
    reference policy load the same parameters).
  """
  directory = pathlib.Path(directory)
  info = read_stage_info(directory)
  if info is not None:
    log(f"policy: reusing {directory}")
    model = load_pretrained(str(directory), **settings.dtypes(), mesh=mesh, remat=settings.remat)
    tokenizer = load_tokenizer(str(directory))
    _check_vocabulary(model, tokenizer, str(directory))
    return Policy(model, tokenizer, eos_ids_of(tokenizer, model), str(directory), info)
  if settings.checkpoint:
    model, tokenizer, source = load_policy_checkpoint(settings, mesh)
    eos_ids = eos_ids_of(tokenizer, model, source)
    if not task.warm_start_enabled():
      log(f"policy: {source} ({parameter_count(model) / 1e6:.1f}M parameters)")
      return Policy(model, tokenizer, eos_ids, source, {"checkpoint": source, "parameters": parameter_count(model)})
  else:
    made = task.initial_policy(settings, seed)
    if made is None:
      raise ValueError(f"policy.checkpoint is empty and task {task.name!r} has no policy of its own: set "
                       "policy.checkpoint to an HF directory or a .gguf file")
    model, tokenizer = made
    eos_ids = eos_ids_of(tokenizer, model)
    source = f"task {task.name!r}"
  _check_vocabulary(model, tokenizer, source)
  info = {"source": source, "parameters": parameter_count(model), "seconds": 0.0, "steps": 0}
  if task.warm_start_enabled():
    started = time.perf_counter()
    log(f"policy: warm start of {source} -> {directory}")
    model, warm_info = task.warm_start(model, tokenizer, data, seed=seed, log=lambda line: log("  " + line))
    info.update(warm_info, seconds=time.perf_counter() - started)
  save_pretrained(model, str(directory), tokenizer=tokenizer)
  write_stage_info(directory, info)
  return Policy(model, tokenizer, eos_ids, str(directory), info)


# ---------------------------------------------------------------------------------------------- classifier
def classifier_stage(directory: pathlib.Path, settings: ClassifierSettings, task, data, *, seed: int,
                     log: Callable[[str], None] = print):
  """`(EquivalenceClassifier, info)` from `settings` (see `ClassifierSettings` for the order of sources), or
  `(None, {})` when there is none."""
  from darling_jax.equivalence.loading import load_equivalence_classifier
  source = settings.source(task)
  if source is None:
    return None, {}
  directory = pathlib.Path(directory)
  if source == "path":
    directory = pathlib.Path(os.path.expanduser(settings.path))
    info = read_stage_info(directory) or {}
    log(f"classifier: {directory}")
  elif (info := read_stage_info(directory)) is not None:
    log(f"classifier: reusing {directory}")
  else:
    started = time.perf_counter()
    log(f"classifier: training -> {directory}")
    indented = lambda line: log("  " + line)
    if source == "pairs" and settings.kind == "bi_encoder":  # saves itself: an encoder and a fitted head
      info = train_bi_encoder_on_pairs(settings, directory, started=started, log=indented)
    else:
      from darling_jax.equivalence.loading import save_pair_model
      model, tokenizer, info = (task.train_classifier(data, seed=seed, log=indented) if source == "task" else
                                train_classifier_on_pairs(settings, seed=seed, log=indented))
      info = {**info, "seconds": time.perf_counter() - started}
      save_pair_model(model, str(directory), tokenizer=tokenizer)
      write_stage_info(directory, info)
  threshold = settings.threshold if settings.threshold is not None else info.get(
      "threshold", DEFAULT_CLASSIFIER_THRESHOLD)
  max_length = settings.max_length or info.get("max_length", info.get("max_tokens", DEFAULT_CLASSIFIER_MAX_LENGTH))
  equivalence = load_equivalence_classifier(directory, threshold=float(threshold), max_length=int(max_length),
                                            both_orders=settings.both_orders,
                                            short_answer_max_words=settings.short_answer_max_words,
                                            rows_per_call=settings.rows_per_call,
                                            dtype=None if settings.dtype == "float32" else DTYPES[settings.dtype])
  return equivalence, {"source": str(directory), "kind": equivalence.kind,
                       "threshold": float(threshold), "max_length": int(max_length),
                       **{k: v for k, v in info.items()
                          if k not in ("threshold", "max_length", "max_tokens", "kind", "head")}}


def train_bi_encoder_on_pairs(settings: ClassifierSettings, directory: pathlib.Path, *, started: float,
                              log: Callable[[str], None]) -> dict[str, Any]:
  """A `BiEncoderClassifier` over `settings.encoder` with its head fitted on `settings.train_pairs`, saved to
  `directory` (`save_bi_encoder`); returns its `darling.json` info (training-pair metrics included)."""
  from darling_jax.equivalence.bi_encoder import save_bi_encoder, train_bi_encoder
  from darling_jax.equivalence.pair_data import labels_of, read_pair_jsonl
  from darling_jax.equivalence.pair_metrics import classification_metrics
  encoder = os.path.expanduser(settings.encoder)
  examples = read_pair_jsonl(os.path.expanduser(settings.train_pairs))
  kwargs = {"max_tokens": settings.max_length} if settings.max_length else {}
  classifier, features = train_bi_encoder(encoder, examples, l2=float(settings.train.get("l2", 1.0)),
                                          threshold=settings.threshold, **kwargs)
  probs = classifier.head.probabilities(features)
  metrics = classification_metrics(probs, labels_of(examples), classifier.threshold)
  log(f"bi-encoder head fitted on {len(examples)} pairs: training-pair accuracy {metrics['accuracy']:.3f}, "
      f"balanced {metrics['balanced_accuracy']:.3f} at threshold {classifier.threshold:.3f}")
  info = {"encoder": encoder, "train_pairs": os.path.expanduser(settings.train_pairs), "pairs": len(examples),
          **{f"train_{k}": float(v) for k, v in metrics.items()}, "seconds": time.perf_counter() - started}
  save_bi_encoder(classifier, directory, info=info)
  return read_stage_info(directory)


def train_classifier_on_pairs(settings: ClassifierSettings, *, seed: int, log: Callable[[str], None]):
  """A BERT cross-encoder from `settings.encoder` fine-tuned on the labelled pairs of `settings.train_pairs`
  (`darling_jax.equivalence.training`: the official recipe, both orders, class-weighted). Returns
  `(model, tokenizer, info)` with the training pairs' accuracy at the threshold."""
  import numpy as np

  from darling_jax.classifiers.from_encoder import classifier_from_encoder
  from darling_jax.equivalence.pair_data import read_pair_jsonl
  from darling_jax.equivalence.pair_metrics import classification_metrics, pair_probabilities
  from darling_jax.equivalence.training import TrainConfig, train_pair_classifier
  train_config = dataclass_from_section(settings.train, TrainConfig, "classifier.train", seed=seed)
  encoder = os.path.expanduser(settings.encoder)
  examples = read_pair_jsonl(os.path.expanduser(settings.train_pairs))
  model = classifier_from_encoder(encoder, seed=seed)
  tokenizer = load_tokenizer(encoder)
  model, history = train_pair_classifier(model, tokenizer, examples, train_config, log=log)
  threshold = settings.threshold if settings.threshold is not None else DEFAULT_CLASSIFIER_THRESHOLD
  probs = pair_probabilities(model, tokenizer, examples, max_length=train_config.max_length, both_orders=True)
  labels = np.asarray([e.label for e in examples], np.int32)
  train_metrics = classification_metrics(probs, labels, threshold)
  log(f"training-pair accuracy {train_metrics['accuracy']:.3f} at threshold {threshold}")
  return model, tokenizer, {"threshold": float(threshold), "max_length": train_config.max_length,
                            "encoder": encoder, "train_pairs": os.path.expanduser(settings.train_pairs),
                            "pairs": len(examples), "steps": len(history),
                            **{f"train_{k}": float(v) for k, v in train_metrics.items()}}
