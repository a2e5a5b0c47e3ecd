"""Fusing per-rollout quality and diversity into the scalar reward that GRPO sees (paper §3, §6.1).

Both inputs are `f32[B, G]`: B prompts, a group of G rollouts each. Quality is the raw reward-model score
(unbounded, often negative for Athene-RM) or a verifier's {0, 1}; diversity is the partition diversity in
[0.1, 1] (see `darling_paper_and_code.md` §1.2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from darling_jax.grpo.advantages import group_mean_std
from darling_jax.registry import Registry

# Reward modes: `fn(quality, diversity, *, add_bias, diversity_weight) -> reward`, all f32 [B, G] (see `combine`).
REWARD_MODES = Registry("reward mode")
COMBINE_MODES = ("quality_only", "multiplicative", "additive")  # the built-in modes

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
    mode: a name in `REWARD_MODES` (the built-ins: `COMBINE_MODES`).
    add_bias: static bool; per-group min-shift of quality before the product.
    diversity_weight: weight of the diversity z-score in `"additive"` mode.

  Returns:
    `f32[B, G]` fused reward.
  """
  reward_mode = REWARD_MODES.get(mode)
  if add_bias and mode != "multiplicative":
    raise ValueError(f"add_bias=True is only defined for mode='multiplicative', got mode={mode!r}")
  quality = jnp.asarray(quality, jnp.float32)
  diversity = jnp.asarray(diversity, jnp.float32)
  if quality.ndim != 2 or quality.shape[1] < 1:
    raise ValueError(f"quality must have shape [B, G] with G >= 1, got shape {quality.shape}")
  if diversity.shape != quality.shape:
    raise ValueError(f"diversity must have the shape of quality {quality.shape}, got shape {diversity.shape}")
  return reward_mode(quality, diversity, add_bias=add_bias, diversity_weight=diversity_weight)


@REWARD_MODES.register("quality_only")
def quality_only(quality: jax.Array, diversity: jax.Array, *, add_bias: bool, diversity_weight: float) -> jax.Array:
  """The GRPO baseline: quality alone."""
  del diversity, add_bias, diversity_weight
  return quality


@REWARD_MODES.register("multiplicative")
def multiplicative(quality: jax.Array, diversity: jax.Array, *, add_bias: bool, diversity_weight: float
                   ) -> jax.Array:
  """DARLING (arXiv 2509.02534 Eq. 5): quality × diversity, after the optional per-group min-shift of quality."""
  del diversity_weight
  if add_bias:
    quality = quality - jnp.min(quality, axis=1, keepdims=True)
  return quality * diversity


@REWARD_MODES.register("additive")
def additive(quality: jax.Array, diversity: jax.Array, *, add_bias: bool, diversity_weight: float) -> jax.Array:
  """The §6.1 ablation: z(quality) + diversity_weight · z(diversity), per-group z-scores."""
  del add_bias
  return group_zscore(quality) + diversity_weight * group_zscore(diversity)
