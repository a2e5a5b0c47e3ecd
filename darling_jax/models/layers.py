"""Decoder building blocks: RMSNorm, rotary embeddings, grouped-query attention with a KV cache, SwiGLU MLP.

Every parameter carries a logical sharding annotation (`out_sharding` metadata, e.g. `("embed", "mlp")`);
`darling_jax.sharding` maps these names to mesh axes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from darling_jax.models.config import DecoderConfig, RopeConfig

_MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)  # finite, so fully-masked (padding) rows stay NaN-free


def param(rngs: nnx.Rngs | None, init, shape: tuple[int, ...], axes: tuple[str | None, ...], dtype) -> nnx.Param:
  """A parameter initialised by `init(key, shape, dtype)` with logical axis names `axes`."""
  key = rngs.params() if rngs is not None else jax.random.key(0)
  return nnx.Param(init(key, shape, dtype), out_sharding=axes, eager_sharding=False)


def dense_init(key, shape, dtype):
  return jax.random.normal(key, shape, dtype) * (1.0 / math.sqrt(shape[0]))


def ones_init(key, shape, dtype):
  del key
  return jnp.ones(shape, dtype)


def zeros_init(key, shape, dtype):
  del key
  return jnp.zeros(shape, dtype)


class RMSNorm(nnx.Module):
  """`w * x / sqrt(mean(x^2) + eps)`, normalised in float32 as HF does. x: `[..., dim]`."""

  def __init__(self, dim: int, eps: float, *, param_dtype, axis_name: str = "norm", rngs: nnx.Rngs | None = None):
    self.eps = eps
    self.weight = param(rngs, ones_init, (dim,), (axis_name,), param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return self.weight[...].astype(x.dtype) * normed.astype(x.dtype)


class Linear(nnx.Module):
  """`x @ kernel (+ bias)`; kernel `[in, out]` in `param_dtype`, computed in `dtype`."""

  def __init__(self, in_dim: int, out_dim: int, axes: tuple[str, str], *, use_bias: bool, param_dtype, dtype,
               rngs: nnx.Rngs | None = None):
    self.dtype = dtype
    self.kernel = param(rngs, dense_init, (in_dim, out_dim), axes, param_dtype)
    self.bias = param(rngs, zeros_init, (out_dim,), (axes[1],), param_dtype) if use_bias else None

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jnp.dot(x.astype(self.dtype).reshape(-1, x.shape[-1]), self.kernel[...].astype(self.dtype))
    y = y.reshape(*x.shape[:-1], y.shape[-1])
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


def rope_inv_freq(head_dim: int, rope: RopeConfig) -> np.ndarray:
  """Inverse frequencies `[head_dim // 2]` (float32), with llama3-style scaling when configured."""
  inv_freq = 1.0 / (rope.theta ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim))
  inv_freq = inv_freq.astype(np.float32)
  if rope.rope_type == "llama3":
    old_len = rope.original_max_position_embeddings
    low_wavelen = old_len / rope.low_freq_factor
    high_wavelen = old_len / rope.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / rope.factor, inv_freq)
    smooth = (old_len / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
    smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
    is_medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    inv_freq = np.where(is_medium, smoothed, scaled).astype(np.float32)
  return inv_freq


def rope_cos_sin(positions: jax.Array, inv_freq: np.ndarray, dtype,
                 num_positions: int | None = None) -> tuple[jax.Array, jax.Array]:
  """cos and sin of the rotary angles, each `[B, T, D]` in `dtype`, for int32 positions `[B, T]`.

  With `num_positions` (positions known to be below it), they are looked up in a `[num_positions, D]` table
  that depends only on static shapes: in a decode loop XLA computes it once, outside the loop. Computed from the
  positions directly, XLA fuses the cos/sin into each consumer and evaluates them per head and per layer (on
  CPU, a tenth of a small model's decode step).
  """
  if num_positions is not None:
    cos, sin = rope_cos_sin(jnp.arange(num_positions)[None], inv_freq, dtype)
    return jnp.take(cos[0], positions, axis=0), jnp.take(sin[0], positions, axis=0)
  freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)  # [B, T, D/2]
  emb = jnp.concatenate([freqs, freqs], axis=-1)
  return jnp.cos(emb).astype(dtype), jnp.sin(emb).astype(dtype)


def rotate(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotate-half RoPE (HF convention). x: `[B, T, ..., D]` (heads in the middle); cos, sin: `[B, T, D]`."""
  shape = cos.shape[:2] + (1,) * (x.ndim - 3) + cos.shape[-1:]
  x1, x2 = jnp.split(x, 2, axis=-1)
  rotated = jnp.concatenate([-x2, x1], axis=-1)
  return x * cos.reshape(shape) + rotated * sin.reshape(shape)


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: np.ndarray) -> jax.Array:
  """Rotate-half RoPE (HF convention). x: `[B, T, ..., D]` (heads in the middle), positions: int32 `[B, T]`."""
  return rotate(x, *rope_cos_sin(positions, inv_freq, x.dtype))


