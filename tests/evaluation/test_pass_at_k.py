"""Tests for the unbiased pass@k estimator."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from darling_jax.evaluation import pass_at_k


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
  """Share of all k-subsets of n samples (the first c correct) that contain a correct sample."""
  subsets = list(itertools.combinations(range(n), k))
  return sum(1 for subset in subsets if min(subset) < c) / len(subsets)


def test_matches_enumeration_for_small_n():
  for n in range(1, 11):
    for c in range(n + 1):
      for k in range(1, n + 1):
        assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_vectorised_broadcast_matches_scalar_calls():
  n = np.array([[10], [7], [1]])
  c = np.array([0, 1, 3, 7])
  c = np.minimum(c, n)
  values = pass_at_k(n, c, 1)
  assert values.shape == (3, 4) and values.dtype == np.float64
  for i, j in np.ndindex(3, 4):
    assert values[i, j] == pytest.approx(brute_force_pass_at_k(int(n[i, 0]), int(c[i, j]), 1), abs=1e-12)
  np.testing.assert_allclose(pass_at_k(np.array([8, 8, 8]), np.array([0, 2, 8]), np.array([1, 4, 8])),
                             [0.0, 1 - math.comb(6, 4) / math.comb(8, 4), 1.0], atol=1e-12)


def test_always_one_when_fewer_wrong_than_k():
  assert pass_at_k(10, 5, 6) == 1.0
  assert pass_at_k(10, 10, 1) == 1.0
  assert pass_at_k(10, 0, 10) == 0.0


def test_large_n_is_stable():
  value = pass_at_k(1000, 1, 500)
  assert np.isfinite(value)
  assert value == pytest.approx(0.5, abs=1e-12)
  for n, c, k in [(1000, 10, 500), (1000, 3, 128), (256, 1, 1), (256, 40, 128), (10000, 2, 9999)]:
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-10, abs=1e-15), (n, c, k)
  # A tiny probability keeps its relative precision (1 - x computed via expm1, not by subtraction).
  assert pass_at_k(10**12, 1, 1) == pytest.approx(1e-12, rel=1e-9, abs=0)
  assert pass_at_k(10**12, 3, 2) == pytest.approx(float(1 - Fraction(math.comb(10**12 - 3, 2), math.comb(10**12, 2))),
                                                  rel=1e-9, abs=0)


@pytest.mark.parametrize("n, c, k, name", [(5, 1, 6, "k"), (5, 1, 0, "k"), (5, 6, 1, "c"), (5, -1, 1, "c"),
                                           (0, 0, 1, "n"), (5.0, 1, 1, "n"), (5, 1, 1.5, "k")])
def test_bad_input_raises(n, c, k, name):
  with pytest.raises(ValueError, match=f"^{name} "):
    pass_at_k(n, c, k)
