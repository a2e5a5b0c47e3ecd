"""Fusing per-rollout quality and diversity into the scalar reward that GRPO sees (paper §3, §6.1).

Both inputs are `f32[B, G]`: B prompts, a group of G rollouts each. Quality is the raw reward-model score
(unbounded, often negative for Athene-RM) or a verifier's {0, 1}; diversity is the partition diversity in
[0.1, 1] (see `darling_paper_and_code.md` §1.2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from darling_jax.grpo.advantages import group_mean_std

COMBINE_MODES = ("quality_only", "multiplicative", "additive")

_ZSCORE_EPS = 1e-6


def group_zscore(x: jax.Array) -> jax.Array:
  """Per-group z-score `(x - mean) / (std + 1e-6)` with the population std (ddof=0).

  A constant group (all G values equal, including G=1) gives exactly 0: its deviations from the mean are
  exactly 0 (see `group_mean_std`), and 0 / (0 + 1e-6) = 0: the official additive path's "a group of
  constant values is set to 0" (as `darling_paper_and_code.md` §1.3 describes it), with "constant" meaning
  all values bitwise equal. A nearly constant group is z-scored normally.

  Args:
    x: `f32[B, G]`.

  Returns:
    `f32[B, G]`.
  """
  mean, std = group_mean_std(x, ddof=0)
  return (x - mean) / (std + _ZSCORE_EPS)


def combine(
    quality: jax.Array,
    diversity: jax.Array,
    *,
    mode: str,
    add_bias: bool = False,
    diversity_weight: float = 1.0,
) -> jax.Array:
  """The fused reward of each rollout.

  Modes (static strings):
    * `"quality_only"`: `quality` (the GRPO baseline; `diversity` is only shape-checked).
    * `"multiplicative"` (DARLING, paper Eq. 5): `quality * diversity`. With `add_bias=True` each group's
      minimum quality is first subtracted, so quality >= 0 and a more diverse rollout is never pushed
      further down (the official `add_bias`, off in every released script). Without it, a negative
      quality times a larger diversity gives a *more negative* reward, exactly as the official code.
    * `"additive"` (paper §6.1 ablation): `z(quality) + diversity_weight * z(diversity)`, with `z` the
      per-group `group_zscore`. This is the ablation as described; the released code's fall-through to an
      un-normalised raw sum is a bug that is not reproduced.

  `add_bias` is only meaningful for `"multiplicative"` and is rejected with any other mode;
  `diversity_weight` is used only by `"additive"`.

  Args:
    quality: `f32[B, G]` quality reward per rollout (any real dtype; computed in float32).
    diversity: `f32[B, G]` diversity per rollout.
    mode: one of `COMBINE_MODES`.
    add_bias: static bool; per-group min-shift of quality before the product.
    diversity_weight: weight of the diversity z-score in `"additive"` mode.

  Returns:
    `f32[B, G]` fused reward.
  """
  if mode not in COMBINE_MODES:
    raise ValueError(f"mode must be one of {COMBINE_MODES}, got {mode!r}")
  if add_bias and mode != "multiplicative":
    raise ValueError(f"add_bias=True is only defined for mode='multiplicative', got mode={mode!r}")
  quality = jnp.asarray(quality, jnp.float32)
  diversity = jnp.asarray(diversity, jnp.float32)
  if quality.ndim != 2 or quality.shape[1] < 1:
    raise ValueError(f"quality must have shape [B, G] with G >= 1, got shape {quality.shape}")
  if diversity.shape != quality.shape:
    raise ValueError(f"diversity must have the shape of quality {quality.shape}, got shape {diversity.shape}")

  if mode == "quality_only":
    return quality
  if mode == "multiplicative":
    if add_bias:
      quality = quality - jnp.min(quality, axis=1, keepdims=True)
    return quality * diversity
  return group_zscore(quality) + diversity_weight * group_zscore(diversity)
