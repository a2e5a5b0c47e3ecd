"""Tests for `darling_jax.diversity.partition` (transitive connected components)."""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest

from darling_jax.diversity import partition


def union_find_labels(equivalent: np.ndarray) -> np.ndarray:
  """Reference: union-find over all pairs (either direction), each element labelled by its smallest member."""
  group_size = equivalent.shape[-1]
  parent = list(range(group_size))

  def find(node):
    while parent[node] != node:
      parent[node] = parent[parent[node]]
      node = parent[node]
    return node

  for i in range(group_size):
    for j in range(group_size):
      if equivalent[i, j]:
        root_i, root_j = find(i), find(j)
        parent[max(root_i, root_j)] = min(root_i, root_j)
  roots = [find(i) for i in range(group_size)]
  smallest_member = {}
  for i, root in enumerate(roots):
    smallest_member.setdefault(root, i)
  return np.array([smallest_member[root] for root in roots], np.int32)


def random_graphs(rng: np.random.Generator, batch_shape: tuple[int, ...], group_size: int,
                  edge_probability: float) -> np.ndarray:
  """Random, not necessarily symmetric, boolean matrices (partition must symmetrise them)."""
  return rng.random((*batch_shape, group_size, group_size)) < edge_probability


def shuffled_path(rng: np.random.Generator, group_size: int) -> np.ndarray:
  """A Hamiltonian path in random order: its ends are G - 1 edges apart, the worst case for closure depth."""
  order = rng.permutation(group_size)
  equivalent = np.zeros((group_size, group_size), bool)
  equivalent[order[:-1], order[1:]] = True
  return equivalent


# G = 2**k + 1 needs exactly one more squaring than G = 2**k, so an off-by-one in the loop count fails there.
@pytest.mark.parametrize("group_size", [1, 2, 3, 8, 9, 16, 17, 64])
def test_matches_union_find_on_random_graphs_and_long_paths(group_size):
  rng = np.random.default_rng(group_size)
  # Sparse to dense, so that the components range from all singletons to one class; plus shuffled paths.
  probabilities = np.repeat([0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 1.0], 8)
  graphs = rng.random((len(probabilities), group_size, group_size)) < probabilities[:, None, None]
  paths = np.stack([shuffled_path(rng, group_size) for _ in range(8)])
  graphs = np.concatenate([graphs, paths])
  labels = np.asarray(partition(graphs))
  assert labels.shape == (len(graphs), group_size)
  assert labels.dtype == np.int32
  for index, graph in enumerate(graphs):
    np.testing.assert_array_equal(labels[index], union_find_labels(graph), err_msg=str(index))
  np.testing.assert_array_equal(labels[-8:], np.zeros((8, group_size), np.int32))


def test_batched_leading_dims():
  rng = np.random.default_rng(0)
  graphs = random_graphs(rng, (2, 3, 4), 8, 0.1)
  labels = np.asarray(partition(graphs))
  assert labels.shape == (2, 3, 4, 8)
  for index in np.ndindex(2, 3, 4):
    np.testing.assert_array_equal(labels[index], union_find_labels(graphs[index]), err_msg=str(index))


def test_chain_is_one_class_although_ends_differ():
  equivalent = np.zeros((3, 3), bool)
  equivalent[0, 1] = equivalent[1, 2] = True  # a ~ b, b ~ c, a !~ c.
  np.testing.assert_array_equal(partition(equivalent), [0, 0, 0])


def test_two_paths_stay_separate():
  group_size = 64
  equivalent = np.zeros((group_size, group_size), bool)
  evens, odds = np.arange(0, group_size, 2), np.arange(1, group_size, 2)
  equivalent[evens[:-1], evens[1:]] = True
  equivalent[odds[1:], odds[:-1]] = True  # lower triangle only: must be symmetrised.
  np.testing.assert_array_equal(partition(equivalent), np.arange(group_size) % 2)


def test_diagonal_is_ignored_and_upper_triangle_suffices():
  equivalent = np.zeros((4, 4), bool)
  equivalent[1, 3] = True
  np.testing.assert_array_equal(partition(equivalent), [0, 1, 2, 1])
  np.testing.assert_array_equal(partition(equivalent | np.eye(4, dtype=bool)), [0, 1, 2, 1])
  np.testing.assert_array_equal(partition(equivalent.T), [0, 1, 2, 1])


def test_single_response_and_all_equivalent():
  np.testing.assert_array_equal(partition(np.zeros((1, 1), bool)), [0])
  np.testing.assert_array_equal(partition(np.ones((8, 8), bool)), np.zeros(8))
  np.testing.assert_array_equal(partition(np.zeros((8, 8), bool)), np.arange(8))


def test_jit_traces_once_per_shape():
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def jitted_partition(equivalent):
    return partition(equivalent)

  rng = np.random.default_rng(1)
  for _ in range(3):
    graphs = random_graphs(rng, (5,), 16, 0.08)
    labels = np.asarray(jitted_partition(graphs))
    for index in range(5):
      np.testing.assert_array_equal(labels[index], union_find_labels(graphs[index]))


@pytest.mark.parametrize("bad_input", [np.zeros((3,), bool), np.zeros((2, 3), bool), np.zeros((0, 0), bool),
                                       np.zeros((3, 3), np.int32)])
def test_bad_input_raises(bad_input):
  with pytest.raises(ValueError, match="equivalent"):
    partition(bad_input)
