"""Fine-tune a pair classifier ("are these two responses equivalent?") in JAX / optax, as the official recipe.

The official recipe (`evals/novelty-bench/src/classifier/finetune_classifier.py`, see
docs/darling_paper_and_code.md §1.4) trains on `[CLS] a [SEP] b [SEP]` inputs with **both orders** of every
pair, a **class-weighted cross-entropy** (weight_c = N / count_c over the training rows), AdamW with a linear
warmup and a cosine decay to a tenth of the peak, and gradient clipping. Here:

* one `jax.jit`-ed step `(graphdef static, state, opt_state, batch) -> (state, opt_state, metrics)` with the
  state and optimizer state donated; the model is split with `nnx.split` into trainable and frozen parameters
  (`TrainConfig.frozen`), and the optimizer is a plain optax transformation (no stateful objects under jit);
* rows are shuffled per epoch by `np.random.default_rng([seed, epoch])` (so a resumed run sees the same
  batches), each batch right-padded to the smallest width bucket that holds its longest row (the buckets of
  `darling_jax.equivalence.pairwise.width_buckets`); a short last batch is filled with zero-weight rows, so
  the step is traced at most once per bucket (`darling_jax.tracing.max_traces`);
* orbax checkpoints through `darling_jax.checkpointing.Checkpointer` (parameters, optimizer state, step, and the
  run's settings as its config) every `checkpoint_every` steps and at the end; a run pointed at a directory with
  a checkpoint resumes from it;
* the pairs are `pair_data.PairExample`s (`read_pair_jsonl` reads NoveltyBench's format); `pair_metrics`
  scores a trained model (`pair_probabilities` through `CrossEncoderClassifier` with the short-answer rule off,
  `classification_metrics`, `best_threshold`).

    examples = read_pair_jsonl("../shared/data/noveltybench/classifier_train.jsonl")
    model, history = train_pair_classifier(model, tokenizer, examples, TrainConfig(max_length=128))
    probs = pair_probabilities(model, tokenizer, examples, max_length=128, both_orders=True)
    classification_metrics(probs, [e.label for e in examples], best_threshold(probs, labels))

Labels: 1 = similar = the classifier's last class (what `similar_probability` reads), 0 = different.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from darling_jax import optim
from darling_jax.checkpointing import Checkpointer
from darling_jax.equivalence.encoding import PairFormat, pad_pairs, pair_ids, tokenize_responses
from darling_jax.equivalence.pair_data import PairExample
from darling_jax.equivalence.pairwise import width_buckets
from darling_jax.tracing import max_traces

NUM_CLASSES = 2  # 0 = different, 1 = similar


# ---------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Hyperparameters of `train_pair_classifier`.

  The defaults suit a small BERT (MiniLM / BERT-base size) on about a thousand pairs. The official ModernBERT
  run used a peak of 2e-5 for 80 steps of 64 rows; a small encoder with a fresh head learns faster with a
  somewhat larger peak, hence 5e-5.

  Attributes:
    max_length: longest pair in tokens, specials included; each response keeps `(max_length - 3) // 2`.
    batch_size: rows (ordered pairs) per step.
    epochs: passes over the training rows.
    learning_rate: AdamW peak learning rate, reached after the warmup.
    warmup_fraction: share of all steps spent in the linear warmup from 0.
    final_learning_rate_fraction: the cosine decay ends at `learning_rate * final_learning_rate_fraction`
      (the official recipe: 2e-5 -> 2e-6).
    weight_decay: AdamW decoupled weight decay, applied to matrices (kernels, embeddings) only, not to biases
      and LayerNorm scales.
    max_grad_norm: clip the gradient to this global norm.
    both_orders: train on `(a, b)` and `(b, a)` of every pair (the official recipe).
    class_weighted: weight class c's rows by N / count_c (the official recipe); else every row weighs 1.
    frozen: state-path prefixes (dotted, e.g. `"bert.embeddings"`) whose parameters are not trained.
    seed: shuffling seed (epoch e uses `np.random.default_rng([seed, e])`).
    checkpoint_every: with a checkpoint directory, save every this many steps (and at the end).
    keep_checkpoints: how many checkpoints to keep.
    log_every: log the mean loss every this many steps.
  """

  max_length: int = 256
  batch_size: int = 16
  epochs: int = 3
  learning_rate: float = 5e-5
  warmup_fraction: float = 0.1
  final_learning_rate_fraction: float = 0.1
  weight_decay: float = 0.01
  max_grad_norm: float = 1.0
  both_orders: bool = True
  class_weighted: bool = True
  frozen: tuple[str, ...] = ()
  seed: int = 0
  checkpoint_every: int = 100
  keep_checkpoints: int = 2
  log_every: int = 10

  def __post_init__(self):
    if isinstance(self.frozen, str):
      raise ValueError(f"TrainConfig.frozen={self.frozen!r} is invalid: must be a tuple of path prefixes")
    object.__setattr__(self, "frozen", tuple(self.frozen))
    checks = {
        "max_length": self.max_length >= 3,
        "batch_size": self.batch_size >= 1,
        "epochs": self.epochs >= 1,
        "learning_rate": self.learning_rate > 0,
        "warmup_fraction": 0 <= self.warmup_fraction < 1,
        "final_learning_rate_fraction": 0 <= self.final_learning_rate_fraction <= 1,
        "weight_decay": self.weight_decay >= 0,
        "max_grad_norm": self.max_grad_norm > 0,
        "checkpoint_every": self.checkpoint_every >= 1,
        "keep_checkpoints": self.keep_checkpoints >= 1,
        "log_every": self.log_every >= 1,
        "frozen": all(isinstance(p, str) and p for p in self.frozen),
    }
    rules = {
        "max_length": ">= 3", "warmup_fraction": "in [0, 1)", "final_learning_rate_fraction": "in [0, 1]",
        "weight_decay": ">= 0", "frozen": "a tuple of non-empty dotted path prefixes",
    }
    for key, ok in checks.items():
      if not ok:
        rule = rules.get(key, "> 0" if isinstance(getattr(self, key), float) else ">= 1")
        raise ValueError(f"TrainConfig.{key}={getattr(self, key)!r} is invalid: must be {rule}")

  def replace(self, **changes) -> TrainConfig:
    return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------- loss, optimizer, step
