"""The classifier-free equivalence shortcut for short responses (DARLING / NoveltyBench `maybe_test_equality`).

Both responses are lowercased and split on whitespace. If the longer one has at most `max_words` (5) words,
the pair is decided without the classifier: equivalent iff

  2 * |set(W_a) & set(W_b)| >= max(len(W_a), len(W_b)),

where the intersection is of word *sets* but the lengths are word counts of the *lists* (repeated words
count), as in the official code (`max_len = max(len(unigram_0), len(unigram_1))`). So repeated words raise
the bar: "no no no" vs "no no no" shares one distinct word, 2 * 1 < 3, and is NOT equivalent. Two empty (or
whitespace-only) strings are equivalent (0 >= 0); an empty string against a non-empty short one is not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_MAX_WORDS = 5


def _check_max_words(max_words: int) -> None:
  if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 0:
    raise ValueError(f"max_words must be a non-negative integer, got {max_words!r}")


def short_answer_equivalent(a: str, b: str, max_words: int = DEFAULT_MAX_WORDS) -> bool | None:
  """Decides equivalence of two short responses by unigram overlap, or defers to the classifier.

  Args:
    a: first response.
    b: second response.
    max_words: the rule applies only when both responses have at most this many words.

  Returns:
    True / False when the longer response has <= `max_words` lowercase whitespace words (see the module
    docstring for the exact rule), None when it is longer (meaning: ask the classifier).

  Raises:
    ValueError: if `a` or `b` is not a string, or `max_words` is not a non-negative integer.
  """
  if not isinstance(a, str):
    raise ValueError(f"a must be a string, got {type(a).__name__}")
  if not isinstance(b, str):
    raise ValueError(f"b must be a string, got {type(b).__name__}")
  _check_max_words(max_words)
  words_a = a.lower().split()
  words_b = b.lower().split()
  longer_length = max(len(words_a), len(words_b))
  if longer_length > max_words:
    return None
  return 2 * len(set(words_a) & set(words_b)) >= longer_length


def short_answer_matrix(responses: Sequence[str],
                        max_words: int = DEFAULT_MAX_WORDS) -> tuple[np.ndarray, np.ndarray]:
  """Applies `short_answer_equivalent` to every pair of one group at once.

  Off the diagonal, entry [i, j] equals `short_answer_equivalent(responses[i], responses[j])` (decided is
  False where that returns None). The diagonal is decided and equivalent (a response is its own class), even
  for a response with repeated words, which the pairwise rule would reject against an identical copy.

  Args:
    responses: the G response strings of one group.
    max_words: the rule applies only when both responses have at most this many words.

  Returns:
    (decided, equivalent): bool[G, G] each, symmetric. `decided[i, j]` is True where the rule settles the
    pair without the classifier; `equivalent[i, j]` is the verdict there and False where undecided.

  Raises:
    ValueError: if `responses` is not a sequence of strings or `max_words` is not a non-negative integer.
  """
  if isinstance(responses, str) or not all(isinstance(response, str) for response in responses):
    raise ValueError("responses must be a sequence of response strings")
  _check_max_words(max_words)
  words_per_response = [response.lower().split() for response in responses]
  group_size = len(words_per_response)
  vocabulary = {word: index for index, word in enumerate(sorted({w for words in words_per_response for w in words}))}
  # contains[i, v]: response i uses vocabulary word v (a set indicator, repeats collapse).
  contains = np.zeros((group_size, len(vocabulary)), np.int64)
  for response_index, words in enumerate(words_per_response):
    contains[response_index, [vocabulary[word] for word in set(words)]] = 1
  num_common_words = contains @ contains.T
  num_words = np.array([len(words) for words in words_per_response], np.int64)
  longer_length = np.maximum(num_words[:, None], num_words[None, :])

  diagonal = np.eye(group_size, dtype=bool)
  decided = (longer_length <= max_words) | diagonal
  equivalent = decided & ((2 * num_common_words >= longer_length) | diagonal)
  return decided, equivalent
