"""Reward fusion: hand-computed values for every mode and the edge cases of §1.3.

Inputs are numpy and calls go through one jitted `combine` (static mode / add_bias) with shared shapes,
so the file compiles a few programs rather than one per test.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from darling_jax import rewards

jit_combine = jax.jit(rewards.combine, static_argnames=("mode", "add_bias"))


def _f32(x):
  return np.asarray(x, np.float32)


# Row 0: negative quality. Row 1: all-zero quality. Row 2: all-equal (positive) quality.
QUALITY = _f32([[-2.0, -1.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
DIVERSITY = _f32([[1.0, 0.5, 0.1, 1.0], [0.7, 0.7, 1.0, 0.1], [0.1, 0.5, 1.0, 1.0]])


def test_quality_only_ignores_diversity():
  np.testing.assert_array_equal(jit_combine(QUALITY, DIVERSITY, mode="quality_only"), QUALITY)


def test_multiplicative_without_bias():
  # Row 0: the more diverse negative rollout (-2 x 1.0) is pushed below -1 x 0.5: the official behaviour.
  out = jit_combine(QUALITY, DIVERSITY, mode="multiplicative")
  np.testing.assert_allclose(out, [[-2.0, -0.5, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0], [0.2, 1.0, 2.0, 2.0]], atol=1e-7)


def test_multiplicative_with_bias_subtracts_each_group_min():
  # Row 0: min -2, quality [0, 1, 2, 5]. Rows 1 and 2: constant, so quality 0 after the shift.
  out = jit_combine(QUALITY, DIVERSITY, mode="multiplicative", add_bias=True)
  np.testing.assert_allclose(out, [[0.0, 0.5, 0.2, 5.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], atol=1e-7)


def test_multiplicative_binary_math_reward():
  # Incorrect rollouts get 0 whatever their diversity; correct ones get their diversity.
  quality = _f32([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
  out = jit_combine(quality, DIVERSITY, mode="multiplicative")
  np.testing.assert_allclose(out, [[1.0, 0.0, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0], [0.1, 0.5, 1.0, 1.0]], atol=1e-7)


# Row 0: z(quality) with mean 1, population std 1 -> [-1, -1, 1, 1]; z(diversity) with mean 0.325 and
# population std sqrt(0.151875) = 0.3897114 -> [-1/sqrt(3)] * 3 + [sqrt(3)] = [-0.5773503] * 3 + [1.7320508].
# Row 1: constant quality -> z = 0, so only z(diversity) remains. Row 2: both constant, with 0.1 (inexact
# in binary) -> exactly 0, not rounding noise divided by 1e-6.
ADDITIVE_QUALITY = _f32([[0.0, 0.0, 2.0, 2.0], [3.0, 3.0, 3.0, 3.0], [0.1, 0.1, 0.1, 0.1]])
ADDITIVE_DIVERSITY = _f32([[0.1, 0.1, 0.1, 1.0], [0.1, 0.1, 0.1, 1.0], [0.1, 0.1, 0.1, 0.1]])


@pytest.mark.parametrize(
    "diversity_weight, expected_row0, expected_row1",
    [
        (1.0, [-1.5773503, -1.5773503, 0.4226497, 2.7320508], [-0.5773503] * 3 + [1.7320508]),
        (0.5, [-1.2886751, -1.2886751, 0.7113249, 1.8660254], [-0.2886751] * 3 + [0.8660254]),
    ],
)
def test_additive_zscores_both_terms(diversity_weight, expected_row0, expected_row1):
  out = np.asarray(jit_combine(ADDITIVE_QUALITY, ADDITIVE_DIVERSITY, mode="additive",
                               diversity_weight=diversity_weight))
  np.testing.assert_allclose(out[0], expected_row0, atol=1e-5)  # eps 1e-6 moves values by ~3e-6
  np.testing.assert_allclose(out[1], expected_row1, atol=1e-5)
  np.testing.assert_array_equal(out[2], np.zeros(4))


def test_group_of_one():
  quality, diversity = _f32([[-3.0], [2.0]]), _f32([[0.5], [1.0]])
  np.testing.assert_array_equal(jit_combine(quality, diversity, mode="additive"), [[0.0], [0.0]])
  np.testing.assert_allclose(jit_combine(quality, diversity, mode="multiplicative"), [[-1.5], [2.0]])
  np.testing.assert_array_equal(jit_combine(quality, diversity, mode="multiplicative", add_bias=True), [[0.0], [0.0]])


@pytest.mark.parametrize("mode, add_bias", [("quality_only", False), ("multiplicative", True), ("additive", False)])
def test_eager_matches_jit_and_returns_float32(mode, add_bias):
  quality = QUALITY.astype(np.int32)  # e.g. a verifier's {0, 1}; promoted to float32
  out = rewards.combine(quality, DIVERSITY, mode=mode, add_bias=add_bias)
  assert out.dtype == np.float32
  np.testing.assert_allclose(out, jit_combine(quality, DIVERSITY, mode=mode, add_bias=add_bias), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="sum"), "unknown reward mode .sum."),
        (dict(mode="additive", add_bias=True), "add_bias=True .* mode='additive'"),
        (dict(mode="quality_only", add_bias=True), "add_bias=True .* mode='quality_only'"),
    ],
)
def test_bad_options(kwargs, match):
  with pytest.raises(ValueError, match=match):
    rewards.combine(QUALITY, DIVERSITY, **kwargs)


def test_bad_shapes():
  with pytest.raises(ValueError, match="diversity must have the shape of quality"):
    rewards.combine(QUALITY, DIVERSITY[:, :3], mode="multiplicative")
  with pytest.raises(ValueError, match="quality must have shape"):
    rewards.combine(QUALITY[0], DIVERSITY[0], mode="multiplicative")
