"""Tests for `darling_jax.diversity.diversity_scores`."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from darling_jax.diversity import diversity_scores


@pytest.mark.parametrize("class_size", range(1, 9))
def test_every_class_size_at_group_size_8(class_size):
  # Responses 0..class_size-1 share class 0; the rest are singletons.
  class_ids = np.concatenate([np.zeros(class_size), np.arange(class_size, 8)]).astype(np.int32)
  scores = np.asarray(diversity_scores(class_ids))
  assert scores.dtype == np.float32
  expected_in_class = max(0.1, (8 - class_size) / 7)
  np.testing.assert_allclose(scores[:class_size], expected_in_class, rtol=1e-6)
  np.testing.assert_allclose(scores[class_size:], 1.0, rtol=1e-6)


def test_named_values():
  np.testing.assert_allclose(diversity_scores(np.arange(8)), np.ones(8))
  np.testing.assert_allclose(diversity_scores(np.zeros(8, np.int32)), np.full(8, 0.1), rtol=1e-6)
  seven_and_one = np.array([3, 3, 3, 3, 3, 3, 3, 5])
  np.testing.assert_allclose(diversity_scores(seven_and_one), [1 / 7] * 7 + [1.0], rtol=1e-6)
  two_classes = np.array([0, 1, 0, 1, 0, 1, 0, 1])
  np.testing.assert_allclose(diversity_scores(two_classes), np.full(8, 4 / 7), rtol=1e-6)


def test_group_of_one_scores_one():
  np.testing.assert_array_equal(diversity_scores(np.array([7])), [1.0])
  np.testing.assert_array_equal(diversity_scores(np.zeros((3, 1), np.int32)), np.ones((3, 1)))


def test_floor_and_labels_are_arbitrary():
  np.testing.assert_allclose(diversity_scores(np.array([9, 9, 9, 9]), floor=0.0), np.zeros(4))
  np.testing.assert_allclose(diversity_scores(np.array([9, 9, 9, 9]), floor=0.25), np.full(4, 0.25))
  np.testing.assert_allclose(diversity_scores(np.array([-4, 100, -4])), [0.5, 1.0, 0.5])


def test_batched_and_jitted():
  class_ids = np.array([[0, 0, 2, 3], [0, 0, 0, 0], [0, 1, 1, 1]], np.int32)
  expected = [[2 / 3, 2 / 3, 1, 1], [0.1] * 4, [1, 1 / 3, 1 / 3, 1 / 3]]
  np.testing.assert_allclose(jax.jit(diversity_scores)(class_ids), expected, rtol=1e-6)


def test_bad_input_raises():
  with pytest.raises(ValueError, match="class_ids"):
    diversity_scores(np.array([0.0, 1.0]))
  with pytest.raises(ValueError, match="class_ids"):
    diversity_scores(np.zeros((2, 0), np.int32))
  with pytest.raises(ValueError, match="floor"):
    diversity_scores(np.arange(3), floor=1.5)
