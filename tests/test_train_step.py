"""The train step's reward stage: DARLING's reward and advantage, jitted as `TrainStep` runs it."""

import functools

import jax
import numpy as np
import pytest

from darling_jax.train_step import StepConfig, count_classes, rewards_and_advantages


@pytest.mark.parametrize("mode,normalize_std", [("multiplicative", False), ("quality_only", True)])
def test_rewards_and_advantages_follow_the_formulas(mode, normalize_std):
  quality = np.asarray([[1, 0, 1, 1], [0, 0, 0, 0]], np.float32)
  diversity = np.asarray([[1.0, 1.0, 2 / 3, 2 / 3], [0.1, 0.1, 0.1, 0.1]], np.float32)
  jitted = jax.jit(functools.partial(rewards_and_advantages, mode=mode, add_bias=False, diversity_weight=1.0,
                                     normalize_std=normalize_std))
  reward, advantages = map(np.asarray, jitted(quality, diversity))
  expected = quality * diversity if mode == "multiplicative" else quality
  np.testing.assert_allclose(reward, expected, rtol=1e-6)
  centered = expected - expected.mean(axis=1, keepdims=True)
  if normalize_std:
    centered = centered / (expected.std(axis=1, ddof=1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(advantages, centered, rtol=1e-5, atol=1e-6)
  assert np.all(advantages[1] == 0)  # an all-wrong group teaches nothing


def test_count_classes_and_config_errors():
  np.testing.assert_array_equal(count_classes(np.asarray([[0, 0, 2, 3], [0, 0, 0, 0]])), [3, 1])
  with pytest.raises(ValueError, match="rl.group_size"):
    StepConfig(group_size=1)
  with pytest.raises(ValueError, match="rl.diversity_source"):
    StepConfig(diversity_source="bleu")
  with pytest.raises(ValueError, match="rl.ngram_unit"):
    StepConfig(ngram_unit="token")
