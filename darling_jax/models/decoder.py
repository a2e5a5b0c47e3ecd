"""Decoder-only LM (Llama / Qwen2 / Qwen3 family) in Flax NNX."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from darling_jax.models.config import DecoderConfig
from darling_jax.models.kv_cache import KVCache
from darling_jax.models.layers import MLP, Attention, RMSNorm, param, rope_cos_sin, rope_inv_freq


def embed_init(key, shape, dtype):
  return jax.random.normal(key, shape, dtype) * 0.02


class DecoderLayer(nnx.Module):
  """Pre-norm block: `x + attn(norm(x))`, then `x + mlp(norm(x))`."""

  def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs | None = None):
    c = config
    self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps, param_dtype=c.param_dtype, rngs=rngs)
    self.self_attn = Attention(c, rngs=rngs)
    self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps, param_dtype=c.param_dtype, rngs=rngs)
    self.mlp = MLP(c, rngs=rngs)

  def __call__(self, x, rope, key_mask, query_slots, cache_kv, write_index, prefix=None):
    attn_out, new_kv = self.self_attn(self.input_layernorm(x), rope, key_mask, query_slots, cache_kv, write_index,
                                      prefix)
    x = x + attn_out
    x = x + self.mlp(self.post_attention_layernorm(x))
    return x, new_kv


class DecoderLM(nnx.Module):
  """Causal LM. `model(input_ids, attention_mask) -> float32 logits [B, T, V]`.

  Padding is on the left or right; RoPE positions count real tokens only (`cumsum(mask) - 1`), as HF's
  `generate` does. Embeddings are tied by reading `embed_tokens` in the head (no shared submodule).
  """

  def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs | None = None):
    c = config
    self.config = c
    self.embed_tokens = param(rngs, embed_init, (c.vocab_size, c.hidden_size), ("vocab", "embed"), c.param_dtype)
    self.layers = nnx.List([DecoderLayer(c, rngs=rngs) for _ in range(c.num_layers)])
    self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps, param_dtype=c.param_dtype, rngs=rngs)
    self.lm_head = None if c.tie_word_embeddings else param(
        rngs, embed_init, (c.hidden_size, c.vocab_size), ("embed", "vocab"), c.param_dtype)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
    """input_ids, attention_mask: int32 `[B, T]` -> float32 logits `[B, T, V]` (uncached forward)."""
    return self.logits(self.hidden_states(input_ids, attention_mask))

  def hidden_states(self, input_ids: jax.Array, attention_mask: jax.Array | None = None,
                    positions: jax.Array | None = None) -> jax.Array:
    """The trunk without the LM head: embeddings, layers and final norm (uncached, causal).

    Args:
      input_ids, attention_mask: int32 `[B, T]` (mask default ones; padding keys are masked).
      positions: int32 `[B, T]` RoPE positions (default: real tokens counted, `cumsum(mask) - 1`).

    Returns:
      Final-norm hidden states `[B, T, E]` in the compute dtype.
    """
    if attention_mask is None:
      attention_mask = jnp.ones_like(input_ids)
    attention_mask = attention_mask.astype(jnp.int32)
    if positions is None:
      positions = jnp.maximum(jnp.cumsum(attention_mask, axis=1) - 1, 0)
    t = input_ids.shape[1]
    hidden, _ = self._run_layers(input_ids, positions, attention_mask, jnp.arange(t), None, None)
    return hidden

  def forward_with_cache(self, input_ids: jax.Array, cache: KVCache, attention_mask: jax.Array | None = None,
                         prefix: KVCache | None = None, last_logits_only: bool = False) -> tuple[jax.Array, KVCache]:
    """Appends `input_ids` (int32 `[B, T]`) at slots `[cache.end_index, cache.end_index + T)`.

    Args:
      input_ids: int32 `[B, T]`.
      cache: the rows' cache.
      attention_mask: int32 `[B, T]` (default ones), 0 marks padding among the new tokens.
      prefix: None, or a cache of `Bp` rows (B a multiple of Bp) whose tokens come before all of `cache`'s:
        row r continues prefix row `r // (B / Bp)`, which it reads but does not copy (a prompt's cache for its
        samples). The prefix is not changed.
      last_logits_only: the LM head on the last position only (a prefill needs no other logits: `[B, T, V]`
        float32 is 20 GB for 32 prompts of 1,024 tokens at a 151k vocabulary).

    Returns:
      float32 logits `[B, T, V]` (`[B, 1, V]` with `last_logits_only`) and the updated cache. Positions continue from each row's count of cached real
      tokens (its prefix row's included).
    """
    if attention_mask is None:
      attention_mask = jnp.ones_like(input_ids)
    attention_mask = attention_mask.astype(jnp.int32)
    b, t = input_ids.shape
    cached = cache.next_positions()
    if prefix is not None:
      if b % prefix.valid.shape[0]:
        raise ValueError(f"{b} rows cannot continue a prefix of {prefix.valid.shape[0]} rows (not a multiple)")
      cached = cached + jnp.repeat(prefix.next_positions(), b // prefix.valid.shape[0])
    positions = cached[:, None] + jnp.maximum(jnp.cumsum(attention_mask, axis=1) - 1, 0)
    valid = jax.lax.dynamic_update_slice_in_dim(cache.valid, attention_mask, cache.end_index, axis=1)
    query_slots = cache.end_index + jnp.arange(t)
    hidden, new_kv = self._run_layers(input_ids, positions, valid, query_slots, cache, cache.end_index, prefix)
    new_cache = KVCache(k=tuple(k for k, _ in new_kv), v=tuple(v for _, v in new_kv), valid=valid,
                        end_index=cache.end_index + t)
    return self.logits(hidden[:, -1:] if last_logits_only else hidden), new_cache

  def _run_layers(self, input_ids, positions, key_mask, query_slots, cache, write_index, prefix=None):
    c = self.config
    x = jnp.take(self.embed_tokens[...], input_ids, axis=0).astype(c.dtype)
    num_positions = None if cache is None else cache.max_length + (0 if prefix is None else prefix.max_length)
    rope = rope_cos_sin(positions, rope_inv_freq(c.head_dim, c.rope), c.dtype, num_positions)  # for all layers
    new_kv = []
    for i, layer in enumerate(self.layers):
      cache_kv = (cache.k[i], cache.v[i]) if cache is not None else None
      prefix_kv = (prefix.k[i], prefix.v[i], prefix.valid) if prefix is not None else None
      if c.remat and cache is None:  # only the cache-free forward is differentiated (sampling is not)
        x, kv = nnx.remat(lambda lyr, *a: lyr(*a))(layer, x, rope, key_mask, query_slots, cache_kv, write_index,
                                                   prefix_kv)
      else:
        x, kv = layer(x, rope, key_mask, query_slots, cache_kv, write_index, prefix_kv)
      new_kv.append(kv)
    return self.norm(x), new_kv

  def logits(self, hidden: jax.Array) -> jax.Array:
    """hidden `[B, T, E]` -> float32 logits `[B, T, V]` (tied head reads the embedding table)."""
    if self.lm_head is None:
      w = self.embed_tokens[...].astype(self.config.dtype)
      out = jnp.einsum("bte,ve->btv", hidden, w, preferred_element_type=jnp.float32)
    else:
      out = jnp.einsum("bte,ev->btv", hidden, self.lm_head[...].astype(self.config.dtype),
                       preferred_element_type=jnp.float32)
    return out.astype(jnp.float32)


def init_model(config: DecoderConfig, seed: int = 0) -> DecoderLM:
  """A randomly initialised model (for tests and from-scratch training)."""
  return DecoderLM(config, rngs=nnx.Rngs(params=seed))
