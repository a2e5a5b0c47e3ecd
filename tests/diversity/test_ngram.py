"""Tests for `darling_jax.diversity.ngram_diversity`."""

from __future__ import annotations

import numpy as np
import pytest

from darling_jax.diversity import ngram_diversity


def test_hand_example_bigrams():
  group = ["a b c d", "a b x y", "p q"]
  # bigrams: {ab, bc, cd}, {ab, bx, xy}, {pq}; "a b" is shared.
  scores = ngram_diversity([group], n=2)
  assert scores.shape == (1, 3) and scores.dtype == np.float32
  np.testing.assert_allclose(scores, [[2 / 3, 2 / 3, 1.0]], rtol=1e-6)


def test_hand_example_4grams_default():
  group = ["the cat sat on the mat", "the cat sat on a rug", "a dog ran"]
  # Response 0 4-grams: {the cat sat on, cat sat on the, sat on the mat}; the first is shared.
  # Response 1 4-grams: {the cat sat on, cat sat on a, sat on a rug}; response 2 has fewer than 4 words.
  np.testing.assert_allclose(ngram_diversity([group]), [[2 / 3, 2 / 3, 0.0]], rtol=1e-6)


def test_numerator_is_a_set_and_denominator_counts_positions():
  # "a b a b a": bigram positions ab, ba, ab, ba -> 2 distinct unique bigrams over 4 positions.
  np.testing.assert_allclose(ngram_diversity([["a b a b a", "z z z"]], n=2), [[0.5, 0.5]], rtol=1e-6)


def test_identical_responses_and_case_sensitivity():
  scores = ngram_diversity([["one two three", "one two three", "One two three"]], n=2)
  # Case is kept (official code splits without lowercasing): "One two" is unique to response 2.
  np.testing.assert_allclose(scores, [[0.0, 0.0, 0.5]], rtol=1e-6)


def test_several_groups_are_independent():
  groups = [["a b", "a b"], ["a b", "c d"]]
  np.testing.assert_allclose(ngram_diversity(groups, n=2), [[0.0, 0.0], [1.0, 1.0]])


def test_short_and_empty_responses_score_zero():
  np.testing.assert_array_equal(ngram_diversity([["", "a b c", "x"]], n=4), [[0.0, 0.0, 0.0]])
  np.testing.assert_array_equal(ngram_diversity([["x"]], n=1), [[1.0]])
  assert ngram_diversity([], n=4).shape == (0, 0)


def test_ragged_groups_name_the_group():
  with pytest.raises(ValueError, match=r"groups\[2\]"):
    ngram_diversity([["a", "b"], ["c", "d"], ["e"]])


@pytest.mark.parametrize("bad_n", [0, -1, 2.0, True])
def test_bad_n_raises(bad_n):
  with pytest.raises(ValueError, match="n must"):
    ngram_diversity([["a b"]], n=bad_n)


def test_non_string_response_raises():
  with pytest.raises(ValueError, match=r"groups\[0\]"):
    ngram_diversity([["a", 3]])


def test_character_ngrams_score_responses_without_spaces():
  group = ["3*7+5", "5+7*3", "3*7+5", "(5+7)*2"]
  np.testing.assert_array_equal(ngram_diversity([group], n=4), [[0.0] * 4])  # one word each: no word 4-gram
  # "3*7+5": its 4-grams "3*7+" and "*7+5" are also the third response's -> 0. "5+7*3": "5+7*" and "+7*3" are
  # in no other response -> 1. "(5+7)*2": "(5+7", "5+7)", "+7)*", "7)*2" are in no other response -> 1.
  np.testing.assert_allclose(ngram_diversity([group], n=4, unit="char"), [[0.0, 1.0, 0.0, 1.0]])


def test_unknown_unit_is_an_error():
  with pytest.raises(ValueError, match="unit must be one of"):
    ngram_diversity([["a b"]], n=1, unit="token")
