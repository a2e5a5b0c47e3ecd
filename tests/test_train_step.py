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


def test_rollouts_sampled_in_calls_of_fewer_prompts():
  """`rl.prompts_per_sample_call`: call c samples its prompts with key `fold_in(rng, c)`, and the calls' rows are
  merged in prompt order, prompts left-padded to the widest call's width."""
  import dataclasses

  from flax import nnx

  from darling_jax import sharding
  from darling_jax.models import init_model
  from darling_jax.train_step import TrainStep, select_prompts
  from tests import train_step_multihost_worker as worker

  graphdef = nnx.graphdef(nnx.eval_shape(lambda: init_model(worker.MODEL_CONFIG)))
  params = jax.tree.map(jax.numpy.asarray, worker.host_params())
  batch = {"prompt": ["1+2=", "3*4-5=", "(6)=", "9+(0)*2*2*2*2*2="]}  # the last call's prompts are wider
  rng = jax.random.key(3)

  def step_fn(per_call):
    config = dataclasses.replace(worker.STEP_CONFIG, prompts_per_sample_call=per_call)
    return TrainStep(graphdef, None, worker.ArithmeticTask(), None, None, worker.CountingTokenizer(), config,
                     eos_ids=[worker.EOS_ID], mesh=sharding.make_mesh(8, 1, 1))

  merged, prompts = step_fn(2).sample_own_groups(params, batch, rng)
  np.testing.assert_array_equal(prompts, np.arange(4))
  group = worker.STEP_CONFIG.group_size
  for call in range(2):
    own = step_fn(0).sample(params, select_prompts(batch, np.arange(2 * call, 2 * call + 2)),
                            jax.random.fold_in(rng, call), num_samples=group, temperature=1.0)
    rows = slice(2 * call * group, (2 * call + 2) * group)
    for name in ("tokens", "mask", "logprobs"):
      np.testing.assert_array_equal(getattr(merged, name)[rows], np.asarray(getattr(own, name)))
    width = own.prompt_tokens.shape[1]
    np.testing.assert_array_equal(merged.prompt_tokens[2 * call:2 * call + 2, -width:], own.prompt_tokens)
    assert not merged.prompt_mask[2 * call:2 * call + 2, :-width].any()
  whole, _ = step_fn(0).sample_own_groups(params, batch, rng)
  assert whole.tokens.shape == merged.tokens.shape
  with pytest.raises(ValueError, match="rl.prompts_per_sample_call=3 does not divide"):
    step_fn(3).sample_own_groups(params, batch, rng)
  with pytest.raises(ValueError, match="rl.prompts_per_sample_call"):
    StepConfig(prompts_per_sample_call=-1)
