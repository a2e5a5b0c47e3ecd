"""Decoder configuration for the Llama / Qwen2 / Qwen3 family, and its mapping to and from HF `config.json`."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3")

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def dtype_from_name(name: Any) -> jnp.dtype:
  """`"bfloat16"` / `jnp.bfloat16` / `np.dtype` -> `jnp.dtype`; a clear error for anything else."""
  if isinstance(name, str):
    if name not in _DTYPES:
      raise ValueError(f"unsupported dtype {name!r}; expected one of {sorted(_DTYPES)}")
    return jnp.dtype(_DTYPES[name])
  return jnp.dtype(name)


@dataclasses.dataclass(frozen=True)
class RopeConfig:
  """Rotary embedding. `rope_type` is "default" or "llama3" (HF's `rope_parameters` / `rope_scaling`)."""

  theta: float = 10000.0
  rope_type: str = "default"
  factor: float = 1.0
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """Shape and numerics of a decoder-only LM.

  `qkv_bias` is Qwen2's q/k/v bias (Llama's `attention_bias` sets it and `o_bias`); `qk_norm` is Qwen3's
  per-head RMSNorm of q and k before RoPE. `dtype` is the compute dtype, `param_dtype` the storage dtype;
  logits are always float32. `remat` rematerialises each layer in the backward pass.
  """

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  max_position_embeddings: int = 2048
  rms_norm_eps: float = 1e-6
  rope: RopeConfig = RopeConfig()
  tie_word_embeddings: bool = False
  qkv_bias: bool = False
  o_bias: bool = False
  qk_norm: bool = False
  model_type: str = "llama"
  param_dtype: Any = jnp.float32
  dtype: Any = jnp.float32
  remat: bool = False
  bos_token_id: int | None = None
  eos_token_id: int | tuple[int, ...] | None = None
  pad_token_id: int | None = None

  def __post_init__(self):
    if self.model_type not in SUPPORTED_MODEL_TYPES:
      raise ValueError(f"model_type {self.model_type!r} is not supported; expected one of {SUPPORTED_MODEL_TYPES}")
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
                "head_dim"):
      if getattr(self, key) <= 0:
        raise ValueError(f"config key {key!r} must be positive, got {getattr(self, key)}")
    if self.num_heads % self.num_kv_heads:
      raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")
    if self.rope.rope_type not in ("default", "llama3"):
      raise ValueError(f"rope type {self.rope.rope_type!r} is not supported; expected 'default' or 'llama3'")
    if isinstance(self.eos_token_id, list):  # config.json lists (Llama 3.1's three EOS ids): hashable, for jit
      object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))
    object.__setattr__(self, "param_dtype", dtype_from_name(self.param_dtype))
    object.__setattr__(self, "dtype", dtype_from_name(self.dtype))

  def replace(self, **changes) -> DecoderConfig:
    return dataclasses.replace(self, **changes)

  @property
  def num_params(self) -> int:
    """Parameter count (embeddings counted once when tied)."""
    d, h = self.hidden_size, self.head_dim
    attn = d * h * (self.num_heads * 2 + self.num_kv_heads * 2)
    attn += (self.num_heads + 2 * self.num_kv_heads) * h * self.qkv_bias + d * self.o_bias + 2 * h * self.qk_norm
    layer = attn + 3 * d * self.intermediate_size + 2 * d
    head = 0 if self.tie_word_embeddings else self.vocab_size * d
    return self.num_layers * layer + self.vocab_size * d + head + d

  # ---------------------------------------------------------------- HF config.json mapping
  @classmethod
  def from_hf(cls, hf: dict[str, Any], **overrides) -> DecoderConfig:
    """Build from a HF `config.json` dict; unsupported features raise naming the key."""
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
      raise ValueError(
          f"config.json model_type {model_type!r} is not supported; expected one of {SUPPORTED_MODEL_TYPES}")
    for key in ("mlp_bias", "use_sliding_window"):
      if hf.get(key):
        raise ValueError(f"config.json key {key!r}={hf[key]!r} is not supported")
    if hf.get("hidden_act", "silu") != "silu":
      raise ValueError(f"config.json key 'hidden_act'={hf['hidden_act']!r} is not supported (only 'silu')")
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
      if key not in hf:
        raise ValueError(f"config.json is missing required key {key!r}")
    num_heads = hf["num_attention_heads"]
    attention_bias = bool(hf.get("attention_bias", False))
    return cls(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=num_heads,
        num_kv_heads=hf.get("num_key_value_heads") or num_heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // num_heads,
        max_position_embeddings=hf.get("max_position_embeddings", 2048),
        rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
        rope=_rope_from_hf(hf),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        qkv_bias=True if model_type == "qwen2" else attention_bias,
        o_bias=attention_bias if model_type == "llama" else False,
        qk_norm=model_type == "qwen3",
        model_type=model_type,
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=hf.get("eos_token_id"),
        pad_token_id=hf.get("pad_token_id"),
        **overrides,
    )

  def to_hf(self) -> dict[str, Any]:
    """The `config.json` dict that `transformers.AutoConfig` reads back as this model."""
    arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[self.model_type]
    if self.model_type == "qwen2" and (not self.qkv_bias or self.o_bias):
      raise ValueError("qwen2 requires qkv_bias=True and o_bias=False")
    if self.model_type == "llama" and self.qkv_bias != self.o_bias:
      raise ValueError("llama's attention_bias sets q/k/v and o bias together")
    if self.qk_norm != (self.model_type == "qwen3"):
      raise ValueError(f"qk_norm={self.qk_norm} does not match model_type {self.model_type!r}")
    rope: dict[str, Any] = {"rope_type": self.rope.rope_type, "rope_theta": self.rope.theta}
    if self.rope.rope_type == "llama3":
      rope.update(factor=self.rope.factor, low_freq_factor=self.rope.low_freq_factor,
                  high_freq_factor=self.rope.high_freq_factor,
                  original_max_position_embeddings=self.rope.original_max_position_embeddings)
    hf = {
        "architectures": [arch],
        "model_type": self.model_type,
        "vocab_size": self.vocab_size,
        "hidden_size": self.hidden_size,
        "intermediate_size": self.intermediate_size,
        "num_hidden_layers": self.num_layers,
        "num_attention_heads": self.num_heads,
        "num_key_value_heads": self.num_kv_heads,
        "head_dim": self.head_dim,
        "max_position_embeddings": self.max_position_embeddings,
        "rms_norm_eps": self.rms_norm_eps,
        "hidden_act": "silu",
        "rope_theta": self.rope.theta,
        "rope_parameters": rope,
        "rope_scaling": rope if self.rope.rope_type != "default" else None,
        "tie_word_embeddings": self.tie_word_embeddings,
        "torch_dtype": jnp.dtype(self.param_dtype).name,
        "dtype": jnp.dtype(self.param_dtype).name,
        "bos_token_id": self.bos_token_id,
        "eos_token_id": list(self.eos_token_id) if isinstance(self.eos_token_id, tuple) else self.eos_token_id,
        "pad_token_id": self.pad_token_id,
    }
    if self.model_type == "llama":
      hf["attention_bias"] = self.qkv_bias
      hf["mlp_bias"] = False
    return hf


def _rope_from_hf(hf: dict[str, Any]) -> RopeConfig:
  """Reads transformers-5 `rope_parameters` or the older `rope_theta` + `rope_scaling`."""
  params = dict(hf.get("rope_parameters") or {})
  scaling = hf.get("rope_scaling") or {}
  for key, value in scaling.items():
    params.setdefault(key, value)
  theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
  rope_type = params.get("rope_type", params.get("type", "default"))
  if rope_type not in ("default", "llama3"):
    raise ValueError(f"config.json rope type {rope_type!r} is not supported; expected 'default' or 'llama3'")
  if rope_type == "default":
    return RopeConfig(theta=float(theta))
  missing = [k for k in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
             if k not in params]
  if missing:
    raise ValueError(f"config.json llama3 rope scaling is missing key(s) {missing}")
  return RopeConfig(theta=float(theta), rope_type="llama3", factor=float(params["factor"]),
                    low_freq_factor=float(params["low_freq_factor"]),
                    high_freq_factor=float(params["high_freq_factor"]),
                    original_max_position_embeddings=int(params["original_max_position_embeddings"]))
