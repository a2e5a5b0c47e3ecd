"""Group-relative (GRPO) advantages and the per-group statistics they share with reward fusion.

Rewards arrive as `f32[B, G]`: B prompts, each with a group of G rollouts. Every statistic here is taken
along the group axis only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _check_groups(x: jax.Array, name: str) -> jax.Array:
  x = jnp.asarray(x, jnp.float32)
  if x.ndim != 2 or x.shape[1] < 1:
    raise ValueError(f"{name} must have shape [B, G] with G >= 1, got shape {x.shape}")
  return x


def group_mean_std(x: jax.Array, *, ddof: int) -> tuple[jax.Array, jax.Array]:
  """Per-group mean and standard deviation along the last axis.

  The mean is computed on values shifted by the group's first element (`x0 + mean(x - x0)`), which is
  mathematically the plain mean but makes a group of identical values come out with mean exactly `x0` and
  std exactly 0 in floating point. So `x - mean` is exactly 0 for a constant group, instead of rounding
  noise that a later division by `std + eps` would blow up.

  Args:
    x: `f32[B, G]` values, one group per row.
    ddof: delta degrees of freedom of the std: 0 for the population std, 1 for the unbiased one.
      Requires `G > ddof`.

  Returns:
    `(mean, std)`, each `f32[B, 1]` (kept dims, so they broadcast against `x`).
  """
  x = _check_groups(x, "x")
  group_size = x.shape[1]
  if ddof < 0 or group_size <= ddof:
    raise ValueError(f"ddof must be in [0, G) for groups of size G={group_size}, got ddof={ddof}")
  shift = x[:, :1]
  deviation = x - shift
  mean_deviation = jnp.mean(deviation, axis=1, keepdims=True)
  centered = deviation - mean_deviation
  variance = jnp.sum(centered * centered, axis=1, keepdims=True) / (group_size - ddof)
  return shift + mean_deviation, jnp.sqrt(variance)


def group_advantages(rewards: jax.Array, *, normalize_std: bool, eps: float = 1e-6) -> jax.Array:
  """GRPO outcome advantages: each reward minus its group's mean, optionally over the group's std.

  `A = r - mean_group(r)`, or with `normalize_std=True`, `A = (r - mean_group(r)) / (std_group(r) + eps)`
  with the **unbiased** std (ddof=1), as verl's `compute_grpo_outcome_advantage` (torch.std). DARLING
  uses `normalize_std=False`; the GRPO baselines of the paper use True.

  A group of size 1 (G=1) uses mean 0 and std 1, as the official code does, so its advantage is the raw
  reward (`r / (1 + eps)` with `normalize_std`). A group of identical rewards gets advantages exactly 0.

  Args:
    rewards: `f32[B, G]` scalar reward per rollout.
    normalize_std: static bool; divide by the group std (+ eps).
    eps: added to the std before dividing.

  Returns:
    `f32[B, G]` advantages, one per rollout (the same for every token of that rollout).
  """
  rewards = _check_groups(rewards, "rewards")
  if rewards.shape[1] == 1:
    mean, std = jnp.zeros_like(rewards), jnp.ones_like(rewards)
  else:
    mean, std = group_mean_std(rewards, ddof=1)
  centered = rewards - mean
  return centered / (std + eps) if normalize_std else centered
