"""The reference policy's log-probs (sharded like the policy) and the policy entropy the update reports."""


import jax
import numpy as np
from flax import nnx

from darling_jax import sharding
from darling_jax.grpo import (UpdateConfig, make_reference_logprobs, make_update_fn, response_logprobs,
                              rollout_batch, rollout_batch_shardings, train_state_shardings)
from darling_jax.grpo.update import init_train_state, make_optimizer
from darling_jax.models import DecoderConfig, init_model
from darling_jax.sampling import generate

CONFIG = DecoderConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                       num_kv_heads=1, head_dim=16, max_position_embeddings=64)
TEMPERATURE = 0.8


def _rollouts(model):
  sample = generate(model, [[5, 6, 7], [9], [11, 12], [40, 41, 42, 43]], num_samples=2, max_new_tokens=6,
                    eos_ids=[3, 4], rng=jax.random.key(0), temperature=TEMPERATURE)
  advantages = np.asarray([[1.0, -1.0]] * 4, np.float32)
  return sample, rollout_batch(sample, advantages)


def test_reference_logprobs_on_a_mesh_equal_the_sampler_and_the_plain_forward():
  model = init_model(CONFIG, seed=0)
  sample, rows = _rollouts(model)
  graphdef, params = nnx.split(model, nnx.Param)
  mesh = sharding.make_mesh(data=4, fsdp=2)
  state = init_train_state(model, make_optimizer(UpdateConfig()), jax.random.key(0))
  params = jax.device_put(params, train_state_shardings(state, make_optimizer(UpdateConfig()), mesh).params)
  reference = make_reference_logprobs(graphdef, params, mesh, temperature=TEMPERATURE)
  got = reference(rows.input_ids, rows.attention_mask, rows.num_response_tokens)
  assert got.sharding.spec == jax.sharding.PartitionSpec(("data", "fsdp"), None)
  plain = response_logprobs(model, rows.input_ids, rows.attention_mask, rows.num_response_tokens, TEMPERATURE)
  mask = np.asarray(rows.response_mask, bool)
  np.testing.assert_allclose(np.asarray(got)[mask], np.asarray(plain)[mask], atol=1e-5)
  np.testing.assert_allclose(np.asarray(got)[mask], np.asarray(sample.logprobs)[mask], atol=1e-5)
  # In microbatches of 2 rows (one forward each, under lax.map): the same log-probs, rows in the same order.
  in_parts = make_reference_logprobs(graphdef, params, mesh, temperature=TEMPERATURE, microbatch_size=2)
  got_in_parts = in_parts(rows.input_ids, rows.attention_mask, rows.num_response_tokens)
  assert got_in_parts.sharding.spec == jax.sharding.PartitionSpec(("data", "fsdp"), None)
  np.testing.assert_allclose(np.asarray(got_in_parts)[mask], np.asarray(got)[mask], atol=1e-5)


def test_entropy_metric_and_zero_kl_to_an_unchanged_reference():
  model = init_model(CONFIG, seed=1)
  _, rows = _rollouts(model)
  logp, entropy = response_logprobs(model, rows.input_ids, rows.attention_mask, rows.num_response_tokens,
                                    TEMPERATURE, with_entropy=True)
  logits = np.asarray(model(rows.input_ids, rows.attention_mask), np.float64)[:, -7:-1] / TEMPERATURE
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  expected = -(probs * np.log(probs)).sum(-1)
  np.testing.assert_allclose(np.asarray(entropy), expected, rtol=1e-4)

  mesh = sharding.make_mesh(data=8)
  config = UpdateConfig(learning_rate=1e-3, kl_coef=0.1, temperature=TEMPERATURE)
  optimizer = make_optimizer(config)
  graphdef = nnx.graphdef(model)
  state = init_train_state(model, optimizer, jax.random.key(0))
  shardings = train_state_shardings(state, optimizer, mesh)
  update = make_update_fn(graphdef, shardings, rollout_batch_shardings(mesh, with_ref_logp=True), config)
  batch = jax.device_get(rows.replace(old_logp=logp, ref_logp=logp))
  _, metrics = update(jax.device_put(state, shardings), batch)
  mask = np.asarray(rows.response_mask, bool)
  assert abs(float(metrics["kl"])) < 1e-6  # one minibatch: the policy is the reference when it is measured
  np.testing.assert_allclose(float(metrics["entropy"]), expected[mask].mean(), rtol=1e-4)
