"""The interface every equivalence classifier implements: response groups in, P(similar) `[B, G, G]` out.

    equivalent, probs = classifier(groups)      # bool / float32 [B, G, G], symmetric, diagonal True / 1
    class_ids = darling_jax.diversity.partition(equivalent)

`EquivalenceClassifier.probabilities` decides what needs no model, then asks the subclass only for the rest:

* the diagonal (a response is its own class);
* pairs the short-answer rule settles (both responses ≤ `short_answer_max_words` words; DARLING's
  `maybe_test_equality`, arXiv 2509.02534 §3.2, `darling_jax.diversity.short_answer`);
* two responses identical after whitespace normalisation: equivalent, no model call. A classifier trained on
  human pairs says "similar" to identical text anyway; skipping it only saves the call (a policy that has
  collapsed writes the same response many times over);
* the rest: each distinct text once, each ordered pair of distinct texts once, in one call of
  `_pair_probabilities` for the whole batch (the cross-encoder encodes the pairs, the bi-encoder each text).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np

from darling_jax.diversity.short_answer import DEFAULT_MAX_WORDS, short_answer_matrix

DEFAULT_THRESHOLD = 0.32  # the official ModernBERT classifier's threshold on P(similar)


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


def normalise_whitespace(text: str) -> str:
  """`text` with every whitespace run made one space and the ends stripped (the identity the shortcut uses)."""
  return " ".join(text.split())


class EquivalenceClassifier(abc.ABC):
  """Which responses of each group mean the same thing.

  Args:
    threshold: `equivalent = P(similar) > threshold`, in [0, 1).
    short_answer_max_words: pairs whose longer response has at most this many words are decided by the
      short-answer rule, not the model; None turns the rule off.
  """

  kind: str = ""  # the subclass's name in configs and darling.json ("cross_encoder", "bi_encoder", "siamese")

  def __init__(self, *, threshold: float = DEFAULT_THRESHOLD,
               short_answer_max_words: int | None = DEFAULT_MAX_WORDS):
    if not 0.0 <= threshold < 1.0:
      raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    self.threshold = float(threshold)
    self.short_answer_max_words = short_answer_max_words

  @abc.abstractmethod
  def _pair_probabilities(self, texts: list[str], pairs: list[tuple[int, int]]) -> np.ndarray:
    """P(similar) float32 `[len(pairs)]` of `(texts[i], texts[j])` for each `(i, j)` in `pairs` (i != j,
    texts distinct after whitespace normalisation)."""

  def __call__(self, groups: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """-> (equivalent bool `[B, G, G]`, P(similar) float32 `[B, G, G]`), symmetric, diagonal True / 1."""
    probs = self.probabilities(groups)
    return probs > self.threshold, probs

  def decided_probabilities(self, groups) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """float32 `[B, G, G]` with 1/0 where no model is needed (diagonal, short-answer rule, identical text) and
    NaN elsewhere, and the undecided pairs `(b, i, j)`, i < j."""
    num_groups, size = check_groups(groups)
    probs = np.full((num_groups, size, size), np.nan, np.float32)
    pending = []
    for b, group in enumerate(groups):
      if self.short_answer_max_words is not None:
        decided, equivalent = short_answer_matrix(group, self.short_answer_max_words)
        probs[b][decided] = equivalent[decided]
      np.fill_diagonal(probs[b], 1.0)
      normalised = [normalise_whitespace(text) for text in group]
      for i in range(size):
        for j in range(i + 1, size):
          if not np.isnan(probs[b, i, j]):
            continue
          if normalised[i] == normalised[j]:
            probs[b, i, j] = probs[b, j, i] = 1.0
          else:
            pending.append((b, i, j))
    return probs, pending

  def probabilities(self, groups: Sequence[Sequence[str]]) -> np.ndarray:
    """P(similar) float32 `[B, G, G]`: the model's where it is needed (see the module docstring), 1/0 where
    a rule decides, 1 on the diagonal. A batch where everything is decided makes no model call."""
    probs, pending = self.decided_probabilities(groups)
    if not pending:
      return probs
    index: dict[str, int] = {}
    texts: list[str] = []
    pair_of_texts: dict[tuple[int, int], int] = {}
    pairs: list[tuple[int, int]] = []
    slots = []
    for b, i, j in pending:
      ids = []
      for g in (i, j):
        key = normalise_whitespace(groups[b][g])
        if key not in index:
          index[key] = len(texts)
          texts.append(groups[b][g])
        ids.append(index[key])
      key = (ids[0], ids[1])  # ordered: a cross-encoder reads (a, b) and (b, a) differently
      if key not in pair_of_texts:
        pair_of_texts[key] = len(pairs)
        pairs.append(key)
      slots.append(pair_of_texts[key])
    values = np.asarray(self._pair_probabilities(texts, pairs), np.float32)
    if values.shape != (len(pairs),):
      raise ValueError(f"{type(self).__name__}._pair_probabilities returned shape {values.shape}, expected "
                       f"({len(pairs)},)")
    for (b, i, j), slot in zip(pending, slots):
      probs[b, i, j] = probs[b, j, i] = values[slot]
    return probs
