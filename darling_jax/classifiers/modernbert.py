"""ModernBERT sequence classifier (transformers' `ModernBertForSequenceClassification`) in Flax NNX.

Pre-LN encoder with RoPE, fused `Wqkv`, GeGLU MLP and alternating global / local (sliding-window) attention.
Semantics follow transformers' eager/SDPA path on padded batches (not the unpadded flash path): a local layer
lets token i see token j iff `|i - j| <= local_attention // 2`, the first layer has no `attn_norm`, RoPE
positions are slot indices `0..T-1` (pad on the right). Dropout is not implemented (inference forward).
Parameter paths mirror transformers' names (`model.layers.1.attn.Wqkv.kernel` is `…Wqkv.weight`, transposed).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from darling_jax.classifiers.bert import (ACTIVATIONS, Embedding, LayerNorm, bidirectional_attention,
                                          check_activation, check_input, check_labels, labels_to_hf,
                                          num_labels_from_hf, require_keys)
from darling_jax.models.config import RopeConfig, dtype_from_name
from darling_jax.models.layers import Linear, apply_rope, rope_inv_freq

LAYER_TYPES = ("full_attention", "sliding_attention")
POOLINGS = ("cls", "mean")
IGNORED_SUFFIXES = ("inv_freq",)  # RoPE buffers, derived from the config
# Special-token ids of config.json: unused by the forward, carried so that an export keeps them (transformers'
# defaults, e.g. pad_token_id=50283, would not fit a small vocabulary).
TOKEN_ID_KEYS = ("pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id")


@dataclasses.dataclass(frozen=True)
class ModernBertClassifierConfig:
  """Shape and numerics of a ModernBERT classifier.

  `layer_types[i]` is "full_attention" (RoPE theta `global_rope_theta`) or "sliding_attention" (window
  `local_attention`, theta `local_rope_theta`). `dtype` is the compute dtype, `param_dtype` the storage dtype;
  LayerNorm statistics, attention softmax and the logits are float32. The special-token ids (`TOKEN_ID_KEYS`)
  are carried for export only; the forward does not use them.
  """

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  layer_types: tuple[str, ...]
  num_labels: int = 2
  max_position_embeddings: int = 8192
  global_rope_theta: float = 160_000.0
  local_rope_theta: float = 10_000.0
  local_attention: int = 128
  norm_eps: float = 1e-5
  norm_bias: bool = False
  attention_bias: bool = False
  mlp_bias: bool = False
  classifier_bias: bool = False
  hidden_activation: str = "gelu"
  classifier_activation: str = "gelu"
  classifier_pooling: str = "cls"
  id2label: tuple[str, ...] | None = None
  pad_token_id: int | None = None
  bos_token_id: int | None = None
  eos_token_id: int | None = None
  cls_token_id: int | None = None
  sep_token_id: int | None = None
  param_dtype: Any = jnp.float32
  dtype: Any = jnp.float32
  model_type: str = "modernbert"

  def __post_init__(self):
    check_activation("hidden_activation", self.hidden_activation)
    check_activation("classifier_activation", self.classifier_activation)
    object.__setattr__(self, "id2label", check_labels(self.num_labels, self.id2label))
    if self.classifier_pooling not in POOLINGS:
      raise ValueError(f"config.json key 'classifier_pooling'={self.classifier_pooling!r} is not supported; "
                       f"expected one of {POOLINGS}")
    if self.hidden_size % self.num_heads:
      raise ValueError(f"hidden_size={self.hidden_size} is not a multiple of num_attention_heads={self.num_heads}")
    object.__setattr__(self, "layer_types", tuple(self.layer_types))
    if len(self.layer_types) != self.num_layers:
      raise ValueError(f"config.json 'layer_types' has {len(self.layer_types)} entries for {self.num_layers} layers")
    bad = sorted(set(self.layer_types) - set(LAYER_TYPES))
    if bad:
      raise ValueError(f"config.json 'layer_types' {bad} not supported; expected entries from {LAYER_TYPES}")
    object.__setattr__(self, "param_dtype", dtype_from_name(self.param_dtype))
    object.__setattr__(self, "dtype", dtype_from_name(self.dtype))

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  def describe(self) -> str:
    return (f"{self.model_type}, {self.num_layers} layers, {self.num_labels} labels, norm_bias={self.norm_bias}, "
            f"attention_bias={self.attention_bias}, mlp_bias={self.mlp_bias}, "
            f"classifier_bias={self.classifier_bias}")

  @classmethod
  def from_hf(cls, hf: dict[str, Any], **overrides) -> ModernBertClassifierConfig:
    """From a HF `config.json` dict: transformers-5 keys (`layer_types`, `rope_parameters`) or the original
    ones (`global_attn_every_n_layers`, `global_rope_theta`, `local_rope_theta`)."""
    if hf.get("model_type") != "modernbert":
      raise ValueError(f"config.json model_type {hf.get('model_type')!r} is not 'modernbert'")
    require_keys(hf, ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                      "num_attention_heads"))
    num_layers = hf["num_hidden_layers"]
    layer_types = hf.get("layer_types")
    if layer_types is None:
      every = int(hf.get("global_attn_every_n_layers", 3))
      if every <= 0:
        raise ValueError(f"config.json key 'global_attn_every_n_layers'={every} must be positive")
      layer_types = ["sliding_attention" if i % every else "full_attention" for i in range(num_layers)]
    if hf.get("rope_scaling"):
      raise ValueError(f"config.json key 'rope_scaling'={hf['rope_scaling']!r} is not supported")
    rope = hf.get("rope_parameters") or {}
    for layer_type, params in rope.items():
      if (params or {}).get("rope_type", "default") != "default":
        raise ValueError(f"config.json rope_parameters[{layer_type!r}] rope_type {params['rope_type']!r} is not "
                         "supported (only 'default')")
    global_theta = (rope.get("full_attention") or {}).get("rope_theta", hf.get("global_rope_theta", 160_000.0))
    local_theta = (rope.get("sliding_attention") or {}).get("rope_theta", hf.get("local_rope_theta", 10_000.0))
    num_labels, id2label = num_labels_from_hf(hf)
    return cls(
        vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], intermediate_size=hf["intermediate_size"],
        num_layers=num_layers, num_heads=hf["num_attention_heads"], layer_types=tuple(layer_types),
        num_labels=num_labels, max_position_embeddings=hf.get("max_position_embeddings", 8192),
        global_rope_theta=float(global_theta),
        local_rope_theta=float(global_theta if local_theta is None else local_theta),  # None: global (original)
        local_attention=int(hf.get("local_attention", 128)), norm_eps=hf.get("norm_eps", 1e-5),
        norm_bias=bool(hf.get("norm_bias", False)), attention_bias=bool(hf.get("attention_bias", False)),
        mlp_bias=bool(hf.get("mlp_bias", False)), classifier_bias=bool(hf.get("classifier_bias", False)),
        hidden_activation=hf.get("hidden_activation", "gelu"),
        classifier_activation=hf.get("classifier_activation", "gelu"),
        classifier_pooling=hf.get("classifier_pooling", "cls"), id2label=id2label,
        **{key: hf.get(key) for key in TOKEN_ID_KEYS}, **overrides)

  def to_hf(self) -> dict[str, Any]:
    """The `config.json` dict (transformers-5 keys) that `AutoModelForSequenceClassification` reads as this
    model (the inverse of `from_hf`)."""
    dtype = jnp.dtype(self.param_dtype).name
    return {
        "architectures": ["ModernBertForSequenceClassification"], "model_type": "modernbert",
        "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
        "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_layers,
        "num_attention_heads": self.num_heads, "layer_types": list(self.layer_types),
        "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": self.global_rope_theta},
                            "sliding_attention": {"rope_type": "default", "rope_theta": self.local_rope_theta}},
        "max_position_embeddings": self.max_position_embeddings, "local_attention": self.local_attention,
        "norm_eps": self.norm_eps, "norm_bias": self.norm_bias, "attention_bias": self.attention_bias,
        "mlp_bias": self.mlp_bias, "classifier_bias": self.classifier_bias,
        "hidden_activation": self.hidden_activation, "classifier_activation": self.classifier_activation,
        "classifier_pooling": self.classifier_pooling, "dtype": dtype, "torch_dtype": dtype,
        **{key: getattr(self, key) for key in TOKEN_ID_KEYS},
        **labels_to_hf(self.num_labels, self.id2label),
    }


def _kw(c: ModernBertClassifierConfig, rngs) -> dict:
  return dict(param_dtype=c.param_dtype, dtype=c.dtype, rngs=rngs)


def _norm(c: ModernBertClassifierConfig, rngs) -> LayerNorm:
  return LayerNorm(c.hidden_size, c.norm_eps, use_bias=c.norm_bias, param_dtype=c.param_dtype, rngs=rngs)


class ModernBertEmbeddings(nnx.Module):

  def __init__(self, c: ModernBertClassifierConfig, *, rngs: nnx.Rngs | None = None):
    self.tok_embeddings = Embedding(c.vocab_size, c.hidden_size, ("vocab", "embed"), **_kw(c, rngs))
    self.norm = _norm(c, rngs)

  def __call__(self, input_ids: jax.Array) -> jax.Array:
    return self.norm(self.tok_embeddings(input_ids))


class ModernBertAttention(nnx.Module):
  """Fused `Wqkv` (q, k, v stacked on the output axis), RoPE on q and k, then `Wo`."""

  def __init__(self, c: ModernBertClassifierConfig, layer_type: str, *, rngs: nnx.Rngs | None = None):
    self.num_heads, self.head_dim = c.num_heads, c.head_dim
    theta = c.global_rope_theta if layer_type == "full_attention" else c.local_rope_theta
    self.rope = RopeConfig(theta=theta)
    self.Wqkv = Linear(c.hidden_size, 3 * c.hidden_size, ("embed", "q_heads"), use_bias=c.attention_bias,
                       **_kw(c, rngs))
    self.Wo = Linear(c.hidden_size, c.hidden_size, ("q_heads", "embed"), use_bias=c.attention_bias, **_kw(c, rngs))

  def __call__(self, x: jax.Array, positions: jax.Array, allowed: jax.Array) -> jax.Array:
    b, t, _ = x.shape
    q, k, v = jnp.unstack(self.Wqkv(x).reshape(b, t, 3, self.num_heads, self.head_dim), axis=2)
    inv_freq = rope_inv_freq(self.head_dim, self.rope)  # static: constant-folded at trace time
    q, k = apply_rope(q, positions, inv_freq), apply_rope(k, positions, inv_freq)
    return self.Wo(bidirectional_attention(q, k, v, allowed))


class ModernBertMLP(nnx.Module):
  """GeGLU: `Wo(act(input) * gate)` with `input, gate = split(Wi(x), 2)`."""

  def __init__(self, c: ModernBertClassifierConfig, *, rngs: nnx.Rngs | None = None):
    self.act = c.hidden_activation
    self.Wi = Linear(c.hidden_size, 2 * c.intermediate_size, ("embed", "mlp"), use_bias=c.mlp_bias, **_kw(c, rngs))
    self.Wo = Linear(c.intermediate_size, c.hidden_size, ("mlp", "embed"), use_bias=c.mlp_bias, **_kw(c, rngs))

  def __call__(self, x: jax.Array) -> jax.Array:
    inputs, gate = jnp.split(self.Wi(x), 2, axis=-1)
    return self.Wo(ACTIVATIONS[self.act](inputs) * gate)


class ModernBertEncoderLayer(nnx.Module):
  """Pre-LN block `x + attn(attn_norm(x))`, `x + mlp(mlp_norm(x))`; layer 0 has no `attn_norm` (its input is
  the already-normalised embedding)."""

  def __init__(self, c: ModernBertClassifierConfig, layer_idx: int, *, rngs: nnx.Rngs | None = None):
    self.attention_type = c.layer_types[layer_idx]
    self.attn_norm = _norm(c, rngs) if layer_idx > 0 else None
    self.attn = ModernBertAttention(c, self.attention_type, rngs=rngs)
    self.mlp_norm = _norm(c, rngs)
    self.mlp = ModernBertMLP(c, rngs=rngs)

  def __call__(self, x: jax.Array, positions: jax.Array, allowed: dict[str, jax.Array]) -> jax.Array:
    h = self.attn_norm(x) if self.attn_norm is not None else x
    x = x + self.attn(h, positions, allowed[self.attention_type])
    return x + self.mlp(self.mlp_norm(x))


class ModernBertModel(nnx.Module):

  def __init__(self, c: ModernBertClassifierConfig, *, rngs: nnx.Rngs | None = None):
    self.local_attention = c.local_attention
    self.embeddings = ModernBertEmbeddings(c, rngs=rngs)
    self.layers = nnx.List([ModernBertEncoderLayer(c, i, rngs=rngs) for i in range(c.num_layers)])
    self.final_norm = _norm(c, rngs)

  def __call__(self, input_ids: jax.Array, mask: jax.Array) -> jax.Array:
    """input_ids, mask: int32 `[B, T]` -> final hidden states `[B, T, E]`."""
    t = input_ids.shape[1]
    slots = jnp.arange(t)
    keys = (mask > 0)[:, None, :]  # [B, 1, S]
    window = jnp.abs(slots[:, None] - slots[None, :]) <= self.local_attention // 2  # [T, S]
    allowed = {"full_attention": keys, "sliding_attention": keys & window[None]}
    positions = jnp.broadcast_to(slots[None], input_ids.shape)
    x = self.embeddings(input_ids)
    for layer in self.layers:
      x = layer(x, positions, allowed)
    return self.final_norm(x)


class ModernBertPredictionHead(nnx.Module):
  """`norm(act(dense(pooled)))`."""

  def __init__(self, c: ModernBertClassifierConfig, *, rngs: nnx.Rngs | None = None):
    self.act = c.classifier_activation
    self.dense = Linear(c.hidden_size, c.hidden_size, ("embed", "embed"), use_bias=c.classifier_bias,
                        **_kw(c, rngs))
    self.norm = _norm(c, rngs)

  def __call__(self, pooled: jax.Array) -> jax.Array:
    return self.norm(ACTIVATIONS[self.act](self.dense(pooled)))


class ModernBertForSequenceClassification(nnx.Module):
  """`model(input_ids, attention_mask) -> float32 logits [B, num_labels]`.

  Pools the final hidden states by `classifier_pooling`: "cls" takes slot 0, "mean" averages real tokens.
  """

  uses_token_type_ids: bool = False

  def __init__(self, config: ModernBertClassifierConfig, *, rngs: nnx.Rngs | None = None):
    c = config
    self.config = c
    self.model = ModernBertModel(c, rngs=rngs)
    self.head = ModernBertPredictionHead(c, rngs=rngs)
    self.classifier = Linear(c.hidden_size, c.num_labels, ("embed", None), use_bias=True, **_kw(c, rngs))

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
    """input_ids, attention_mask (default ones): int `[B, T]`, right-padded -> float32 `[B, num_labels]`."""
    mask = check_input(input_ids, attention_mask, self.config.max_position_embeddings)
    hidden = self.model(input_ids, mask)
    if self.config.classifier_pooling == "cls":
      pooled = hidden[:, 0]
    else:
      weights = mask.astype(hidden.dtype)[..., None]
      pooled = jnp.sum(hidden * weights, axis=1) / jnp.sum(weights, axis=1)
    return self.classifier(self.head(pooled)).astype(jnp.float32)
