"""GRPO advantages: hand-computed values, constant groups and G=1 (through jit, with shared shapes)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from darling_jax.grpo import group_advantages, group_mean_std

jit_advantages = jax.jit(group_advantages, static_argnames=("normalize_std",))

# Row 0: mean 0.25, unbiased std sqrt(0.75 / 3) = 0.5. Row 1: mean 3, unbiased std sqrt(14 / 3) = 2.1602469.
# Row 2: all equal (0.1 is inexact in binary, so a naive mean leaves rounding noise).
REWARDS = np.array([[0.0, 0.0, 0.0, 1.0], [1.0, 2.0, 3.0, 6.0], [0.1, 0.1, 0.1, 0.1]], np.float32)


def test_mean_only():
  out = jit_advantages(REWARDS, normalize_std=False)
  np.testing.assert_allclose(out[:2], [[-0.25, -0.25, -0.25, 0.75], [-2.0, -1.0, 0.0, 3.0]], atol=1e-6)
  np.testing.assert_array_equal(out[2], np.zeros(4))


def test_std_normalized_uses_unbiased_std():
  out = jit_advantages(REWARDS, normalize_std=True)
  np.testing.assert_allclose(out[:2], [[-0.5, -0.5, -0.5, 1.5], [-0.9258201, -0.4629100, 0.0, 1.3887301]],
                             atol=1e-5)
  np.testing.assert_array_equal(out[2], np.zeros(4))  # exactly 0, not noise / 1e-6


def test_eps_is_added_to_std():
  out = jit_advantages(REWARDS, normalize_std=True, eps=0.5)
  np.testing.assert_allclose(out[0], [-0.25, -0.25, -0.25, 0.75], atol=1e-6)  # divided by 0.5 + 0.5


@pytest.mark.parametrize("normalize_std", [False, True])
def test_group_of_one_uses_mean_zero_std_one(normalize_std):
  out = jit_advantages(np.array([[3.0], [-2.0]], np.float32), normalize_std=normalize_std)
  assert np.all(np.isfinite(out))
  np.testing.assert_allclose(out, [[3.0], [-2.0]], rtol=1e-5)  # r, or r / (1 + 1e-6)


def test_group_mean_std_population():
  mean, std = jax.jit(group_mean_std, static_argnames=("ddof",))(REWARDS, ddof=0)
  np.testing.assert_allclose(mean, [[0.25], [3.0], [0.1]], atol=1e-6)
  np.testing.assert_allclose(std[:2], [[0.4330127], [1.8708287]], atol=1e-6)  # sqrt(0.75/4), sqrt(14/4)
  assert std[2, 0] == 0.0


def test_eager():
  np.testing.assert_allclose(group_advantages(REWARDS, normalize_std=True),
                             jit_advantages(REWARDS, normalize_std=True), atol=1e-6)


def test_bad_input():
  with pytest.raises(ValueError, match="rewards must have shape"):
    group_advantages(np.ones((8,)), normalize_std=False)
  with pytest.raises(ValueError, match="ddof must be in"):
    group_mean_std(np.ones((2, 1)), ddof=1)
