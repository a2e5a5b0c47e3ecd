"""GRPO update: trainer/sampler log-prob parity, exact microbatch accumulation, finite differences,
minibatch steps, sharded == single-device, no retrace, config validation and fully masked batches.

XLA compilations dominate the runtime on CPU, so the tests share a few jitted programs: one whole-batch
reference (`_whole_batch_reference`: log-probs, loss and gradient of `policy_loss` for every agg mode), the
microbatched gradient per agg mode, and one update per mesh. Host-side values (model, fresh train state,
shifted parameters) are built in numpy, which costs no compilation.
"""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from darling_jax import sharding
from darling_jax.grpo import AGG_MODES, policy_loss
from darling_jax.grpo import update as update_lib
from darling_jax.grpo.batch import RolloutBatch, global_rollout_batch, rollout_batch, rollout_batch_shardings
from darling_jax.grpo.update import (
    METRICS,
    UpdateConfig,
    grpo_update,
    init_train_state,
    make_optimizer,
    make_schedule,
    minibatch_gradients,
    response_logprobs,
    train_state_shardings,
)
from darling_jax.models import DecoderConfig, init_model
from darling_jax.sampling import generate

NUM_PROMPTS, GROUP_SIZE, NUM_RESPONSE_TOKENS, PROMPT_WIDTH = 4, 4, 8, 8
ROWS = NUM_PROMPTS * GROUP_SIZE
EOS_IDS = tuple(range(3, 27))  # ~10% of the tiny model's vocabulary: most rows end early
TEMPERATURE = 0.7
PROMPTS = [[5, 17, 9, 99, 42, 7, 8], [250, 11], [31, 32, 33, 34, 35], [77]]  # left-padded to 8
MODEL_CONFIG = DecoderConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=1, num_heads=4,
                             num_kv_heads=2, head_dim=16, max_position_embeddings=64)  # ~70k params
# Loss settings of every test (KL on, so ref_logp flows through minibatches and microbatches).
GRAD_CONFIG = UpdateConfig(microbatch_size=4, kl_coef=0.05, temperature=TEMPERATURE)
# The update of the minibatch, sharding and masked-batch tests (one compilation per mesh). Adam's step
# g / (|g| + eps) amplifies the rounding noise of gradient entries near eps by ~lr / (4 eps): eps = 1e-8 turns
# noise of ~1e-8 into O(lr) parameter changes. eps = 1e-4 still gave 1.3e-5 between the 8-device and 1-device
# updates on an AVX-512 CPU (the reduction order differs); eps = 1e-3 (gradients here are up to ~1e-1) gives
# <= 9e-7 there, so the bounds below hold on any CPU's rounding.
CONFIG = dataclasses.replace(GRAD_CONFIG, learning_rate=1e-2, eps=1e-3, weight_decay=0.1, num_minibatches=2)

jitted_minibatch_gradients = jax.jit(minibatch_gradients, static_argnums=(0, 3))


@functools.partial(jax.jit, static_argnums=0)
def _whole_batch_reference(graphdef, params, batch):
  """Response log-probs, and for every agg mode the whole-batch `policy_loss` (GRAD_CONFIG's settings) and its
  `jax.grad` (one backward pass through the model, vmapped over the agg modes' cotangents)."""
  logp_of = lambda params: response_logprobs(  # noqa: E731
      nnx.merge(graphdef, params), batch.input_ids, batch.attention_mask, NUM_RESPONSE_TOKENS, TEMPERATURE)
  logp, backward = jax.vjp(logp_of, params)
  c = GRAD_CONFIG
  losses, cotangents = zip(*[jax.value_and_grad(lambda logp, agg=agg: policy_loss(
      logp, batch.old_logp, batch.advantages, batch.response_mask, clip_low=c.clip_low, clip_high=c.clip_high,
      dual_clip=c.dual_clip, ref_logp=batch.ref_logp, kl_coef=c.kl_coef, agg=agg)[0])(logp) for agg in AGG_MODES])
  (grads,) = jax.vmap(backward)(jnp.stack(cotangents))
  return logp, dict(zip(AGG_MODES, losses)), {agg: jax.tree.map(lambda g, i=i: g[i], grads)
                                              for i, agg in enumerate(AGG_MODES)}


