"""PPO-clip policy loss with dual clip and a k3 KL penalty, as verl's `compute_policy_loss` / `agg_loss`.

Rows are sequences (`S = B*G` rollouts), columns response tokens (`N`). The loss is built from additive
sums (`policy_loss_terms`) so that a trainer splitting a batch into microbatches can add the sums and
divide once (`policy_loss_from_terms`), which gives exactly the loss of the whole batch.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")

TOKEN_METRICS = ("clip_fraction", "dual_clip_fraction", "approx_kl", "logp_gap", "entropy")

# Log-ratios are clamped to [-20, 20] before `exp` (as verl does) so that a huge ratio cannot give
# inf * 0 = NaN in the backward pass. For the k3 KL this never changes the value (beyond +-20 it is past its
# own [-10, 10] clamp). For the PPO ratio it only matters far outside every clip range: the value moves by at
# most |A| * e^-20, except for A < 0 with the dual clip disabled, where the loss saturates at -A * e^20.
_LOG_RATIO_CLAMP = 20.0
_KL_CLAMP = 10.0


class PolicyLossTerms(NamedTuple):
  """Additive sums behind `policy_loss`. Add them across microbatches, then call `policy_loss_from_terms`.

  Every leaf is an `f32[]` sum over the (micro)batch; the dicts are keyed by agg mode (`AGG_MODES`) or
  metric name (`TOKEN_METRICS`). Denominators are raw counts (not clamped to >= 1), so sums over
  microbatches stay exact; the clamp happens only in `policy_loss_from_terms`.

  Attributes:
    loss: agg mode -> numerator of the loss, pg + kl_coef * kl.
    pg: agg mode -> numerator of the PPO surrogate alone.
    kl: agg mode -> numerator of the clamped k3 KL (unscaled; 0 without `ref_logp`).
    denominators: agg mode -> number of valid tokens ("token-mean") or of sequences with at least one
      valid token (the two seq-mean modes).
    token_sums: metric name -> sum over valid tokens; divided by the valid-token count.
  """

  loss: dict[str, jax.Array]
  pg: dict[str, jax.Array]
  kl: dict[str, jax.Array]
  denominators: dict[str, jax.Array]
  token_sums: dict[str, jax.Array]


def _as_tokens(x: jax.Array, name: str, shape: tuple[int, ...]) -> jax.Array:
  x = jnp.asarray(x)
  if x.shape != shape:
    raise ValueError(f"{name} must have the shape of logp {shape}, got shape {x.shape}")
  return x


def _aggregate(per_token: jax.Array, mask: jax.Array, tokens_per_seq: jax.Array) -> dict[str, jax.Array]:
  """Numerators of every agg mode for `per_token` `f32[S, N]` under boolean `mask` `[S, N]`."""
  seq_sums = jnp.sum(jnp.where(mask, per_token, 0.0), axis=1)
  return {
      "token-mean": jnp.sum(seq_sums),
      "seq-mean-token-mean": jnp.sum(seq_sums / jnp.maximum(tokens_per_seq, 1.0)),
      "seq-mean-token-sum": jnp.sum(seq_sums),
  }


def policy_loss_terms(
    logp: jax.Array,
    old_logp: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = 3.0,
    ref_logp: jax.Array | None = None,
    kl_coef: float = 0.0,
    entropy: jax.Array | None = None,
) -> PolicyLossTerms:
  """Per-batch sums of the PPO-clip loss, its KL term and its metrics, for every agg mode.

  Per valid token, with `ratio = exp(logp - old_logp)` and advantage `A` of its sequence:
    `pg = max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high))`, and for `A < 0` the dual clip
    `pg = min(pg, -A * dual_clip)`;
    `kl = clip(exp(ref_logp - logp) - (ref_logp - logp) - 1, -10, 10)` (k3 / verl "low_var_kl").

  `sum(t.loss[agg]) / max(sum(t.denominators[agg]), 1)` over microbatches `t` equals `policy_loss` of the
  concatenated batch, for every agg mode ("token-mean" divides by the batch's total valid-token count,
  the seq-mean modes by its number of non-empty sequences). Masked positions contribute nothing, whatever
  values (even inf/NaN) they hold, to the value or to the gradient.

  Args:
    logp: `f32[S, N]` log-probs of the sampled tokens under the policy being trained (S = B*G).
    old_logp: `f32[S, N]` log-probs under the policy that sampled them.
    advantages: `f32[S]` per sequence (broadcast over its tokens) or `f32[S, N]` per token.
    mask: int or bool `[S, N]`, nonzero on valid response tokens.
    clip_low: static float in [0, 1); lower clip range of the ratio.
    clip_high: static float >= 0; upper clip range of the ratio.
    dual_clip: static float > 1 capping the loss of `A < 0` tokens at `-A * dual_clip`; None disables.
    ref_logp: optional `f32[S, N]` reference-policy log-probs; enables the KL term.
    kl_coef: static float >= 0, weight of the KL term in the loss. With `ref_logp` and `kl_coef=0`,
      the KL is still reported as a metric.
    entropy: optional `f32[S, N]` per-token entropy of the policy, summed into the "entropy" metric (0 without).

  Returns:
    `PolicyLossTerms`.
  """
  logp = jnp.asarray(logp, jnp.float32)
  if logp.ndim != 2:
    raise ValueError(f"logp must have shape [S, N] (sequences x tokens), got shape {logp.shape}")
  shape = logp.shape
  old_logp = _as_tokens(old_logp, "old_logp", shape).astype(jnp.float32)
  mask = _as_tokens(mask, "mask", shape).astype(bool)
  advantages = jnp.asarray(advantages, jnp.float32)
  if advantages.shape == shape[:1]:
    advantages = jnp.broadcast_to(advantages[:, None], shape)
  elif advantages.shape != shape:
    raise ValueError(f"advantages must have shape [S]={shape[:1]} or [S, N]={shape}, got {advantages.shape}")
  if not 0.0 <= clip_low < 1.0:
    raise ValueError(f"clip_low must be in [0, 1), got {clip_low}")
  if clip_high < 0.0:
    raise ValueError(f"clip_high must be >= 0, got {clip_high}")
  if dual_clip is not None and not dual_clip > 1.0:
    raise ValueError(f"dual_clip must be > 1 (or None to disable), got {dual_clip}")
  if kl_coef < 0.0:
    raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
  if kl_coef > 0.0 and ref_logp is None:
    raise ValueError(f"kl_coef={kl_coef} > 0 needs ref_logp")
  advantages = jnp.where(mask, advantages, 0.0)

  # Zeroed where masked, so garbage in padding never reaches exp() or the gradient.
  log_ratio = jnp.where(mask, logp - old_logp, 0.0)
  ratio = jnp.exp(jnp.clip(log_ratio, -_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP))
  pg_unclipped = -advantages * ratio
  pg_clipped = -advantages * jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
  pg = jnp.maximum(pg_unclipped, pg_clipped)
  clipped = pg_clipped > pg_unclipped
  if dual_clip is None:
    dual_clipped = jnp.zeros(shape, bool)
  else:
    dual_cap = -advantages * dual_clip
    dual_clipped = (advantages < 0.0) & (pg > dual_cap)
    pg = jnp.where(advantages < 0.0, jnp.minimum(pg, dual_cap), pg)

  if ref_logp is None:
    kl = jnp.zeros(shape, jnp.float32)
  else:
    ref_logp = _as_tokens(ref_logp, "ref_logp", shape).astype(jnp.float32)
    ref_log_ratio = jnp.clip(jnp.where(mask, ref_logp - logp, 0.0), -_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    kl = jnp.clip(jnp.exp(ref_log_ratio) - ref_log_ratio - 1.0, -_KL_CLAMP, _KL_CLAMP)

  tokens_per_seq = jnp.sum(mask, axis=1, dtype=jnp.float32)
  num_valid_seqs = jnp.sum(tokens_per_seq > 0, dtype=jnp.float32)
  pg_sums = _aggregate(pg, mask, tokens_per_seq)
  kl_sums = _aggregate(kl, mask, tokens_per_seq)
  per_token_metrics = {
      "clip_fraction": clipped.astype(jnp.float32),
      "dual_clip_fraction": dual_clipped.astype(jnp.float32),
      "approx_kl": 0.5 * log_ratio * log_ratio,
      "logp_gap": jnp.abs(log_ratio),
      "entropy": (jnp.zeros(shape, jnp.float32) if entropy is None
                  else _as_tokens(entropy, "entropy", shape).astype(jnp.float32)),
  }
  return PolicyLossTerms(
      loss={agg: pg_sums[agg] + kl_coef * kl_sums[agg] for agg in AGG_MODES},
      pg=pg_sums,
      kl=kl_sums,
      denominators={
          "token-mean": jnp.sum(tokens_per_seq),
          "seq-mean-token-mean": num_valid_seqs,
          "seq-mean-token-sum": num_valid_seqs,
      },
      token_sums={name: jnp.sum(jnp.where(mask, value, 0.0)) for name, value in per_token_metrics.items()},
  )


def policy_loss_from_terms(terms: PolicyLossTerms, *, agg: str = "token-mean") -> tuple[jax.Array, dict]:
  """The loss and metrics of (possibly microbatch-summed) `terms` under aggregation `agg`.

  Args:
    terms: `PolicyLossTerms`, from one batch or the leaf-wise sum over microbatches
      (`jax.tree.map(jnp.add, a, b)`).
    agg: static; one of `AGG_MODES`.

  Returns:
    `(loss, metrics)`: `loss` `f32[]`; `metrics` maps `pg_loss`, `kl` (aggregated with `agg`) and
    `TOKEN_METRICS` (token means over all valid tokens) to `f32[]`. Every value is finite, also for a
    fully masked batch (denominators are clamped to >= 1).
  """
  if agg not in AGG_MODES:
    raise ValueError(f"agg must be one of {AGG_MODES}, got {agg!r}")
  denominator = jnp.maximum(terms.denominators[agg], 1.0)
  num_tokens = jnp.maximum(terms.denominators["token-mean"], 1.0)
  metrics = {"pg_loss": terms.pg[agg] / denominator, "kl": terms.kl[agg] / denominator}
  metrics.update({name: total / num_tokens for name, total in terms.token_sums.items()})
  return terms.loss[agg] / denominator, metrics


def policy_loss(
    logp: jax.Array,
    old_logp: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = 3.0,
    ref_logp: jax.Array | None = None,
    kl_coef: float = 0.0,
    agg: str = "token-mean",
) -> tuple[jax.Array, dict]:
  """PPO-clip (+ dual clip, + k3 KL) policy loss of one batch; see `policy_loss_terms` for the formulas.

  Aggregation (`agg`, static):
    * `"token-mean"` (the paper's choice, Eq. 6 with 1/sum|y_i|): sum of per-token losses over all valid
      tokens of the batch / number of valid tokens.
    * `"seq-mean-token-mean"`: per-sequence masked mean, then the mean over sequences with >= 1 valid token.
    * `"seq-mean-token-sum"`: per-sequence masked sum, then the mean over sequences with >= 1 valid token.
  Fully masked sequences therefore never change the loss (they are padding), and a fully masked batch
  gives loss 0. The KL term is aggregated the same way, times `kl_coef`, and added.

  Equals `policy_loss_from_terms(policy_loss_terms(...), agg=agg)`; a trainer accumulating gradients over
  microbatches should sum `policy_loss_terms` instead of averaging per-microbatch losses.

  Args:
    logp, old_logp, advantages, mask, clip_low, clip_high, dual_clip, ref_logp, kl_coef: see
      `policy_loss_terms`.
    agg: one of `AGG_MODES`.

  Returns:
    `(loss, metrics)`: `loss` `f32[]`; `metrics` has `pg_loss`, `kl`, `clip_fraction`,
    `dual_clip_fraction`, `approx_kl` (token mean of 0.5 * (logp - old_logp)^2) and `logp_gap` (token
    mean of |logp - old_logp|, the sampler/trainer gap), each `f32[]`.
  """
  terms = policy_loss_terms(
      logp, old_logp, advantages, mask, clip_low=clip_low, clip_high=clip_high, dual_clip=dual_clip,
      ref_logp=ref_logp, kl_coef=kl_coef)
  return policy_loss_from_terms(terms, agg=agg)
