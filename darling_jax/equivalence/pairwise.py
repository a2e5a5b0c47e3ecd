"""The cross-encoder `EquivalenceClassifier`: all pairs of a batch classified in a few jitted calls.

For B groups of G responses there are B·G(G−1)/2 unordered pairs. The ones the base class decides without a
model (short answers, identical text) never reach it. The rest are encoded as `[CLS] a [SEP] b [SEP]`, packed
by length into a few width buckets and run through one jitted classifier forward per (bucket, row chunk);
the official code instead sends every pair to a server as its own request. Each distinct response is
tokenized once.

    classifier = CrossEncoderClassifier(model, tokenizer)         # model: any darling_jax.classifiers model
    equivalent, probs = classifier(groups)                        # bool / float32 [B, G, G]
    class_ids = darling_jax.diversity.partition(equivalent)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from darling_jax.diversity.short_answer import DEFAULT_MAX_WORDS
from darling_jax.equivalence.base import DEFAULT_THRESHOLD, EquivalenceClassifier
from darling_jax.equivalence.encoding import PairFormat, pad_pairs, pad_rows, pair_ids, tokenize_responses
MIN_WIDTH = 16
MIN_ROWS = 8


def width_buckets(max_length: int) -> tuple[int, ...]:
  """Pair widths we compile for: 16, 24, 32, 48, 64, 96, … (powers of two and 1.5× them) below
  `max_length`, then `max_length`. A pair is padded by at most a third of its length."""
  widths = []
  width = MIN_WIDTH
  while width < max_length:
    widths.append(width)
    if width * 3 // 2 < max_length:
      widths.append(width * 3 // 2)
    width *= 2
  return tuple(widths) + (max_length,)


def row_chunks(num_rows: int, rows_per_call: int, multiple: int = 1) -> list[tuple[int, int]]:
  """Splits `num_rows` into `(start, padded_size)` chunks: full chunks of `rows_per_call`, then the rest padded
  to a power of two ≥ MIN_ROWS (and a multiple of `multiple`), so few distinct shapes are ever compiled."""
  chunks = []
  for start in range(0, num_rows, rows_per_call):
    rest = min(rows_per_call, num_rows - start)
    size = rows_per_call if rest == rows_per_call else min(rows_per_call, max(MIN_ROWS, 1 << (rest - 1).bit_length()))
    size = -(-size // multiple) * multiple
    chunks.append((start, size))
  return chunks


def padded_row_chunks(rows: Sequence[Sequence[int]], widths: Sequence[int], rows_per_call: int, pad_id: int,
                      sharding: jax.sharding.Sharding | None = None):
  """Yields `(indices, ids, mask)`: the rows grouped by the smallest width bucket that holds them, in chunks of
  `row_chunks` (padded to a power of two, and to a multiple of `sharding`'s device count), each right-padded
  by `pad_rows` to int32 `[size, width]` and placed with `sharding` when given. `indices` are the chunk's real
  rows (the first `len(indices)` of the arrays)."""
  by_width: dict[int, list[int]] = {}
  for n, row in enumerate(rows):
    by_width.setdefault(next(w for w in widths if w >= len(row)), []).append(n)
  multiple = 1 if sharding is None else len(sharding.device_set)
  for width, members in sorted(by_width.items()):
    for start, size in row_chunks(len(members), rows_per_call, multiple):
      chunk = members[start:start + size]
      arrays = pad_rows([rows[n] for n in chunk], width, pad_id, size)
      yield chunk, *(arrays if sharding is None else jax.device_put(arrays, sharding))


@functools.partial(jax.jit, static_argnames=("graphdef",))
def similar_probability(graphdef, state, input_ids, attention_mask, token_type_ids):
  """P(similar) of each pair: softmax of the classifier logits, last label (as the official code reads
  `probs[-1]`). input_ids, attention_mask, token_type_ids: int32 `[R, W]` -> float32 `[R]`."""
  model = nnx.merge(graphdef, state)
  if model.uses_token_type_ids:
    logits = model(input_ids, attention_mask, token_type_ids)
  else:
    logits = model(input_ids, attention_mask)
  return jax.nn.softmax(logits, axis=-1)[:, -1]


class CrossEncoderClassifier(EquivalenceClassifier):
  """An `EquivalenceClassifier` that reads each pair jointly: `[CLS] a [SEP] b [SEP]` through a sequence
  classifier (the paper's ModernBERT, a BERT, a decoder), P(similar) = its last label's probability.

  Args:
    model: a classifier from `darling_jax.classifiers` (BERT, ModernBERT or decoder); label -1 = similar.
    tokenizer: its transformers tokenizer.
    fmt: the pair format (default: [CLS]/[SEP]/pad of `tokenizer`, `max_length`).
    max_length: longest pair in tokens (each response keeps `(max_length − 3) // 2`).
    threshold, short_answer_max_words: see `EquivalenceClassifier`.
    both_orders: average P over `(a, b)` and `(b, a)` (twice the classifier work).
    rows_per_call: pairs per jitted forward.
    sharding: optional sharding of `[R, W]` pair arrays (rows over the data axes); rows are padded to a
      multiple of its device count.
  """

  kind = "cross_encoder"

  def __init__(self, model, tokenizer, *, fmt: PairFormat | None = None, max_length: int = 512,
               threshold: float = DEFAULT_THRESHOLD, both_orders: bool = False,
               short_answer_max_words: int | None = DEFAULT_MAX_WORDS, rows_per_call: int = 64,
               sharding: jax.sharding.Sharding | None = None):
    super().__init__(threshold=threshold, short_answer_max_words=short_answer_max_words)
    if rows_per_call < 1:
      raise ValueError(f"rows_per_call must be >= 1, got {rows_per_call}")
    self.graphdef, self.state = nnx.split(model)
    self.tokenizer = tokenizer
    self.fmt = fmt or PairFormat.from_tokenizer(tokenizer, max_length)
    self.both_orders = both_orders
    self.rows_per_call = rows_per_call
    self.sharding = sharding
    self.widths = width_buckets(self.fmt.max_length)

  def _width(self, length: int) -> int:
    return next(w for w in self.widths if w >= length)

  def _run(self, ids, mask, types) -> np.ndarray:
    arrays = (ids, mask, types)
    if self.sharding is not None:
      arrays = jax.device_put(arrays, self.sharding)
    return np.asarray(similar_probability(self.graphdef, self.state, *arrays))

  def _pair_probabilities(self, texts: list[str], pairs: list[tuple[int, int]]) -> np.ndarray:
    """Every pair (and its reverse when `both_orders`) encoded once, grouped by width bucket, run in row
    chunks of `rows_per_call` (the last one padded to a power of two)."""
    token_ids = tokenize_responses(self.tokenizer, texts, self.fmt.response_budget)
    orders = [(i, j) for i, j in pairs]
    if self.both_orders:
      orders = [order for i, j in pairs for order in ((i, j), (j, i))]
    rows = [pair_ids(token_ids[i], token_ids[j], self.fmt) for i, j in orders]
    by_width: dict[int, list[int]] = {}
    for r, (row_ids, _) in enumerate(rows):
      by_width.setdefault(self._width(len(row_ids)), []).append(r)
    multiple = 1 if self.sharding is None else len(self.sharding.device_set)
    filler = pair_ids([], [], self.fmt)  # a valid 3-token input for padding rows
    row_probs = np.zeros(len(rows), np.float32)
    for width, members in by_width.items():
      for start, size in row_chunks(len(members), self.rows_per_call, multiple):
        chunk = members[start:start + size]
        ids, mask, types = pad_pairs([rows[r] for r in chunk] + [filler] * (size - len(chunk)), width,
                                     self.fmt.pad_id)
        row_probs[chunk] = self._run(ids, mask, types)[:len(chunk)]
    return row_probs.reshape(len(pairs), 2).mean(axis=1) if self.both_orders else row_probs

  def probabilities_per_pair(self, groups: Sequence[Sequence[str]]) -> np.ndarray:
    """The same as `probabilities`, one classifier call per pair (and order), each padded only to its width
    bucket: the way the official code queries its server. For tests and benchmarks."""
    probs, pending = self.decided_probabilities(groups)
    for b, i, j in pending:
      a, c = tokenize_responses(self.tokenizer, [groups[b][i], groups[b][j]], self.fmt.response_budget)
      values = []
      for x, y in ([(a, c), (c, a)] if self.both_orders else [(a, c)]):
        row = pair_ids(x, y, self.fmt)
        values.append(self._run(*pad_pairs([row], self._width(len(row[0])), self.fmt.pad_id))[0])
      probs[b, i, j] = probs[b, j, i] = np.mean(values)
    return probs