@pytest.fixture(scope="module")
def model():
  """`init_model`'s structure and annotations, with values drawn in numpy (eager init compiles every op)."""
  graphdef, params = nnx.split(nnx.eval_shape(lambda: init_model(MODEL_CONFIG)), nnx.Param)
  rng = np.random.default_rng(0)
  draw = lambda x: (np.ones(x.shape) if len(x.shape) == 1 else  # noqa: E731  norms / matrices
                    rng.normal(size=x.shape) / np.sqrt(x.shape[0])).astype(np.float32)
  return nnx.merge(graphdef, jax.tree.map(lambda x: jnp.asarray(draw(x)), params))


@pytest.fixture(scope="module")
def sample(model):
  return generate(model, PROMPTS, num_samples=GROUP_SIZE, max_new_tokens=NUM_RESPONSE_TOKENS, eos_ids=EOS_IDS,
                  rng=jax.random.key(0), temperature=TEMPERATURE)


@pytest.fixture(scope="module")
def host_state(model):
  """`init_train_state` on host (numpy leaves; the rng as key data), to be placed fresh by each test."""
  graphdef, params = nnx.split(model, nnx.Param)
  state = jax.jit(lambda params: init_train_state(nnx.merge(graphdef, params), make_optimizer(CONFIG),
                                                  jax.random.key(1)))(params)
  return jax.device_get(state.replace(rng=jax.random.key_data(state.rng)))


def _fresh_state(host_state, shardings=None):
  """A new device `TrainState` (the update donates its argument's buffers)."""
  return jax.device_put(host_state.replace(rng=jax.random.wrap_key_data(host_state.rng)), shardings)


def _batch(sample, *, seed, log_ratio_noise=0.0, with_ref=True, empty_rows=(), keep_prefix=None):
  """A host RolloutBatch from the real sample: fewer response tokens (ragged), old_logp / ref_logp noise."""
  rng = np.random.default_rng(seed)
  advantages = rng.normal(size=(NUM_PROMPTS, GROUP_SIZE)).astype(np.float32)
  ref_logp = None
  if with_ref:
    ref_logp = np.asarray(sample.logprobs) + rng.uniform(-0.3, 0.3, sample.logprobs.shape).astype(np.float32)
  batch = jax.device_get(rollout_batch(sample, advantages, ref_logp=ref_logp))
  response_mask = batch.response_mask.copy()
  if keep_prefix is not None:  # row i keeps at most its first keep_prefix[i] response tokens
    response_mask *= np.arange(NUM_RESPONSE_TOKENS)[None, :] < np.asarray(keep_prefix)[:, None]
  response_mask[list(empty_rows)] = 0
  old_logp = batch.old_logp + rng.uniform(-log_ratio_noise, log_ratio_noise, response_mask.shape)
  return batch.replace(response_mask=response_mask.astype(np.int32), old_logp=old_logp.astype(np.float32))


def _host_params(model):
  return jax.device_get(nnx.split(model, nnx.Param)[1])


def _flat(tree):
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(jax.device_get(tree))])


def _max_diff(a, b):
  return float(np.max(np.abs(_flat(a) - _flat(b))))


def test_unchanged_policy_reproduces_sampler_logprobs(model, sample):
  logp, _, _ = _whole_batch_reference(nnx.graphdef(model), _host_params(model), _batch(sample, seed=0))
  valid = np.asarray(sample.mask).astype(bool)
  assert valid.sum() > 40 and not valid.all()  # some rows end early
  gap = np.abs(np.asarray(logp) - np.asarray(sample.logprobs))[valid].max()
  assert gap < 1e-5, gap


# Ragged responses, a fully masked row (5) and a fully masked microbatch (rows 12-15); log-ratios up to +-1.5
# reach both the clip and the dual clip.
RAGGED = dict(log_ratio_noise=1.5, empty_rows=(5, 12, 13, 14, 15),
              keep_prefix=[8, 1, 3, 8, 2, 8, 5, 8, 8, 4, 8, 1, 8, 8, 8, 8])


@pytest.mark.parametrize("agg", AGG_MODES)
def test_microbatched_gradient_equals_whole_batch_gradient(model, sample, agg):
  graphdef, params, batch = nnx.graphdef(model), _host_params(model), _batch(sample, seed=1, **RAGGED)
  _, _, expected = _whole_batch_reference(graphdef, params, batch)
  grads, terms = jitted_minibatch_gradients(graphdef, params, batch, dataclasses.replace(GRAD_CONFIG, agg=agg))
  assert float(terms.token_sums["clip_fraction"]) > 0 and float(terms.token_sums["dual_clip_fraction"]) > 0
  got, want = _flat(grads), _flat(expected[agg])
  relative = np.abs(got - want).max() / np.abs(want).max()
  assert np.abs(want).max() > 1e-3 and relative <= 1e-6, relative


