"""Tests for the NoveltyBench metrics."""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest

from darling_jax.evaluation import distinct_n, greedy_partition, novelty_distinct, novelty_utility


def reference_greedy_partition(equivalent: np.ndarray) -> np.ndarray:
  """Transcription of NoveltyBench `partition_responses`, labelling classes by their first member."""
  group_size = equivalent.shape[-1]
  labels = [-1] * group_size
  for representative in range(group_size):
    if labels[representative] >= 0:
      continue
    labels[representative] = representative
    for j in range(representative + 1, group_size):
      if labels[j] == -1 and equivalent[representative, j]:
        labels[j] = representative
  return np.array(labels, np.int32)


def test_non_transitive_example():
  equivalent = np.zeros((3, 3), bool)
  equivalent[0, 1] = equivalent[1, 2] = True  # a ~ b, b ~ c, a !~ c.
  np.testing.assert_array_equal(greedy_partition(equivalent), [0, 0, 2])


def test_joins_earliest_matching_representative_only():
  equivalent = np.zeros((5, 5), bool)
  equivalent[1, 3] = True  # 3 matches representative 1 ...
  equivalent[2, 3] = True  # ... and representative 2; the earlier class wins.
  equivalent[3, 4] = True  # 4 matches only the non-representative member 3.
  np.testing.assert_array_equal(greedy_partition(equivalent), [0, 1, 2, 1, 4])


def test_reads_representative_row_only():
  equivalent = np.zeros((2, 2), bool)
  equivalent[1, 0] = True  # lower triangle is never consulted.
  np.testing.assert_array_equal(greedy_partition(equivalent), [0, 1])


@pytest.mark.parametrize("group_size", [1, 2, 5, 10, 16])
def test_matches_reference_on_random_graphs(group_size):
  rng = np.random.default_rng(100 + group_size)
  probabilities = np.array([0.0, 0.1, 0.3, 0.6, 1.0])
  graphs = rng.random((len(probabilities), 20, group_size, group_size)) < probabilities[:, None, None, None]
  labels = np.asarray(jax.jit(greedy_partition)(graphs))
  assert labels.shape == graphs.shape[:-1] and labels.dtype == np.int32
  for index in np.ndindex(*graphs.shape[:-2]):
    np.testing.assert_array_equal(labels[index], reference_greedy_partition(graphs[index]), err_msg=str(index))


def test_greedy_jit_traces_once():
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def jitted(equivalent):
    return greedy_partition(equivalent)

  rng = np.random.default_rng(3)
  for _ in range(3):
    graphs = rng.random((4, 10, 10)) < 0.3
    np.testing.assert_array_equal(np.asarray(jitted(graphs))[2], reference_greedy_partition(graphs[2]))


def test_distinct_counts_classes_not_max_label():
  np.testing.assert_array_equal(novelty_distinct(np.array([0, 0, 2, 2, 4])), 3)  # max + 1 would be 5.
  np.testing.assert_array_equal(novelty_distinct(np.array([0, 1, 1, 2])), 3)  # max would be 2.
  np.testing.assert_array_equal(novelty_distinct(np.array([[7, 7, 7], [5, -1, 9]])), [1, 3])
  np.testing.assert_array_equal(novelty_distinct(np.array([4])), 1)


def test_utility_hand_example_patience_0_8():
  class_ids = np.array([0, 0, 2, 3, 2])
  quality = np.array([5.0, 9.0, 3.0, 7.0, 10.0])
  # New classes at positions 0, 2, 3 (1-based 1, 3, 4): 5 * 1 + 3 * 0.8**2 + 7 * 0.8**3.
  numerator = 5.0 + 3.0 * 0.64 + 7.0 * 0.512
  normaliser = (1 - 0.8) / (1 - 0.8**5)
  expected = normaliser * numerator
  np.testing.assert_allclose(novelty_utility(class_ids, quality, patience=0.8), expected, rtol=1e-6)
  np.testing.assert_allclose(novelty_utility(class_ids, quality), expected, rtol=1e-6)  # default p = 0.8.


def test_utility_patience_one_is_mean_of_first_member_quality():
  class_ids = np.array([0, 0, 2, 3, 2])
  quality = np.array([5.0, 9.0, 3.0, 7.0, 10.0])
  np.testing.assert_allclose(novelty_utility(class_ids, quality, patience=1.0), (5 + 3 + 7) / 5, rtol=1e-6)


def test_utility_extremes_batched_and_jitted():
  quality = np.array([[2.0, 4.0, 6.0, 8.0], [2.0, 4.0, 6.0, 8.0], [-1.0, 0.5, 0.0, 3.0]])
  class_ids = np.array([[0, 1, 2, 3], [0, 0, 0, 0], [1, 0, 1, 2]])
  weights = 0.5 ** np.arange(4)
  expected = [np.sum(weights * quality[0]) / weights.sum(), 2.0 * 1 / weights.sum(),
              (-1.0 + 0.5 * 0.5 + 3.0 * 0.125) / weights.sum()]
  utility = jax.jit(lambda c, q: novelty_utility(c, q, patience=0.5))(class_ids, quality)
  assert utility.shape == (3,) and utility.dtype == np.float32
  np.testing.assert_allclose(utility, expected, rtol=1e-6)


def test_utility_bad_input_raises():
  with pytest.raises(ValueError, match="quality"):
    novelty_utility(np.array([0, 1]), np.array([1.0, 2.0, 3.0]))
  with pytest.raises(ValueError, match="patience"):
    novelty_utility(np.array([0, 1]), np.array([1.0, 2.0]), patience=0.0)
  with pytest.raises(ValueError, match="class_ids"):
    novelty_distinct(np.array([0.0, 1.0]))
  with pytest.raises(ValueError, match="equivalent"):
    greedy_partition(np.zeros((2, 3), bool))


def test_distinct_n():
  texts = ["a b c", "a b d", "x"]
  # bigrams: ab, bc, ab, bd -> 3 distinct of 4.
  assert distinct_n(texts, 2) == pytest.approx(0.75)
  assert distinct_n(texts, 1) == pytest.approx(5 / 7)  # a, b, c, d, x of 7 words.
  assert distinct_n(["a a a a"], 1) == pytest.approx(0.25)
  assert distinct_n(["a b", "c"], 3) == 0.0
  assert distinct_n([], 4) == 0.0
  with pytest.raises(ValueError, match="n must"):
    distinct_n(texts, 0)
