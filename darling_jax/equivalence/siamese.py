"""The siamese `EquivalenceClassifier` and its trainer: each distinct response encoded once by a trained
`SiameseBertClassifier`, every pair scored by its head in one jitted call.

    model, history = train_siamese_classifier(SiameseBertClassifier(config, rngs=nnx.Rngs(0)), tokenizer,
                                              examples, cfg)
    classifier = SiameseClassifier(model, tokenizer, max_tokens=32, threshold=0.5)
    equivalent, probs = classifier(groups)                       # bool / float32 [B, G, G]

Per batch of B groups of G responses: encoder rows = distinct responses (≤ B·G, in width buckets), instead of
the cross-encoder's B·G(G−1)/2 pair rows (×2 with both orders).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from darling_jax.diversity.short_answer import DEFAULT_MAX_WORDS
from darling_jax.equivalence.base import EquivalenceClassifier
from darling_jax.equivalence.encoding import PairFormat, pad_rows, tokenize_responses
from darling_jax.equivalence.pair_data import PairExample
from darling_jax.equivalence.pairwise import padded_row_chunks, width_buckets
from darling_jax.equivalence.training import TrainConfig, class_weights, learning_rate_schedule, make_optimizer
from darling_jax.tracing import max_traces


def encode_texts(tokenizer, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
  """`[CLS] text [SEP]` ids of each text, the text cut to `max_tokens − 2` tokens."""
  fmt = PairFormat.from_tokenizer(tokenizer, max(max_tokens, 3))
  return [[fmt.cls_id, *ids, fmt.sep_id] for ids in tokenize_responses(tokenizer, texts, max_tokens - 2)]


@functools.partial(jax.jit, static_argnames=("graphdef",))
def siamese_embed(graphdef, state, input_ids, attention_mask):
  """int32 `[R, W]` -> float32 `[R, E]` mean-pooled embeddings."""
  return nnx.merge(graphdef, state).embed(input_ids, attention_mask)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def siamese_similar_probability(graphdef, state, u, v):
  """float32 `[P, E]` × 2 -> float32 `[P]` P(similar) = σ(head logit)."""
  return jax.nn.sigmoid(nnx.merge(graphdef, state).pair_logits(u, v))


class SiameseClassifier(EquivalenceClassifier):
  """An `EquivalenceClassifier` over a `SiameseBertClassifier` (see the module docstring).

  Args:
    model: the trained `SiameseBertClassifier`. tokenizer: its tokenizer (cls / sep / pad tokens).
    max_tokens: tokens per response, [CLS] and [SEP] included.
    threshold, short_answer_max_words: see `EquivalenceClassifier`.
    rows_per_call: responses per jitted encoder call.
    sharding: optional sharding of the `[R, W]` token arrays (rows over the data axes).
  """

  kind = "siamese"

  def __init__(self, model, tokenizer, *, max_tokens: int = 64, threshold: float = 0.5,
               short_answer_max_words: int | None = DEFAULT_MAX_WORDS, rows_per_call: int = 256,
               sharding: jax.sharding.Sharding | None = None):
    super().__init__(threshold=threshold, short_answer_max_words=short_answer_max_words)
    if not 3 <= max_tokens <= model.config.max_position_embeddings:
      raise ValueError(f"max_tokens must be in [3, {model.config.max_position_embeddings}], got {max_tokens}")
    if rows_per_call < 1:
      raise ValueError(f"rows_per_call must be >= 1, got {rows_per_call}")
    self.graphdef, self.state = nnx.split(model)
    self.hidden_size = model.config.hidden_size
    self.tokenizer = tokenizer
    self.max_tokens = int(max_tokens)
    self.rows_per_call = rows_per_call
    self.sharding = sharding
    self.pad_id = PairFormat.from_tokenizer(tokenizer, max(self.max_tokens, 3)).pad_id
    self.widths = width_buckets(self.max_tokens)

  def embed(self, texts: Sequence[str]) -> np.ndarray:
    """float32 `[N, E]`: each text once, in width buckets of `rows_per_call` rows."""
    rows = encode_texts(self.tokenizer, texts, self.max_tokens)
    out = np.zeros((len(texts), self.hidden_size), np.float32)
    for chunk, ids, mask in padded_row_chunks(rows, self.widths, self.rows_per_call, self.pad_id, self.sharding):
      out[chunk] = np.asarray(siamese_embed(self.graphdef, self.state, ids, mask))[:len(chunk)]
    return out

  def _pair_probabilities(self, texts: list[str], pairs: list[tuple[int, int]]) -> np.ndarray:
    embeddings = self.embed(texts)
    left, right = np.asarray(pairs).T
    size = max(8, 1 << (len(pairs) - 1).bit_length())  # few distinct shapes: powers of two
    u = np.zeros((size, embeddings.shape[1]), np.float32)
    v = np.zeros_like(u)
    u[:len(pairs)], v[:len(pairs)] = embeddings[left], embeddings[right]
    return np.asarray(siamese_similar_probability(self.graphdef, self.state, u, v))[:len(pairs)]


def train_siamese_classifier(model, tokenizer, examples: Sequence[PairExample], config: TrainConfig, *,
                             log: Callable[[str], None] = print):
  """Trains `model` (a `SiameseBertClassifier`, not modified) on labelled pairs; returns `(trained model,
  history)`, one `{"step", "loss"}` per step.

  Class-weighted binary cross-entropy on the head's logit (weights N / count_c, as the cross-encoder recipe),
  AdamW with warmup + cosine decay and clipping (`equivalence.training.make_optimizer`), `config.epochs`
  shuffled epochs of `config.batch_size` pairs (the last partial batch padded with zero-weight rows), each pair
  padded to the width bucket of its longer response (`config.max_length` tokens per response at most).
  The jitted step is traced at most once per width bucket.
  """
  if not examples:
    raise ValueError("no training examples")
  rows_a = encode_texts(tokenizer, [e.text_a for e in examples], config.max_length)
  rows_b = encode_texts(tokenizer, [e.text_b for e in examples], config.max_length)
  labels = np.asarray([e.label for e in examples], np.int32)
  row_weights = (class_weights(labels) if config.class_weighted else np.ones(2, np.float32))[labels]
  pad_id = PairFormat.from_tokenizer(tokenizer, max(config.max_length, 3)).pad_id
  widths = width_buckets(config.max_length)
  steps_per_epoch = math.ceil(len(examples) / config.batch_size)
  total_steps = steps_per_epoch * config.epochs
  optimizer = make_optimizer(config, total_steps)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def step(params, opt_state, batch):
    def loss_fn(params):
      logits = nnx.merge(graphdef, params, rest)(batch["ids_a"], batch["mask_a"], batch["ids_b"], batch["mask_b"])
      losses = optax.sigmoid_binary_cross_entropy(logits, batch["labels"].astype(jnp.float32))
      return jnp.sum(batch["weights"] * losses) / jnp.maximum(jnp.sum(batch["weights"]), 1e-9)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  train_step = jax.jit(max_traces(step, n=len(widths)), donate_argnums=(0, 1))
  params = jax.tree.map(jnp.copy, params)
  opt_state = optimizer.init(params)
  rates = learning_rate_schedule(config, total_steps)
  started, losses = time.perf_counter(), []
  for epoch in range(config.epochs):
    order = np.random.default_rng([config.seed, epoch]).permutation(len(examples))
    for start in range(0, len(order), config.batch_size):
      members = order[start:start + config.batch_size]
      longest = max(max(len(rows_a[i]), len(rows_b[i])) for i in members)
      width = next(w for w in widths if w >= longest)
      ids_a, mask_a = pad_rows([rows_a[i] for i in members], width, pad_id, config.batch_size)
      ids_b, mask_b = pad_rows([rows_b[i] for i in members], width, pad_id, config.batch_size)
      filler = config.batch_size - len(members)
      batch = {"ids_a": ids_a, "mask_a": mask_a, "ids_b": ids_b, "mask_b": mask_b,
               "labels": np.concatenate([labels[members], np.zeros(filler, np.int32)]),
               "weights": np.concatenate([row_weights[members], np.zeros(filler, np.float32)])}
      params, opt_state, loss = train_step(params, opt_state, batch)
      losses.append(loss)
      step_index = len(losses)
      if step_index % config.log_every == 0 or step_index == total_steps:
        log(f"step {step_index}/{total_steps} epoch {epoch} loss {float(loss):.4f} lr "
            f"{float(rates(step_index - 1)):.2e} ({step_index / (time.perf_counter() - started):.2f} steps/s)")
  history = [{"step": i + 1, "loss": float(loss)} for i, loss in enumerate(losses)]
  return nnx.merge(graphdef, params, rest), history
