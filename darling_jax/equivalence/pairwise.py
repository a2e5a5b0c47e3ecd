"""Which responses of each group mean the same thing: all pairs of a batch classified in a few jitted calls.

For B groups of G responses there are B·G(G−1)/2 unordered pairs. Pairs that the short-answer rule decides
(both responses ≤ 5 words) never reach the model. The rest are encoded as `[CLS] a [SEP] b [SEP]`, packed by
length into a few width buckets and run through one jitted classifier forward per (bucket, row chunk);
the official code instead sends every pair to a server as its own request. Each response is tokenized once.

    classifier = EquivalenceClassifier(model, tokenizer)          # model: any darling_jax.classifiers model
    equivalent, probs = classifier(groups)                        # bool / float32 [B, G, G]
    class_ids = darling_jax.diversity.partition(equivalent)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from darling_jax.diversity.short_answer import DEFAULT_MAX_WORDS, short_answer_matrix
from darling_jax.equivalence.encoding import PairFormat, pad_pairs, pair_ids, tokenize_responses

DEFAULT_THRESHOLD = 0.32  # the official ModernBERT classifier's threshold on P(similar)
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


def check_groups(groups) -> tuple[int, int]:
  """`(B, G)` of a batch of equally sized groups of strings; otherwise one ValueError naming the group."""
  if isinstance(groups, str) or not isinstance(groups, Sequence) or not groups:
    raise ValueError("groups must be a non-empty list of groups (lists of response strings)")
  size = None
  for b, group in enumerate(groups):
    if isinstance(group, str) or not isinstance(group, Sequence):
      raise ValueError(f"groups[{b}] is a {type(group).__name__}, not a list of response strings")
    if not group:
      raise ValueError(f"groups[{b}] is empty: every group needs at least one response")
    if size is None:
      size = len(group)
    elif len(group) != size:
      raise ValueError(f"groups are ragged: groups[0] has {size} responses, groups[{b}] has {len(group)}")
    for g, text in enumerate(group):
      if not isinstance(text, str):
        raise ValueError(f"groups[{b}][{g}] is a {type(text).__name__}, not a string")
  return len(groups), size


class EquivalenceClassifier:
  """A pair classifier applied to whole response groups.

  Args:
    model: a classifier from `darling_jax.classifiers` (BERT, ModernBERT or decoder); label -1 = similar.
    tokenizer: its transformers tokenizer.
    fmt: the pair format (default: [CLS]/[SEP]/pad of `tokenizer`, `max_length`).
    max_length: longest pair in tokens (each response keeps `(max_length − 3) // 2`).
    threshold: `equivalent = P(similar) > threshold`.
    both_orders: average P over `(a, b)` and `(b, a)` (twice the classifier work).
    short_answer_max_words: pairs whose longer response has at most this many words are decided by the
      short-answer rule, not the model; None turns the rule off.
    rows_per_call: pairs per jitted forward.
    sharding: optional sharding of `[R, W]` pair arrays (rows over the data axes); rows are padded to a
      multiple of its device count.
  """

  def __init__(self, model, tokenizer, *, fmt: PairFormat | None = None, max_length: int = 512,
               threshold: float = DEFAULT_THRESHOLD, both_orders: bool = False,
               short_answer_max_words: int | None = DEFAULT_MAX_WORDS, rows_per_call: int = 64,
               sharding: jax.sharding.Sharding | None = None):
    if not 0.0 <= threshold < 1.0:
      raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if rows_per_call < 1:
      raise ValueError(f"rows_per_call must be >= 1, got {rows_per_call}")
    self.graphdef, self.state = nnx.split(model)
    self.tokenizer = tokenizer
    self.fmt = fmt or PairFormat.from_tokenizer(tokenizer, max_length)
    self.threshold = float(threshold)
    self.both_orders = both_orders
    self.short_answer_max_words = short_answer_max_words
    self.rows_per_call = rows_per_call
    self.sharding = sharding
    self.widths = width_buckets(self.fmt.max_length)

  def __call__(self, groups: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """-> (equivalent bool `[B, G, G]`, P(similar) float32 `[B, G, G]`), symmetric, diagonal True / 1."""
    probs = self.probabilities(groups)
    return probs > self.threshold, probs

  def _pairs_to_classify(self, groups) -> tuple[np.ndarray, list[tuple[int, int, int]], list[list[int]]]:
    """Short-answer verdicts as probabilities (1/0, NaN where undecided), the undecided pairs `(b, i, j)`
    with i < j, and every response's token ids (row-major over groups)."""
    num_groups, size = check_groups(groups)
    probs = np.full((num_groups, size, size), np.nan, np.float32)
    pending = []
    for b, group in enumerate(groups):
      if self.short_answer_max_words is not None:
        decided, equivalent = short_answer_matrix(group, self.short_answer_max_words)
      else:
        decided, equivalent = np.eye(size, dtype=bool), np.eye(size, dtype=bool)
      probs[b][decided] = equivalent[decided]
      np.fill_diagonal(probs[b], 1.0)
      pending += [(b, i, j) for i in range(size) for j in range(i + 1, size) if np.isnan(probs[b, i, j])]
    texts = [text for group in groups for text in group]
    token_ids = tokenize_responses(self.tokenizer, texts, self.fmt.response_budget) if pending else []
    return probs, pending, token_ids

  def _encoded_pairs(self, pending, token_ids, size):
    rows = []
    for b, i, j in pending:
      a, c = token_ids[b * size + i], token_ids[b * size + j]
      rows.append(pair_ids(a, c, self.fmt))
      if self.both_orders:
        rows.append(pair_ids(c, a, self.fmt))
    return rows

  def _width(self, length: int) -> int:
    return next(w for w in self.widths if w >= length)

  def _run(self, ids, mask, types) -> np.ndarray:
    arrays = (ids, mask, types)
    if self.sharding is not None:
      arrays = jax.device_put(arrays, self.sharding)
    return np.asarray(similar_probability(self.graphdef, self.state, *arrays))

  def probabilities(self, groups: Sequence[Sequence[str]]) -> np.ndarray:
    """P(similar) float32 `[B, G, G]`: the model's for undecided pairs, 1/0 where the short-answer rule
    decides, 1 on the diagonal. G = 1 makes no model call."""
    probs, pending, token_ids = self._pairs_to_classify(groups)
    if not pending:
      return probs
    rows = self._encoded_pairs(pending, token_ids, probs.shape[1])
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
    per_pair = row_probs.reshape(len(pending), 2).mean(axis=1) if self.both_orders else row_probs
    for (b, i, j), p in zip(pending, per_pair):
      probs[b, i, j] = probs[b, j, i] = p
    return probs

  def probabilities_per_pair(self, groups: Sequence[Sequence[str]]) -> np.ndarray:
    """The same as `probabilities`, one classifier call per pair (and order), each padded only to its width
    bucket: the way the official code queries its server. For tests and benchmarks."""
    probs, pending, token_ids = self._pairs_to_classify(groups)
    size = probs.shape[1]
    for b, i, j in pending:
      orders = [(i, j), (j, i)] if self.both_orders else [(i, j)]
      values = []
      for x, y in orders:
        row = pair_ids(token_ids[b * size + x], token_ids[b * size + y], self.fmt)
        values.append(self._run(*pad_pairs([row], self._width(len(row[0])), self.fmt.pad_id))[0])
      probs[b, i, j] = probs[b, j, i] = np.mean(values)
    return probs
