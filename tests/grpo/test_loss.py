"""PPO-clip policy loss: hand-computed clip / dual-clip / KL values, aggregation, masking, microbatching, grad.

Every call goes through a few module-level jitted wrappers with shared shapes, so the file compiles a
handful of programs instead of one per test (XLA compiles dominate the runtime on CPU).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from darling_jax.grpo import AGG_MODES, policy_loss, policy_loss_from_terms, policy_loss_terms

E = np.e
_STATIC = ("clip_low", "clip_high", "dual_clip", "kl_coef", "agg")

jit_loss = jax.jit(policy_loss, static_argnames=_STATIC)
jit_loss_and_grad = jax.jit(jax.value_and_grad(policy_loss, has_aux=True), static_argnames=_STATIC)
jit_terms = jax.jit(policy_loss_terms, static_argnames=_STATIC[:-1])


def _f32(x):
  """Test data stays in numpy: eager jnp ops (slices, .at[].set) would each compile a program."""
  return np.asarray(x, np.float32)


@functools.partial(jax.jit, static_argnames=("clip_low", "clip_high", "dual_clip"))
def single_token_losses(advantages, ratios, *, clip_low=0.2, clip_high=0.2, dual_clip=3.0):
  """`policy_loss` of each (advantage, ratio) pair as its own one-token batch: `(f32[K], metrics of f32[K])`."""

  def one(advantage, ratio):
    logp = jnp.log(ratio).reshape(1, 1)
    return policy_loss(logp, jnp.zeros((1, 1)), advantage.reshape(1), jnp.ones((1, 1), bool),
                       clip_low=clip_low, clip_high=clip_high, dual_clip=dual_clip)

  return jax.vmap(one)(advantages, ratios)


# Rows: (advantage, ratio, per-token loss, clip active, dual clip active).
DEFAULT_CLIP_CASES = [  # clip 0.2 / 0.2, dual clip 3
    (1.0, 1.1, -1.1, 0, 0),   # A > 0, inside the range
    (1.0, 1.5, -1.2, 1, 0),   # A > 0, above: clipped to 1 + 0.2
    (1.0, 0.5, -0.5, 0, 0),   # A > 0, below: the unclipped term is the pessimistic one
    (2.0, 0.7, -1.4, 0, 0),
    (-1.0, 0.9, 0.9, 0, 0),   # A < 0, inside
    (-1.0, 0.5, 0.8, 1, 0),   # A < 0, below: clipped to 1 - 0.2
    (-1.0, 1.5, 1.5, 0, 0),   # A < 0, above: unclipped, under the dual cap 3
    (-1.0, 4.0, 3.0, 0, 1),   # A < 0, above the dual cap: -A * 3
    (-2.0, 5.0, 6.0, 0, 1),
    (0.0, 3.0, 0.0, 0, 0),
]
WIDE_CLIP_CASES = [  # clip_low 0.4, clip_high 0.28 (clip-higher), dual clip 5
    (1.0, 1.25, -1.25, 0, 0),
    (1.0, 1.5, -1.28, 1, 0),
    (-1.0, 0.5, 0.6, 1, 0),
    (-1.0, 4.0, 4.0, 0, 0),
    (-1.0, 6.0, 5.0, 0, 1),
]
NO_DUAL_CLIP_CASES = [
    (-1.0, 4.0, 4.0, 0, 0),
    (-0.5, 10.0, 5.0, 0, 0),
    (1.0, 1.5, -1.2, 1, 0),
]


@pytest.mark.parametrize(
    "cases, kwargs",
    [
        (DEFAULT_CLIP_CASES, {}),
        (WIDE_CLIP_CASES, dict(clip_low=0.4, clip_high=0.28, dual_clip=5.0)),
        (NO_DUAL_CLIP_CASES, dict(dual_clip=None)),
    ],
    ids=["default", "wide", "no-dual-clip"],
)
def test_single_token_clip_and_dual_clip(cases, kwargs):
  advantages, ratios, expected, clipped, dual_clipped = map(np.array, zip(*cases))
  loss, metrics = single_token_losses(_f32(advantages), _f32(ratios), **kwargs)
  np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics["pg_loss"], expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(metrics["clip_fraction"], clipped)
  np.testing.assert_array_equal(metrics["dual_clip_fraction"], dual_clipped)
  np.testing.assert_array_equal(metrics["kl"], np.zeros(len(cases)))


# logp = log(ratio) and old_logp = 0, so exp(logp - old_logp) is the ratio. Row 0 (A=+1) ratios
# [1.1, 1.5, 0.5] -> per-token loss [-1.1, -1.2, -0.5]; row 1 (A=-1) [0.5, 1.5, 4.0] -> [0.8, 1.5, 3.0];
# row 2 (A=0) -> 0.
FULL_LOGP = np.log(_f32([[1.1, 1.5, 0.5], [0.5, 1.5, 4.0], [1.0, 1.0, 1.0]]))
FULL_ADVANTAGES = _f32([1.0, -1.0, 0.0])
ONES_3X3 = np.ones((3, 3), np.int32)
ZEROS_3X3 = np.zeros((3, 3), np.float32)

# The same with row 0's last token masked (it holds a huge log-ratio) and a fully masked row 2 of NaN.
# `ref_logp = logp` below, so the KL term is 0 on valid tokens but its code path runs.
RAGGED_LOGP = FULL_LOGP.copy()
RAGGED_LOGP[0, 2], RAGGED_LOGP[2] = 50.0, np.nan
RAGGED_ADVANTAGES = _f32([1.0, -1.0, np.nan])
RAGGED_MASK = np.array([[1, 1, 0], [1, 1, 1], [0, 0, 0]], np.int32)


def _loss_and_grad_3x3(agg, *, logp=RAGGED_LOGP, old_logp=ZEROS_3X3, advantages=RAGGED_ADVANTAGES, mask=RAGGED_MASK,
                       ref_logp=None, kl_coef=0.1):
  """Most tests share these shapes and options, so they share a handful of compiled programs."""
  ref_logp = logp if ref_logp is None else ref_logp
  return jit_loss_and_grad(logp, old_logp, advantages, mask, ref_logp=ref_logp, kl_coef=kl_coef, agg=agg)


def test_full_batch_token_mean():
  (loss, metrics), _ = _loss_and_grad_3x3("token-mean", logp=FULL_LOGP, advantages=FULL_ADVANTAGES, mask=ONES_3X3)
  np.testing.assert_allclose(loss, (-1.1 - 1.2 - 0.5 + 0.8 + 1.5 + 3.0) / 9, rtol=1e-5)
  np.testing.assert_allclose(metrics["clip_fraction"], 2 / 9, rtol=1e-6)
  np.testing.assert_allclose(metrics["dual_clip_fraction"], 1 / 9, rtol=1e-6)


# Valid losses: row 0 [-1.1, -1.2] (sum -2.3, mean -1.15); row 1 [0.8, 1.5, 3.0] (sum 5.3, mean 5.3/3).
@pytest.mark.parametrize(
    "agg, expected",
    [
        ("token-mean", (-2.3 + 5.3) / 5),
        ("seq-mean-token-mean", (-1.15 + 5.3 / 3) / 2),
        ("seq-mean-token-sum", (-2.3 + 5.3) / 2),
    ],
)
def test_agg_modes_on_ragged_mask(agg, expected):
  (loss, metrics), grad = _loss_and_grad_3x3(agg)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  # Token metrics are token means whatever agg is: clipped at (0, 1) and (1, 0); dual clipped at (1, 2).
  np.testing.assert_allclose(metrics["clip_fraction"], 2 / 5, rtol=1e-6)
  np.testing.assert_allclose(metrics["dual_clip_fraction"], 1 / 5, rtol=1e-6)
  assert float(metrics["kl"]) == 0.0
  # Garbage (NaN, a log-ratio of 50) under the mask reaches neither the value nor the gradient.
  assert all(np.isfinite(v) for v in metrics.values())
  assert np.all(np.isfinite(grad))
  np.testing.assert_array_equal(np.asarray(grad)[np.asarray(RAGGED_MASK) == 0], 0.0)


@pytest.mark.parametrize("agg", AGG_MODES)
def test_fully_masked_batch_is_finite_zero(agg):
  (loss, metrics), grad = _loss_and_grad_3x3(agg, mask=np.zeros((3, 3), np.int32), ref_logp=ZEROS_3X3)
  assert float(loss) == 0.0
  assert all(float(v) == 0.0 for v in metrics.values())
  np.testing.assert_array_equal(grad, np.zeros((3, 3)))


def test_per_token_advantages_match_per_sequence():
  per_token = np.broadcast_to(RAGGED_ADVANTAGES[:, None], (3, 3))
  (loss, _), _ = _loss_and_grad_3x3("token-mean", advantages=per_token)
  np.testing.assert_allclose(loss, (-2.3 + 5.3) / 5, rtol=1e-5)


def test_kl_clamp():
  # ref - logp = 5: e^5 - 6 = 142.4 -> 10; -15: 14.0000003 -> 10; 100 would overflow exp without the guard.
  ref_logp = _f32([[5.0, -15.0, 100.0]] * 3)
  (loss, metrics), grad = _loss_and_grad_3x3(
      "token-mean", logp=ZEROS_3X3, advantages=_f32([0.0, 0.0, 0.0]), mask=ONES_3X3,
      ref_logp=ref_logp)
  np.testing.assert_allclose(metrics["kl"], 10.0, rtol=1e-6)
  np.testing.assert_allclose(loss, 0.1 * 10.0, rtol=1e-6)
  np.testing.assert_array_equal(grad, np.zeros((3, 3)))  # clamped: no gradient, and no NaN


# k3 at ref - logp = 1: e - 2 = 0.7182818; at -1: 1/e = 0.3678794; at 0: 0.
K3_PLUS_ONE, K3_MINUS_ONE = E - 2.0, 1.0 / E
KL_REF_LOGP = _f32([[1.0, -1.0, 9.0], [1.0, 0.0, 9.0], [0.0, 0.0, 0.0]])
KL_MASK = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]], np.int32)


# logp = old_logp = 0. Row 0: A = +1 at ratio 1 (pg -1 per token), k3 [k(1), k(-1)]; row 1: A = 0, k3 [k(1)].
@pytest.mark.parametrize(
    "agg, expected_pg, expected_kl",
    [
        ("token-mean", -2.0 / 3, (2 * K3_PLUS_ONE + K3_MINUS_ONE) / 3),
        ("seq-mean-token-mean", -1.0 / 2, ((K3_PLUS_ONE + K3_MINUS_ONE) / 2 + K3_PLUS_ONE) / 2),
        ("seq-mean-token-sum", -2.0 / 2, (K3_PLUS_ONE + K3_MINUS_ONE + K3_PLUS_ONE) / 2),
    ],
)
def test_k3_kl_hand_value_and_aggregation(agg, expected_pg, expected_kl):
  (loss, metrics), _ = _loss_and_grad_3x3(agg, logp=ZEROS_3X3, advantages=_f32([1.0, 0.0, 0.0]), mask=KL_MASK,
                                          ref_logp=KL_REF_LOGP)
  np.testing.assert_allclose(metrics["pg_loss"], expected_pg, rtol=1e-5)
  np.testing.assert_allclose(metrics["kl"], expected_kl, rtol=1e-5)
  np.testing.assert_allclose(loss, expected_pg + 0.1 * expected_kl, rtol=1e-5)


def test_kl_is_reported_but_not_added_with_zero_coef():
  (loss, metrics), _ = _loss_and_grad_3x3("token-mean", logp=ZEROS_3X3, advantages=_f32([0.0, 0.0, 0.0]),
                                          mask=KL_MASK, ref_logp=KL_REF_LOGP, kl_coef=0.0)
  assert float(loss) == 0.0
  np.testing.assert_allclose(metrics["kl"], (2 * K3_PLUS_ONE + K3_MINUS_ONE) / 3, rtol=1e-5)


def test_approx_kl_and_logp_gap():
  # logp - old_logp = [[0.1, -0.2, masked], [0.3, masked, masked]]; A = 0 and ref_logp = logp: loss 0.
  logp = _f32([[0.1, -0.2, 7.0], [0.3, 7.0, 7.0], [7.0, 7.0, 7.0]])
  (loss, metrics), _ = _loss_and_grad_3x3("token-mean", logp=logp, advantages=_f32([0.0, 0.0, 0.0]), mask=KL_MASK)
  assert float(loss) == 0.0
  np.testing.assert_allclose(metrics["approx_kl"], 0.5 * (0.01 + 0.04 + 0.09) / 3, rtol=1e-5)
  np.testing.assert_allclose(metrics["logp_gap"], (0.1 + 0.2 + 0.3) / 3, rtol=1e-5)


# A ragged batch of arbitrary values: lengths 3, 1, 0, so row 2 is fully masked. The valid tokens' ratios
# exp(logp - old_logp) are [0.90, 1.73, 0.41 | 2.72], away from the kinks 0.8, 1.2 and 3 by more than the
# finite-difference step below.
MIXED_LOGP = _f32([[-1.20, -0.35, -2.10], [-0.80, -1.50, -0.40], [-0.60, -0.90, -1.10]])
MIXED_OLD_LOGP = _f32([[-1.10, -0.90, -1.20], [-1.80, -1.20, -0.60], [-0.50, -0.70, -1.00]])
MIXED_REF_LOGP = _f32([[-1.00, -0.60, -2.30], [-1.10, -1.70, -0.10], [-0.40, -0.80, -1.30]])
MIXED_ADVANTAGES = _f32([0.7, -1.3, 0.4])
MIXED_MASK = np.array([[1, 1, 1], [1, 0, 0], [0, 0, 0]], np.int32)


def _mixed_loss_and_grad(agg, logp=MIXED_LOGP):
  return _loss_and_grad_3x3(agg, logp=logp, old_logp=MIXED_OLD_LOGP, advantages=MIXED_ADVANTAGES,
                            mask=MIXED_MASK, ref_logp=MIXED_REF_LOGP)


@jax.jit
def _loss_from_terms_for_every_agg(terms):
  return {agg: policy_loss_from_terms(terms, agg=agg) for agg in AGG_MODES}


def test_microbatch_sums_equal_full_batch():
  # One sequence per microbatch; the last microbatch is fully masked.
  terms = [jit_terms(MIXED_LOGP[i:i + 1], MIXED_OLD_LOGP[i:i + 1], MIXED_ADVANTAGES[i:i + 1], MIXED_MASK[i:i + 1],
                     ref_logp=MIXED_REF_LOGP[i:i + 1], kl_coef=0.1) for i in range(3)]
  summed = functools.reduce(lambda a, b: jax.tree.map(np.add, a, b), terms)
  from_terms = _loss_from_terms_for_every_agg(summed)
  for agg in AGG_MODES:
    (loss, metrics), ((full_loss, full_metrics), _) = from_terms[agg], _mixed_loss_and_grad(agg)
    np.testing.assert_allclose(loss, full_loss, rtol=1e-5, atol=1e-7, err_msg=agg)
    for name, value in full_metrics.items():
      np.testing.assert_allclose(metrics[name], value, rtol=1e-5, atol=1e-7, err_msg=f"{agg} {name}")
  # The mean of per-microbatch token means is *not* the full-batch loss: the reason the terms exist.
  mean_of_means = np.mean([_loss_from_terms_for_every_agg(t)["token-mean"][0] for t in terms])
  assert abs(mean_of_means - _mixed_loss_and_grad("token-mean")[0][0]) > 1e-2


@pytest.mark.parametrize("agg", AGG_MODES)
def test_grad_matches_central_finite_difference(agg):
  _, grad = _mixed_loss_and_grad(agg)
  step = 1e-2
  numeric = np.zeros((3, 3), np.float32)
  for index in np.ndindex(3, 3):
    offset = np.zeros((3, 3), np.float32)
    offset[index] = step
    (plus, _), _ = _mixed_loss_and_grad(agg, MIXED_LOGP + offset)
    (minus, _), _ = _mixed_loss_and_grad(agg, MIXED_LOGP - offset)
    numeric[index] = (plus - minus) / (2 * step)
  np.testing.assert_allclose(grad, numeric, atol=5e-4)
  assert np.abs(grad).max() > 0.05  # not trivially zero
  np.testing.assert_array_equal(np.asarray(grad)[MIXED_MASK == 0], 0.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(agg="seq-mean"), "agg must be one of .* got 'seq-mean'"),
        (dict(dual_clip=1.0), "dual_clip must be > 1"),
        (dict(clip_low=1.0), "clip_low must be in"),
        (dict(clip_high=-0.1), "clip_high must be >= 0"),
        (dict(kl_coef=0.1), "kl_coef=0.1 > 0 needs ref_logp"),
        (dict(kl_coef=-1.0, ref_logp=np.zeros((2, 3))), "kl_coef must be >= 0"),
        (dict(ref_logp=np.zeros((2, 4))), "ref_logp must have the shape of logp"),
    ],
)
def test_bad_options(kwargs, match):
  with pytest.raises(ValueError, match=match):
    jit_loss(np.zeros((2, 3)), np.zeros((2, 3)), np.ones((2,)), np.ones((2, 3)), **kwargs)


def test_bad_shapes():
  logp, mask = np.zeros((2, 3)), np.ones((2, 3))
  with pytest.raises(ValueError, match="advantages must have shape"):
    jit_loss(logp, logp, np.ones((3,)), mask)
  with pytest.raises(ValueError, match="old_logp must have the shape of logp"):
    jit_loss(logp, logp[:, :2], np.ones((2,)), mask)
  with pytest.raises(ValueError, match="mask must have the shape of logp"):
    jit_loss(logp, logp, np.ones((2,)), mask[:1])
  with pytest.raises(ValueError, match="logp must have shape"):
    jit_loss(logp[0], logp[0], np.ones((2,)), mask[0])