def test_update_gradient_matches_finite_difference(model, sample):
  # Log-ratios within +-0.1 and steps that move no valid token's log-prob by more than 0.01 keep every token
  # inside the clip range [log 0.8, log 1.2], where the loss is smooth. The largest such step (a power of 10)
  # keeps the f32 rounding error of the loss difference ~1e-4 relative, far below the tolerance.
  batch = _batch(sample, seed=2, log_ratio_noise=0.1, empty_rows=(3,), keep_prefix=[8, 4] * 8)
  graphdef, params = nnx.graphdef(model), _host_params(model)
  grads, terms = jitted_minibatch_gradients(graphdef, params, batch, GRAD_CONFIG)  # compiled for token-mean
  assert float(terms.token_sums["clip_fraction"]) == 0.0
  grads = jax.device_get(grads)
  logp, _, _ = _whole_batch_reference(graphdef, params, batch)
  valid = batch.response_mask > 0
  rng = np.random.default_rng(3)
  random = jax.tree.map(lambda g: rng.normal(size=g.shape).astype(np.float32), grads)
  grad_norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in jax.tree.leaves(grads)))
  for direction in (grads, random):
    norm = np.sqrt(sum(np.sum(d.astype(np.float64) ** 2) for d in jax.tree.leaves(direction)))
    direction = jax.tree.map(lambda d, norm=norm: (d / norm).astype(np.float32), direction)
    analytic = sum(float(np.vdot(g, d)) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
    for step in 10.0 ** -np.arange(1, 6):
      losses, moves = [], []
      for sign in (1, -1):
        shifted = jax.tree.map(lambda p, d, s=sign * step: (p + s * d).astype(np.float32), params, direction)
        shifted_logp, loss, _ = _whole_batch_reference(graphdef, shifted, batch)
        losses.append(float(loss["token-mean"]))
        moves.append(np.abs(np.asarray(shifted_logp) - np.asarray(logp))[valid].max())
      if max(moves) <= 0.01:
        break
    numeric = (losses[0] - losses[1]) / (2 * step)
    # A random direction's derivative is ~|grad| / sqrt(#params): its error is judged against |grad|.
    np.testing.assert_allclose(numeric, analytic, rtol=5e-3, atol=1e-4 * grad_norm, err_msg=f"step {step}")


def test_two_minibatches_equal_two_manual_optimizer_steps(model, sample, host_state):
  batch = _batch(sample, seed=4, log_ratio_noise=0.5, empty_rows=(2,), keep_prefix=[8, 3] * 8)
  graphdef, optimizer = nnx.graphdef(model), make_optimizer(CONFIG)
  optimizer_step = jax.jit(lambda grads, opt_state, params: optimizer.update(grads, opt_state, params))
  params, opt_state = host_state.params, host_state.opt_state
  for half in range(2):
    # The whole-batch gradient of one half: the other half's rows masked out (they add nothing to any sum).
    mask = batch.response_mask * (np.arange(ROWS) // (ROWS // 2) == half)[:, None]
    _, _, grads = _whole_batch_reference(graphdef, params, batch.replace(response_mask=mask.astype(np.int32)))
    updates, opt_state = optimizer_step(grads[CONFIG.agg], opt_state, params)
    params = jax.tree.map(lambda p, u: p + np.asarray(u), params, updates)
  state, metrics = grpo_update(graphdef, _fresh_state(host_state), batch, config=CONFIG)
  diff = _max_diff(state.params, params)
  assert diff <= 1e-6, diff
  assert _max_diff(state.params, host_state.params) > 1e-3  # it did move
  assert int(state.step) == 1 and set(metrics) == set(METRICS)
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert float(metrics["learning_rate"]) == pytest.approx(CONFIG.learning_rate)


@pytest.fixture(scope="module")
def single_device_run(model, sample, host_state):
  """Two 1-device `grpo_update` calls on two batches: the reference of the sharded runs."""
  batches = [_batch(sample, seed=10 + i, log_ratio_noise=0.5, empty_rows=(6,)) for i in range(2)]
  state = _fresh_state(host_state)
  metrics = []
  for batch in batches:
    state, step_metrics = grpo_update(nnx.graphdef(model), state, batch, config=CONFIG)
    metrics.append(step_metrics)
  return batches, jax.device_get(state.params), jax.device_get(metrics)


@pytest.mark.parametrize("mesh_shape", [(8, 1, 1), (2, 4, 1), (2, 2, 2)])
def test_sharded_update_equals_single_device(model, host_state, single_device_run, mesh_shape, monkeypatch):
  batches, expected_params, expected_metrics = single_device_run
  # make_update_fn jits `grpo_update.__wrapped__`: re-wrapped so that a second trace (second call) raises.
  chex.clear_trace_counter()
  monkeypatch.setattr(update_lib, "grpo_update", jax.jit(chex.assert_max_traces(grpo_update.__wrapped__, n=1)))
  mesh = sharding.make_mesh(*mesh_shape)
  state_sharding = train_state_shardings(host_state, make_optimizer(CONFIG), mesh)
  update = update_lib.make_update_fn(nnx.graphdef(model), state_sharding, rollout_batch_shardings(
      mesh, with_ref_logp=True), CONFIG)
  state = _fresh_state(host_state, state_sharding)
  for batch, expected in zip(batches, expected_metrics, strict=True):
    state, metrics = update(state, global_rollout_batch(batch, mesh))
    for name in METRICS:
      np.testing.assert_allclose(float(metrics[name]), float(expected[name]), rtol=1e-5, atol=1e-6, err_msg=name)
  assert update.jitted._cache_size() == 1
  embed = state.params["embed_tokens"].get_value()
  adam_mu = state.opt_state[1][0].mu["embed_tokens"].get_value()
  assert embed.sharding == adam_mu.sharding == state_sharding.params["embed_tokens"]
  assert len(embed.sharding.device_set) == 8
  assert mesh_shape == (8, 1, 1) or not embed.sharding.is_fully_replicated
  diff = _max_diff(state.params, expected_params)
  assert diff <= 1e-5, diff
  assert int(state.step) == 2


def test_fully_masked_batch_only_decays_weights(model, sample, host_state):
  batch = _batch(sample, seed=5, empty_rows=range(ROWS))
  state, metrics = grpo_update(nnx.graphdef(model), _fresh_state(host_state), batch, config=CONFIG)
  for name in METRICS:
    assert np.isfinite(float(metrics[name])) and (name == "learning_rate" or float(metrics[name]) == 0.0), name
  # Zero gradients give a zero Adam step: each of the 2 optimizer steps only scales params by (1 - lr * wd).
  decay = (1 - CONFIG.learning_rate * CONFIG.weight_decay) ** CONFIG.num_minibatches
  assert _max_diff(state.params, jax.tree.map(lambda p: p * decay, host_state.params)) <= 1e-7


def test_update_without_reference_policy_traces(model, sample, host_state):
  """kl_coef = 0 and no ref_logp (DARLING's setting): the update needs no reference log-probs at all."""
  batch = _batch(sample, seed=7, with_ref=False)
  assert batch.ref_logp is None
  config = dataclasses.replace(CONFIG, kl_coef=0.0)
  state, metrics = jax.eval_shape(functools.partial(grpo_update.__wrapped__, nnx.graphdef(model), config=config),
                                  _fresh_state(host_state), batch)
  assert set(metrics) == set(METRICS) and all(m.shape == () for m in metrics.values())
  chex.assert_trees_all_equal_shapes_and_dtypes(state.params, host_state.params)


@pytest.mark.parametrize("field,value", [
    ("learning_rate", 0.0), ("b1", 1.0), ("b2", -0.1), ("eps", 0.0), ("weight_decay", -1.0),
    ("max_grad_norm", 0.0), ("schedule", "linear"), ("warmup_steps", -1), ("end_learning_rate", -1.0),
    ("num_minibatches", 0), ("microbatch_size", 0), ("clip_low", 1.0), ("clip_high", -0.1), ("dual_clip", 1.0),
    ("kl_coef", -0.1), ("agg", "mean"), ("temperature", 0.0),
])
def test_bad_config_names_the_field(field, value):
  with pytest.raises(ValueError, match=f"UpdateConfig.{field} must be"):
    UpdateConfig(**{field: value})


def test_bad_layout_names_the_field(model, sample, host_state):
  with pytest.raises(ValueError, match="UpdateConfig.total_steps must be"):
    UpdateConfig(schedule="warmup_cosine", warmup_steps=10, total_steps=10)
  for config, field, with_ref in ((UpdateConfig(num_minibatches=3), "num_minibatches", True),
                                  (UpdateConfig(num_minibatches=2, microbatch_size=3), "microbatch_size", True),
                                  (UpdateConfig(kl_coef=0.1), "kl_coef", False)):
    with pytest.raises(ValueError, match=f"UpdateConfig.{field}"):
      grpo_update(nnx.graphdef(model), _fresh_state(host_state), _batch(sample, seed=6, with_ref=with_ref),
                  config=config)


def test_schedules():
  steps = jnp.array([0, 2, 4, 8, 12, 20])
  cosine = make_schedule(UpdateConfig(learning_rate=1.0, schedule="warmup_cosine", warmup_steps=4, total_steps=12,
                                      end_learning_rate=0.1))
  constant = make_schedule(UpdateConfig(learning_rate=2.0, warmup_steps=4))
  rates = jax.jit(lambda s: (jax.vmap(cosine)(s), jax.vmap(constant)(s)))(steps)
  np.testing.assert_allclose(rates[0], [0.0, 0.5, 1.0, 0.55, 0.1, 0.1], atol=1e-6)
  np.testing.assert_allclose(rates[1], [0.0, 1.0, 2.0, 2.0, 2.0, 2.0], atol=1e-6)


def test_rollout_batch_layout(sample):
  batch = jax.device_get(rollout_batch(sample, jnp.arange(ROWS, dtype=jnp.float32)))
  assert isinstance(batch, RolloutBatch) and batch.ref_logp is None
  assert batch.input_ids.shape == (ROWS, PROMPT_WIDTH + NUM_RESPONSE_TOKENS)
  prompt_tokens, prompt_mask = jax.device_get((sample.prompt_tokens, sample.prompt_mask))
  np.testing.assert_array_equal(batch.input_ids[GROUP_SIZE + 1, :PROMPT_WIDTH], prompt_tokens[1])
  np.testing.assert_array_equal(batch.attention_mask[:, :PROMPT_WIDTH], np.repeat(prompt_mask, GROUP_SIZE, 0))
  np.testing.assert_array_equal(batch.attention_mask[:, PROMPT_WIDTH:], np.asarray(sample.mask))
  np.testing.assert_array_equal(batch.advantages, np.arange(ROWS))
  with pytest.raises(ValueError, match="advantages must have"):
    rollout_batch(sample, jnp.zeros((ROWS + 1,)))


def test_chunked_logprobs_equal_whole_and_hold_less_memory(model, sample):
  """The LM head over 3-position chunks (N = 8: padded to 9) gives the same log-probs, entropies and gradients;
  on a larger vocabulary the compiled backward needs less temporary memory than with the full `[R, N, V]`."""
  graphdef, params, batch = nnx.graphdef(model), _host_params(model), _batch(sample, seed=1, **RAGGED)
  grads, _ = jitted_minibatch_gradients(graphdef, params, batch, GRAD_CONFIG)
  chunked, _ = jitted_minibatch_gradients(graphdef, params, batch,
                                          dataclasses.replace(GRAD_CONFIG, logprob_chunk_size=3))
  want = _flat(grads)
  assert np.abs(_flat(chunked) - want).max() / np.abs(want).max() <= 1e-5

  def logprobs(params, chunk_size):
    return response_logprobs(nnx.merge(graphdef, params), batch.input_ids, batch.attention_mask,
                             NUM_RESPONSE_TOKENS, TEMPERATURE, with_entropy=True, chunk_size=chunk_size)

  whole = jax.jit(logprobs, static_argnums=1)(params, None)
  for got, expected in zip(jax.jit(logprobs, static_argnums=1)(params, 3), whole):
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)

  big = DecoderConfig(vocab_size=32768, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                      num_kv_heads=1, head_dim=16, max_position_embeddings=160)
  big_graphdef, big_params = nnx.split(nnx.eval_shape(lambda: init_model(big)), nnx.Param)
  ids = jax.ShapeDtypeStruct((4, 160), jnp.int32)

  def temp_bytes(chunk_size):
    def loss(params, input_ids):
      model = nnx.merge(big_graphdef, params)
      return response_logprobs(model, input_ids, jnp.ones_like(input_ids), 128, 1.0, chunk_size=chunk_size).sum()
    return jax.jit(jax.grad(loss)).lower(big_params, ids).compile().memory_analysis().temp_size_in_bytes

  full, chunked_bytes = temp_bytes(None), temp_bytes(16)
  assert full > 4 * 128 * 32768 * 4 and chunked_bytes < full / 4, (full, chunked_bytes)
