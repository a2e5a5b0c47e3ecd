"""Categorical sampling by inverse CDF: one uniform draw per row instead of one Gumbel draw per vocabulary entry."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def sample_categorical(key: jax.Array, logits: jax.Array) -> jax.Array:
  """Draws one index per row from softmax(logits). logits: float32 `[R, V]` (-inf excluded) -> int32 `[R]`.

  Same distribution as `jax.random.categorical`, but it needs R random numbers rather than R·V: on CPU,
  generating the V Gumbel samples per row costs more than a small model's whole decode step.
  """
  return categorical_from_uniform(jax.random.uniform(key, logits.shape[:1], logits.dtype), logits)


def categorical_from_uniform(uniform: jax.Array, logits: jax.Array) -> jax.Array:
  """The index of each row's draw `uniform` (float `[R]` in [0, 1)) in softmax(logits `[R, V]`) -> int32 `[R]`.

  Inverse CDF: `uniform · total` located in the running sum of the unnormalised probabilities
  (`blocked_cumsum`); the first entry of positive probability whose running sum exceeds it is taken, so a
  zero-probability entry is never picked. With `uniform` ~ U[0, 1) the index is distributed as softmax(logits).
  """
  weights = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
  cumulative = blocked_cumsum(weights)
  point = uniform.astype(weights.dtype)[:, None] * jnp.sum(weights, -1, keepdims=True)
  above = (cumulative > point) & (weights > 0)
  # Rounding can leave every entry at or below `point` (it can round up to the total): take the most likely one.
  return jnp.where(jnp.any(above, axis=-1), jnp.argmax(above, axis=-1), jnp.argmax(logits, axis=-1)).astype(jnp.int32)


def blocked_cumsum(x: jax.Array) -> jax.Array:
  """Inclusive running sum over the last axis of float `[R, V]`, as two small matmuls.

  The V entries are cut into blocks of b ≈ √V: the sums within each block are `[R, V/b, b] @ triu(ones(b, b))`
  and each block's offset is the exclusive running sum of the block totals, `[R, V/b] @ triu(ones, k=1)`.
  On the 2-core CPU, jitted, `[64, 4096]`: 0.22 ms median against 0.62 ms for `jnp.cumsum` (46 HLO
  instructions there); `[8, 49152]`: 0.59 against 0.84 ms.
  Sums are rounded like any f32 dot product: not bitwise monotone, to within float rounding of the true sums.
  """
  rows, vocab = x.shape
  block = 1 << max(1, math.ceil(math.log2(vocab) / 2))
  num_blocks = -(-vocab // block)
  padded = jnp.pad(x, ((0, 0), (0, num_blocks * block - vocab))).reshape(rows, num_blocks, block)
  within = jnp.einsum("rnb,bc->rnc", padded, jnp.asarray(np.triu(np.ones((block, block), np.float32)), x.dtype))
  before = jnp.einsum("rn,nm->rm", within[:, :, -1],
                      jnp.asarray(np.triu(np.ones((num_blocks, num_blocks), np.float32), k=1), x.dtype))
  return (within + before[:, :, None]).reshape(rows, num_blocks * block)[:, :vocab]
