"""Lexical n-gram diversity of each response within its group (DARLING's "Quality x 4gram" baseline)."""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np


UNITS = ("word", "char")


def ngram_diversity(groups: Sequence[Sequence[str]], n: int = 4, unit: str = "word") -> np.ndarray:
  """Share of each response's n-grams that no other response of its group contains.

  Follows the official baseline (`ngram` in `verl/verl/utils/reward_score/diversity_rewards.py`):
  responses are split on whitespace (case kept; `unit="word"`), and

    Div_ngram(y_i) = |set(ngrams(y_i)) - union_{j != i} set(ngrams(y_j))| / (len(words(y_i)) - n + 1).

  Set vs multiset: the numerator counts *distinct* n-grams of y_i (a set) that occur in no other response,
  while the denominator is the number of n-gram *positions* of y_i (a multiset count, len - n + 1), exactly as
  in the official code. A response that repeats one of its own n-grams therefore scores below 1 even if none
  of its n-grams appears elsewhere (e.g. "a b a b a" with n = 2: {"a b", "b a"} unique, 4 positions -> 0.5).
  A response with fewer than n words has no n-gram and scores 0. Two identical responses score 0 each.

  With `unit="char"` the units are characters instead of words (for responses without spaces, such as
  arithmetic expressions, which have no word n-gram at all and would all score 0).

  Args:
    groups: B groups, each a sequence of the same number G of response strings.
    n: n-gram length, a positive integer.
    unit: `"word"` (whitespace-separated words, the official baseline) or `"char"`.

  Returns:
    float32[B, G] scores in [0, 1]; shape (0, 0) when `groups` is empty.

  Raises:
    ValueError: if `n` is not a positive integer, `unit` is unknown, a group is not a sequence of strings, or
      groups have different sizes (the message names the first offending group index).
  """
  if isinstance(n, bool) or not isinstance(n, int) or n < 1:
    raise ValueError(f"n must be a positive integer, got {n!r}")
  if unit not in UNITS:
    raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
  if isinstance(groups, str):
    raise ValueError("groups must be a sequence of groups of strings, got a single string")
  groups = list(groups)
  if not groups:
    return np.zeros((0, 0), np.float32)

  group_size = None
  for group_index, group in enumerate(groups):
    if isinstance(group, str) or not all(isinstance(response, str) for response in group):
      raise ValueError(f"groups[{group_index}] must be a sequence of response strings")
    if group_size is None:
      group_size = len(group)
    elif len(group) != group_size:
      raise ValueError(
          f"groups must all have the same size: groups[{group_index}] has {len(group)} responses, "
          f"groups[0] has {group_size}")

  scores = np.zeros((len(groups), group_size), np.float32)
  for group_index, group in enumerate(groups):
    units_per_response = [response.split() if unit == "word" else list(response) for response in group]
    ngram_sets = [{tuple(units[start:start + n]) for start in range(len(units) - n + 1)}
                  for units in units_per_response]
    # Number of responses of the group that contain each n-gram.
    response_counts = collections.Counter(ngram for ngram_set in ngram_sets for ngram in ngram_set)
    for response_index, (units, ngram_set) in enumerate(zip(units_per_response, ngram_sets)):
      num_positions = len(units) - n + 1
      if num_positions <= 0:
        continue
      num_unique = sum(1 for ngram in ngram_set if response_counts[ngram] == 1)
      scores[group_index, response_index] = num_unique / num_positions
  return scores
