"""Tests for the short-answer equivalence shortcut."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from darling_jax.diversity import short_answer_equivalent, short_answer_matrix


def test_five_word_boundary_is_decided_six_words_defer():
  five = "one two three four five"
  six = "one two three four five six"
  assert short_answer_equivalent(five, five) is True
  assert short_answer_equivalent(five, "one two three") is True  # 2 * 3 >= 5
  assert short_answer_equivalent(five, "one two") is False  # 2 * 2 < 5
  assert short_answer_equivalent(six, six) is None
  assert short_answer_equivalent("yes", six) is None
  assert short_answer_equivalent(six, "yes") is None


def test_overlap_threshold_uses_the_longer_word_count():
  assert short_answer_equivalent("paris", "paris france") is True  # 2 * 1 >= 2
  assert short_answer_equivalent("paris", "the capital paris") is False  # 2 * 1 < 3
  assert short_answer_equivalent("42", "43") is False


def test_case_and_whitespace_are_ignored():
  assert short_answer_equivalent("  The Answer is  YES\n", "the answer is yes") is True
  assert short_answer_equivalent("Blue", "blue") is True


def test_repeated_words_count_in_lengths_not_in_intersection():
  # Lists are used for the lengths, sets for the intersection.
  assert short_answer_equivalent("no no no", "no no no") is False  # 2 * |{no}| = 2 < 3
  assert short_answer_equivalent("no no", "no no") is True  # 2 >= 2
  assert short_answer_equivalent("yes yes yes", "yes") is False


def test_empty_strings():
  assert short_answer_equivalent("", "") is True
  assert short_answer_equivalent("", "   ") is True
  assert short_answer_equivalent("", "yes") is False


def test_custom_max_words():
  assert short_answer_equivalent("a b c", "a b c", max_words=2) is None
  assert short_answer_equivalent("a b", "a c", max_words=2) is True


def test_matrix_matches_pairwise_rule():
  responses = ["Yes", "yes sir", "No", "no no no", "no no no", "", "the answer is definitely yes indeed",
               "a b c d e", "a b c x y", "A B"]
  decided, equivalent = short_answer_matrix(responses)
  assert decided.shape == equivalent.shape == (len(responses),) * 2
  assert decided.dtype == equivalent.dtype == np.bool_
  for i, j in itertools.product(range(len(responses)), repeat=2):
    if i == j:
      assert decided[i, j] and equivalent[i, j]
      continue
    verdict = short_answer_equivalent(responses[i], responses[j])
    assert decided[i, j] == (verdict is not None), (i, j)
    assert equivalent[i, j] == bool(verdict), (i, j)
  assert not equivalent[3, 4]  # identical copies of a repeated-word answer.


def test_bad_input_raises():
  with pytest.raises(ValueError, match="b must"):
    short_answer_equivalent("a", None)
  with pytest.raises(ValueError, match="max_words"):
    short_answer_equivalent("a", "b", max_words=-1)
  with pytest.raises(ValueError, match="responses"):
    short_answer_matrix("not a list")