class Attention(nnx.Module):
  """Grouped-query attention with optional q/k/v bias (Qwen2), o bias and q/k RMSNorm (Qwen3)."""

  def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs | None = None):
    c = config
    kw = dict(param_dtype=c.param_dtype, dtype=c.dtype, rngs=rngs)
    self.num_heads, self.num_kv_heads, self.head_dim = c.num_heads, c.num_kv_heads, c.head_dim
    self.q_proj = Linear(c.hidden_size, c.num_heads * c.head_dim, ("embed", "q_heads"), use_bias=c.qkv_bias, **kw)
    self.k_proj = Linear(c.hidden_size, c.num_kv_heads * c.head_dim, ("embed", "kv_heads"), use_bias=c.qkv_bias,
                         **kw)
    self.v_proj = Linear(c.hidden_size, c.num_kv_heads * c.head_dim, ("embed", "kv_heads"), use_bias=c.qkv_bias,
                         **kw)
    self.o_proj = Linear(c.num_heads * c.head_dim, c.hidden_size, ("q_heads", "embed"), use_bias=c.o_bias, **kw)
    if c.qk_norm:
      self.q_norm = RMSNorm(c.head_dim, c.rms_norm_eps, param_dtype=c.param_dtype, axis_name="head_dim", rngs=rngs)
      self.k_norm = RMSNorm(c.head_dim, c.rms_norm_eps, param_dtype=c.param_dtype, axis_name="head_dim", rngs=rngs)
    else:
      self.q_norm = self.k_norm = None

  def __call__(self, x: jax.Array, rope: tuple[jax.Array, jax.Array], key_mask: jax.Array, query_slots: jax.Array,
               cache_kv: tuple[jax.Array, jax.Array] | None, write_index: jax.Array | None,
               prefix: tuple[jax.Array, jax.Array, jax.Array] | None = None):
    """Self-attention of the T new tokens over the cached and new keys (and a shared prefix).

    Args:
      x: `[B, T, E]`.
      rope: `rope_cos_sin` of the RoPE positions, `[B, T, D]` each.
      key_mask: int32 `[B, S]`, 1 on valid keys.
      query_slots: int32 `[T]` slot of each query (causality: a query sees keys in slots <= its own).
      cache_kv: `(k [B, Hkv, D, S], v [B, Hkv, S, D])` or None; the new k/v are written at slots
        `[write_index, write_index + T)` and the updated pair is returned.
      prefix: `(k [Bp, Hkv, D, P], v [Bp, Hkv, P, D], valid int32 [Bp, P])` or None: keys that come before
        all of the cache's, shared by consecutive groups of `B / Bp` rows (a prompt's, for its samples).

    Returns:
      `[B, T, E]` and the updated `(k, v)` (None without a cache).
    """
    b, t, _ = x.shape
    groups = self.num_heads // self.num_kv_heads
    if t == 1:  # a decode step: one matmul (see `_project_qkv`)
      qkv = self._project_qkv(x)  # [B, 1, Hkv, G + 2, D]: per kv head its G query heads, then k, then v
      q, k, v = qkv[:, :, :, :groups], qkv[:, :, :, groups], qkv[:, :, :, groups + 1]
    else:
      q = self.q_proj(x).reshape(b, t, self.num_kv_heads, groups, self.head_dim)
      k = self.k_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim)
      v = self.v_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim)
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)
    q, k = rotate(q, *rope), rotate(k, *rope)
    k, v = k.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3)  # k [B, Hkv, D, T], v [B, Hkv, T, D]
    if cache_kv is not None:
      k_all = jax.lax.dynamic_update_slice_in_dim(cache_kv[0], k.astype(cache_kv[0].dtype), write_index, axis=3)
      v_all = jax.lax.dynamic_update_slice_in_dim(cache_kv[1], v.astype(cache_kv[1].dtype), write_index, axis=2)
      new_cache = (k_all, v_all)
    else:
      k_all, v_all, new_cache = k, v, None
    s = k_all.shape[3]
    # Queries grouped per kv head as `[B, Hkv, G*T, D]`: plain batched matmuls against `[B, Hkv, D, S]` keys
    # (a separate size-1 T axis in the einsum makes XLA:CPU's decode-step attention ~5x slower).
    q = q.transpose(0, 2, 3, 1, 4)
    q = q.reshape(b, self.num_kv_heads, groups * t, self.head_dim)
    scale = self.head_dim ** -0.5
    scores = jnp.einsum("bkqd,bkds->bkqs", q, k_all.astype(q.dtype), preferred_element_type=jnp.float32) * scale
    scores = scores.reshape(b, self.num_kv_heads, groups, t, s)
    allowed = (jnp.arange(s)[None, :] <= query_slots[:, None])[None] & (key_mask[:, None, :] > 0)  # [B, T, S]
    scores = jnp.where(allowed[:, None, None], scores, _MASK_VALUE)
    if prefix is None:
      probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype).reshape(b, self.num_kv_heads, groups * t, s)
      out = jnp.einsum("bkqs,bksd->bkqd", probs, v_all.astype(q.dtype))
    else:
      out = self._attend_with_prefix(q, scores, v_all, prefix)
    out = out.reshape(b, self.num_kv_heads, groups, t, self.head_dim).transpose(0, 3, 1, 2, 4).reshape(b, t, -1)
    return self.o_proj(out), new_cache

  def _attend_with_prefix(self, q: jax.Array, scores: jax.Array, v_all: jax.Array,
                          prefix: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
    """Attention over a shared prefix and the rows' own keys, one softmax over both.

    q: `[B, Hkv, G*T, D]`; scores: masked float32 `[B, Hkv, G, T, S]` over the own keys, whose values are
    v_all `[B, Hkv, S, D]`; prefix: see `__call__`. Each group of `n = B / Bp` rows is attended to its prefix row
    as one `[n*G*T, D] @ [D, P]` matmul per kv head. Returns `[B, Hkv, G*T, D]`.
    """
    prefix_k, prefix_v, prefix_valid = prefix
    b, hkv, gt, d = q.shape
    rows = prefix_valid.shape[0]
    n = b // rows
    to_prefix_rows = lambda x: (x.reshape(rows, n, hkv, gt, -1).transpose(0, 2, 1, 3, 4)
                                .reshape(rows, hkv, n * gt, -1))  # [B, Hkv, G*T, X] -> [Bp, Hkv, n*G*T, X]
    from_prefix_rows = lambda x: x.reshape(rows, hkv, n, gt, -1).transpose(0, 2, 1, 3, 4).reshape(b, hkv, gt, -1)
    prefix_scores = jnp.einsum("bkqd,bkds->bkqs", to_prefix_rows(q), prefix_k.astype(q.dtype),
                               preferred_element_type=jnp.float32) * (self.head_dim ** -0.5)
    prefix_scores = jnp.where(prefix_valid[:, None, None, :] > 0, prefix_scores, _MASK_VALUE)  # [Bp, Hkv, nGT, P]
    own_scores = scores.reshape(b, hkv, gt, -1)
    top = jnp.maximum(jnp.max(own_scores, axis=-1, keepdims=True),
                      from_prefix_rows(jnp.max(prefix_scores, axis=-1, keepdims=True)))
    own_weights = jnp.exp(own_scores - top)
    prefix_weights = jnp.exp(prefix_scores - to_prefix_rows(top))
    total = (jnp.sum(own_weights, axis=-1, keepdims=True)
             + from_prefix_rows(jnp.sum(prefix_weights, axis=-1, keepdims=True)))
    out = jnp.einsum("bkqs,bksd->bkqd", own_weights.astype(q.dtype), v_all.astype(q.dtype))
    prefix_out = jnp.einsum("bkqs,bksd->bkqd", prefix_weights.astype(q.dtype), prefix_v.astype(q.dtype))
    return ((out + from_prefix_rows(prefix_out)) / total).astype(q.dtype)

  def _project_qkv(self, x: jax.Array) -> jax.Array:
    """x `[B, T, E]` -> q, k and v in one matmul, `[B, T, Hkv, G + 2, D]` (G = query heads per kv head).

    The three kernels are joined per kv head as `[E, Hkv, G + 2, D]` (q heads `h` are kv head `h // G`'s, as in
    HF): one `[B*T, E] @ [E, (Hq + 2 Hkv) D]` matmul instead of three, with any head sharding kept on `Hkv`.
    The join copies the weights; inside the decode loop it is loop-invariant and XLA hoists it out. Used for
    decode steps only: at a decode step's few rows one wide matmul beats three narrow ones on CPU, while in
    training (thousands of rows) the join and the split of its gradient cost more (tiny GRPO update: +2% step time).
    """
    b, t, e = x.shape
    hkv, d = self.num_kv_heads, self.head_dim
    per_kv_head = lambda w, n: w.reshape(w.shape[:-1] + (hkv, n, d))
    projections = ((self.q_proj, self.num_heads // hkv), (self.k_proj, 1), (self.v_proj, 1))
    dtype = self.q_proj.dtype
    kernel = jnp.concatenate([per_kv_head(p.kernel[...].astype(dtype), n) for p, n in projections], axis=2)
    qkv = jnp.einsum("te,ekgd->tkgd", x.astype(dtype).reshape(b * t, e), kernel)
    if self.q_proj.bias is not None:
      qkv = qkv + jnp.concatenate([per_kv_head(p.bias[...].astype(dtype), n) for p, n in projections], axis=1)
    return qkv.reshape(b, t, *qkv.shape[1:])


class MLP(nnx.Module):
  """SwiGLU: `down(silu(gate(x)) * up(x))`."""

  def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs | None = None):
    c = config
    kw = dict(use_bias=False, param_dtype=c.param_dtype, dtype=c.dtype, rngs=rngs)
    self.gate_proj = Linear(c.hidden_size, c.intermediate_size, ("embed", "mlp"), **kw)
    self.up_proj = Linear(c.hidden_size, c.intermediate_size, ("embed", "mlp"), **kw)
    self.down_proj = Linear(c.intermediate_size, c.hidden_size, ("mlp", "embed"), **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x `[B, T, E]` -> `[B, T, E]`.

    At a decode step (T = 1), gate and up are one matmul against their kernels stacked `[E, 2, F]` (the bytes of
    `[E, 2F]`; the `mlp` sharding of F is kept; XLA hoists the stacking out of the decode loop): on the 2-core
    CPU, in a loop of `[64, 256]` inputs, 196 µs against 274 µs for two `[256, 688]` matmuls. With many rows
    (training) two matmuls are faster: the stacking and the split of its gradient cost more (tiny GRPO update: +4%).
    """
    if x.shape[-2] != 1:
      return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))
    dtype = self.gate_proj.dtype
    kernel = jnp.stack([self.gate_proj.kernel[...].astype(dtype), self.up_proj.kernel[...].astype(dtype)], axis=1)
    gate_up = jnp.einsum("te,ecf->tcf", x.astype(dtype).reshape(-1, x.shape[-1]), kernel)
    hidden = jax.nn.silu(gate_up[:, 0]) * gate_up[:, 1]
    return self.down_proj(hidden.reshape(*x.shape[:-1], hidden.shape[-1]))
