"""Top-k / top-p (nucleus) truncation of next-token logits."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def truncate_logits(logits: jax.Array, *, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """Sets logits outside the top-k / top-p set to -inf. logits: float32 `[..., V]`; top_k=0, top_p=1 keep all.

  top-p keeps the smallest prefix of tokens (by descending probability) whose mass reaches `top_p`; the most
  likely token is always kept. Tokens tied with the last kept logit are kept too.
  """
  neg_inf = jnp.array(-jnp.inf, logits.dtype)
  if top_k > 0 and top_k < logits.shape[-1]:
    kth_largest = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth_largest, neg_inf, logits)
  if top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    kept = mass_before < top_p  # a prefix: the first token always has mass_before 0
    threshold = jnp.min(jnp.where(kept, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits < threshold, neg_inf, logits)
  return logits
