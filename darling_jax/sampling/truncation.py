"""Top-k / top-p (nucleus) truncation of next-token logits."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Bisection steps that pin down any int32 key exactly (the search interval has at most 2^32 + 1 keys).
_KEY_BISECTION_STEPS = 33


def _order_key(x: jax.Array) -> jax.Array:
  """int32 keys with the order of the float32 values `x` (-inf < ... < 0 < ... < inf; -0.0 and 0.0 one key)."""
  x = x.astype(jnp.float32)
  bits = jax.lax.bitcast_convert_type(jnp.where(x == 0, jnp.float32(0), x), jnp.int32)
  return jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)


def _midpoint(low: jax.Array, high: jax.Array) -> jax.Array:
  """floor((low + high) / 2) of int32 arrays, without overflow."""
  return (low >> 1) + (high >> 1) + (low & high & 1)


def top_p_keep(logits: jax.Array, top_p: float) -> jax.Array:
  """bool `[..., V]`: the nucleus of `softmax(logits)` (see `truncate_logits`), found without sorting.

  A token with logit l is kept iff the probability mass of the tokens with a larger logit is below `top_p`, so
  the kept set is every token whose logit is at least some threshold. The threshold is found by bisection over the
  int32 order keys of the logits (33 masked sums over V): exact, and on CPU far cheaper than sorting V logits
  per row at every decode step.
  """
  probs = jax.nn.softmax(logits, axis=-1)
  keys = _order_key(logits)

  def mass_above(key):  # [..., 1] -> [..., 1]: the mass of tokens whose key is larger
    return jnp.sum(jnp.where(keys > key, probs, 0.0), axis=-1, keepdims=True)

  def step(_, bounds):
    low, high = bounds  # mass_above(low) >= top_p > mass_above(high)
    middle = _midpoint(low, high)
    below = mass_above(middle) < top_p
    return jnp.where(below, low, middle), jnp.where(below, middle, high)

  smallest = jnp.min(keys, axis=-1, keepdims=True)
  low = jnp.where(smallest == jnp.iinfo(jnp.int32).min, smallest, smallest - 1)  # mass_above(low) = 1 >= top_p
  high = jnp.max(keys, axis=-1, keepdims=True)                                  # mass_above(high) = 0 < top_p
  _, threshold = jax.lax.fori_loop(0, _KEY_BISECTION_STEPS, step, (low, high))
  return keys >= threshold


def truncate_logits(logits: jax.Array, *, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """Sets logits outside the top-k / top-p set to -inf. logits: float32 `[..., V]`; top_k=0, top_p=1 keep all.

  top-p keeps the smallest prefix of tokens (by descending probability) whose mass reaches `top_p`; the most
  likely token is always kept. Tokens tied with the last kept logit are kept too (`top_p_keep`).
  """
  neg_inf = jnp.array(-jnp.inf, logits.dtype)
  if top_k > 0 and top_k < logits.shape[-1]:
    kth_largest = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth_largest, neg_inf, logits)
  if top_p < 1.0:
    logits = jnp.where(top_p_keep(logits, top_p), logits, neg_inf)
  return logits
