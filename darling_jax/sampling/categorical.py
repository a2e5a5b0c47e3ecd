"""Categorical sampling by inverse CDF: one uniform draw per row instead of one Gumbel draw per vocabulary entry."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sample_categorical(key: jax.Array, logits: jax.Array) -> jax.Array:
  """Draws one index per row from softmax(logits). logits: float32 `[R, V]` (-inf excluded) -> int32 `[R]`.

  Same distribution as `jax.random.categorical`, but it needs R random numbers rather than R·V: on CPU,
  generating the V Gumbel samples per row costs more than a small model's whole decode step. The draw is
  `u · total` located in the running sum of the unnormalised probabilities; a zero-probability entry is never
  picked (the running sum does not increase over it).
  """
  weights = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
  cumulative = jnp.cumsum(weights, axis=-1)
  total = cumulative[:, -1:]
  point = jax.random.uniform(key, total.shape, total.dtype) * total
  above = cumulative > point
  # `point` can round up to `total`; then no entry is above it and the most likely entry is taken.
  return jnp.where(jnp.any(above, axis=-1), jnp.argmax(above, axis=-1), jnp.argmax(logits, axis=-1)).astype(jnp.int32)