def _is_frozen(prefixes: tuple[str, ...]) -> Callable[[tuple, Any], bool]:
  def predicate(path: tuple, _) -> bool:
    name = ".".join(str(p) for p in path)
    return any(name == p or name.startswith(p + ".") for p in prefixes)
  return predicate


def class_weights(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
  """float32 `[C]`: weight_c = N / count_c (the official recipe); raises if a class has no rows."""
  counts = np.bincount(np.asarray(labels), minlength=num_classes)
  if (counts == 0).any():
    missing = [c for c in range(num_classes) if counts[c] == 0]
    raise ValueError(f"the training rows have no example of class(es) {missing} (1 = similar, 0 = different):"
                     " class weights N / count_c are undefined")
  return (len(labels) / counts).astype(np.float32)


def weighted_cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
  """`Σ w · nll / Σ w`: torch's `CrossEntropyLoss(weight=...)` mean when `w` is each row's class weight.

  Args:
    logits: float `[B, C]`. labels: int `[B]`. weights: float32 `[B]` (0 for padding rows).
  """
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
  return jnp.sum(weights * nll) / jnp.maximum(jnp.sum(weights), 1e-9)


def classifier_logits(model, batch: dict[str, jax.Array]) -> jax.Array:
  """float32 `[B, C]`; token_type_ids only for models that take them (BERT)."""
  if type(model).uses_token_type_ids:
    return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
  return model(batch["input_ids"], batch["attention_mask"])


def learning_rate_schedule(config: TrainConfig, total_steps: int) -> optax.Schedule:
  """Linear warmup from 0 to the peak over `warmup_fraction` of the steps, then cosine to the final rate."""
  warmup_steps = min(round(config.warmup_fraction * total_steps), total_steps - 1)
  return optim.learning_rate_schedule(
      "warmup_cosine", config.learning_rate, warmup_steps=warmup_steps,
      total_steps=max(total_steps, warmup_steps + 1),
      end_value=config.learning_rate * config.final_learning_rate_fraction)


def make_optimizer(config: TrainConfig, total_steps: int) -> optax.GradientTransformation:
  """Global-norm clipping, then AdamW (β = 0.9, 0.999; decay on ≥ 2-d parameters only): `optim.make_optimizer`."""
  return optim.make_optimizer(learning_rate_schedule(config, total_steps), weight_decay=config.weight_decay,
                              max_grad_norm=config.max_grad_norm, decay_matrices_only=True)


_copy_tree = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


def split_trainable(model, frozen_prefixes: Sequence[str] = ()) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
  """`(graphdef, trainable, frozen)`: the model's parameters outside / under the dotted path prefixes (plus
  any non-parameter state in `frozen`); `nnx.merge(graphdef, trainable, frozen)` rebuilds the model."""
  is_trainable = nnx.All(nnx.Param, nnx.Not(_is_frozen(tuple(frozen_prefixes))))
  graphdef, trainable, frozen = nnx.split(model, is_trainable, ...)
  if not jax.tree.leaves(trainable):
    raise ValueError(f"TrainConfig.frozen={tuple(frozen_prefixes)} leaves no parameter to train")
  return graphdef, trainable, frozen


@functools.lru_cache(maxsize=8)
def make_train_step(graphdef, config: TrainConfig, total_steps: int, logits_fn=classifier_logits):
  """The jitted pieces of one run: `(train_step, init_opt_state, learning_rates)`. Cached per (model
  structure, config, step count, forward), so K-fold runs of one size share their compilations.

  `train_step(graphdef, state, opt_state, batch) -> (state, opt_state, {"loss", "grad_norm"})`: `state` is
  the `(trainable, frozen)` parameter states of `split_trainable`; `batch` a dict with int32 `[B]` labels,
  float32 `[B]` weights (0 for padding rows) and the model inputs that `logits_fn(model, batch) -> [B, C]`
  reads (default `classifier_logits`: int32 `[B, W]` input_ids / attention_mask / token_type_ids). `state` and
  `opt_state` are donated. It is traced at most once per width bucket (`darling_jax.tracing.max_traces`).
  `init_opt_state(trainable)` is the jitted optimizer init; `learning_rates` float32 `[total_steps]` the
  schedule, step by step.
  """
  optimizer = make_optimizer(config, total_steps)

  def step(graphdef, state, opt_state, batch):
    trainable, frozen = state

    def loss_fn(trainable):
      model = nnx.merge(graphdef, trainable, frozen)
      return weighted_cross_entropy(logits_fn(model, batch), batch["labels"], batch["weights"])

    loss, grads = jax.value_and_grad(loss_fn)(trainable)
    updates, opt_state = optimizer.update(grads, opt_state, trainable)
    trainable = optax.apply_updates(trainable, updates)
    return (trainable, frozen), opt_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

  num_buckets = len(width_buckets(config.max_length))
  train_step = jax.jit(max_traces(step, n=num_buckets), static_argnames=("graphdef",),
                       donate_argnames=("state", "opt_state"))
  schedule = learning_rate_schedule(config, total_steps)
  learning_rates = np.asarray(jax.jit(jax.vmap(schedule))(np.arange(total_steps)), np.float32)
  return train_step, jax.jit(optimizer.init), learning_rates


# ---------------------------------------------------------------- batches
def encode_examples(tokenizer, examples: Sequence[PairExample], fmt: PairFormat,
                    both_orders: bool) -> tuple[list[tuple[list[int], list[int]]], np.ndarray]:
  """Training rows `(ids, token_type_ids)` `[CLS] a [SEP] b [SEP]` (and `b, a` right after each when
  `both_orders`), and their int32 labels `[R]`. Each response is tokenized once."""
  texts = [text for e in examples for text in (e.text_a, e.text_b)]
  token_ids = tokenize_responses(tokenizer, texts, fmt.response_budget)
  rows, labels = [], []
  for i, example in enumerate(examples):
    a, b = token_ids[2 * i], token_ids[2 * i + 1]
    rows.append(pair_ids(a, b, fmt))
    labels.append(example.label)
    if both_orders:
      rows.append(pair_ids(b, a, fmt))
      labels.append(example.label)
  return rows, np.asarray(labels, np.int32)


def epoch_batches(rows, labels: np.ndarray, row_weights: np.ndarray, fmt: PairFormat, config: TrainConfig,
                  epoch: int, skip: int = 0) -> Iterator[dict[str, np.ndarray]]:
  """The batches of one epoch in the seeded order, from batch `skip` on; each padded to its width bucket and
  to `batch_size` rows (zero-weight filler rows)."""
  widths = width_buckets(fmt.max_length)
  order = np.random.default_rng([config.seed, epoch]).permutation(len(rows))
  filler = pair_ids([], [], fmt)
  for start in range(skip * config.batch_size, len(order), config.batch_size):
    members = order[start:start + config.batch_size]
    longest = max(len(rows[r][0]) for r in members)
    width = next(w for w in widths if w >= longest)
    padding = config.batch_size - len(members)
    ids, mask, types = pad_pairs([rows[r] for r in members] + [filler] * padding, width, fmt.pad_id)
    yield {
        "input_ids": ids, "attention_mask": mask, "token_type_ids": types,
        "labels": np.concatenate([labels[members], np.zeros(padding, np.int32)]),
        "weights": np.concatenate([row_weights[members], np.zeros(padding, np.float32)]).astype(np.float32),
    }


# ---------------------------------------------------------------- checkpoints
def _checkpoint_meta(config: TrainConfig, num_rows: int, total_steps: int) -> dict[str, Any]:
  return {"config": dataclasses.asdict(config) | {"frozen": list(config.frozen)}, "num_rows": num_rows,
          "total_steps": total_steps}


def _open_checkpoints(directory, config: TrainConfig, meta: dict[str, Any]) -> Checkpointer:
  """A `Checkpointer` on `directory`; if it holds a checkpoint, that checkpoint's run must match this one (the
  data size, step count and every TrainConfig field but the checkpoint / log cadence), checked before any
  work."""
  checkpoints = Checkpointer(directory, max_to_keep=config.keep_checkpoints, async_save=False)
  step = checkpoints.latest_step()
  if step is None:
    return checkpoints
  saved = checkpoints.restore_config(step) or {}
  where = f"checkpoint {checkpoints.directory} step {step}"
  for key in ("num_rows", "total_steps"):
    if saved.get(key) != meta[key]:
      raise ValueError(f"{where}: {key}={saved.get(key)} differs from this run's {meta[key]}; use a fresh "
                       "checkpoint_dir")
  for key, value in meta["config"].items():
    if key not in ("checkpoint_every", "keep_checkpoints", "log_every") and saved["config"].get(key) != value:
      raise ValueError(f"{where}: TrainConfig.{key}={saved['config'].get(key)!r} differs from this run's "
                       f"{value!r}; use a fresh checkpoint_dir")
  return checkpoints


# ---------------------------------------------------------------- training
def train_pair_classifier(model, tokenizer, examples: Sequence[PairExample],
                          config: TrainConfig = TrainConfig(), *,
                          checkpoint_dir: str | os.PathLike | None = None, max_steps: int | None = None,
                          log: Callable[[str], None] = print) -> tuple[Any, list[dict[str, float]]]:
  """Fine-tunes `model` as a pair classifier (label 1 = similar = its last class).

  Args:
    model: a 2-class classifier from `darling_jax.classifiers` (e.g. `classifier_from_encoder(...)`); it is
      not modified (training works on a copy of its parameters).
    tokenizer: its transformers tokenizer (needs cls/sep tokens).
    examples: the training pairs.
    config: hyperparameters.
    checkpoint_dir: save orbax checkpoints here; resume from the latest one when present (same data and
      config required).
    max_steps: stop after this global step (a time-boxed run; the schedule still spans `epochs`).
    log: progress lines.

  Returns:
    `(trained model, history)`: history has one dict per step run now: step, epoch, loss, grad_norm,
    learning_rate, width.
  """
  if not examples:
    raise ValueError("no training examples")
  num_labels = getattr(model.config, "num_labels", None)
  if num_labels != NUM_CLASSES:
    raise ValueError(f"pair classifiers have 2 classes (0 = different, 1 = similar); the model has "
                     f"{num_labels}")
  fmt = PairFormat.from_tokenizer(tokenizer, config.max_length)
  rows, labels = encode_examples(tokenizer, examples, fmt, config.both_orders)
  weights_by_class = class_weights(labels) if config.class_weighted else np.ones(NUM_CLASSES, np.float32)
  row_weights = weights_by_class[labels]
  steps_per_epoch = math.ceil(len(rows) / config.batch_size)
  total_steps = steps_per_epoch * config.epochs
  stop = total_steps if max_steps is None else min(max_steps, total_steps)

  meta = _checkpoint_meta(config, len(rows), total_steps)
  checkpoints = None if checkpoint_dir is None else _open_checkpoints(checkpoint_dir, config, meta)

  graphdef, trainable, frozen = split_trainable(model, config.frozen)
  state = _copy_tree((trainable, frozen))  # the step donates its inputs: never the caller's arrays
  train_step, init_opt_state, learning_rates = make_train_step(graphdef, config, total_steps)
  opt_state = init_opt_state(state[0])
  step = 0
  if checkpoints is not None and checkpoints.latest_step() is not None:
    restored, _, _ = checkpoints.restore({"state": state, "opt_state": opt_state})
    state, opt_state, step = restored["state"], restored["opt_state"], checkpoints.latest_step()
    log(f"resumed from {checkpoints.directory} at step {step}")

  def save(at_step: int) -> None:
    if checkpoints is not None and checkpoints.latest_step() != at_step:
      checkpoints.save(at_step, {"state": state, "opt_state": opt_state}, config=meta, force=True)

  orders = "both orders" if config.both_orders else "one order"
  log(f"training on {len(examples)} pairs = {len(rows)} rows ({orders}), class weights "
      f"{np.round(weights_by_class, 3).tolist()}, {steps_per_epoch} steps/epoch x {config.epochs} epochs = "
      f"{total_steps} steps, max_length {fmt.max_length}")
  history: list[dict[str, float]] = []
  started, window = time.perf_counter(), []
  while step < stop:
    epoch, skip = divmod(step, steps_per_epoch)
    for batch in epoch_batches(rows, labels, row_weights, fmt, config, epoch, skip):
      state, opt_state, metrics = train_step(graphdef, state, opt_state, batch)
      step += 1
      record = {"step": step, "epoch": epoch, "loss": float(metrics["loss"]),
                "grad_norm": float(metrics["grad_norm"]), "learning_rate": float(learning_rates[step - 1]),
                "width": batch["input_ids"].shape[1]}
      history.append(record)
      window.append(record["loss"])
      if step % config.log_every == 0 or step == stop:
        elapsed = time.perf_counter() - started
        log(f"step {step}/{total_steps} epoch {epoch} loss {np.mean(window):.4f} "
            f"lr {record['learning_rate']:.2e} grad_norm {record['grad_norm']:.3f} "
            f"({len(history) / elapsed:.2f} steps/s)")
        window = []
      if step % config.checkpoint_every == 0:
        save(step)
      if step >= stop:
        break
  save(step)
  if checkpoints is not None:
    checkpoints.close()
  return nnx.merge(graphdef, *state), history
