"""BERT sequence classifier (transformers' `BertForSequenceClassification`) in Flax NNX, plus the encoder pieces
that ModernBERT shares (LayerNorm, embedding table, bidirectional attention, activations).

Parameter paths mirror transformers' module names (`bert.encoder.layer.0.attention.self.query.kernel` is
`bert.encoder.layer.0.attention.self.query.weight`, transposed), so checkpoints map by the one rule of
`darling_jax.models.hf_checkpoint.module_tensor_name`. Dropout is not implemented: the forward is the
inference (`model.eval()`) forward, which is also what a frozen reward classifier needs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from darling_jax.models.config import dtype_from_name
from darling_jax.models.layers import _MASK_VALUE, Linear, ones_init, param, zeros_init

# transformers' ACT2FN names we support -> JAX functions ("gelu" is the exact erf GELU).
ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}

# Non-persistent buffers that older transformers versions wrote into checkpoints; we derive them.
IGNORED_SUFFIXES = ("embeddings.position_ids", "embeddings.token_type_ids")


def check_activation(key: str, name: Any) -> str:
  """Returns `name` if it is a supported activation, else raises naming the config key."""
  if name not in ACTIVATIONS:
    raise ValueError(f"config.json key {key!r}={name!r} is not supported; expected one of {sorted(ACTIVATIONS)}")
  return name


def num_labels_from_hf(hf: dict[str, Any]) -> tuple[int, tuple[str, ...] | None]:
  """`(num_labels, label names by id)` from `id2label` (what transformers saves) or `num_labels`."""
  id2label = hf.get("id2label")
  if id2label:
    labels = tuple(str(id2label[k]) for k in sorted(id2label, key=int))
    return len(labels), labels
  return int(hf.get("num_labels", 2)), None


def labels_to_hf(num_labels: int, id2label: tuple[str, ...] | None) -> dict[str, Any]:
  """config.json label keys, the inverse of `num_labels_from_hf`: `id2label` + `label2id` when names are known,
  else `num_labels` (which transformers expands to `LABEL_i`)."""
  if id2label is None:
    return {"num_labels": num_labels}
  return {"id2label": {str(i): name for i, name in enumerate(id2label)},
          "label2id": {name: i for i, name in enumerate(id2label)}}


def check_labels(num_labels: int, id2label: tuple[str, ...] | None) -> tuple[str, ...] | None:
  """Validates the label count against the names; returns the names as a tuple (or None)."""
  if num_labels <= 0:
    raise ValueError(f"num_labels must be positive, got {num_labels}")
  if id2label is None:
    return None
  id2label = tuple(id2label)
  if len(id2label) != num_labels:
    raise ValueError(f"id2label has {len(id2label)} names for num_labels={num_labels}")
  return id2label


def require_keys(hf: dict[str, Any], keys: tuple[str, ...]) -> None:
  for key in keys:
    if key not in hf:
      raise ValueError(f"config.json is missing required key {key!r}")


@dataclasses.dataclass(frozen=True)
class BertClassifierConfig:
  """Shape and numerics of a BERT classifier. `dtype` is the compute dtype, `param_dtype` the storage dtype;
  LayerNorm statistics, attention softmax and the logits are float32. `pad_token_id` is not used by the forward
  (the attention mask is); it is carried so that an export keeps it."""

  vocab_size: int
  hidden_size: int
  num_layers: int
  num_heads: int
  intermediate_size: int
  num_labels: int = 2
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_act: str = "gelu"
  id2label: tuple[str, ...] | None = None
  pad_token_id: int | None = 0
  param_dtype: Any = jnp.float32
  dtype: Any = jnp.float32
  model_type: str = "bert"

  def __post_init__(self):
    check_activation("hidden_act", self.hidden_act)
    object.__setattr__(self, "id2label", check_labels(self.num_labels, self.id2label))
    if self.hidden_size % self.num_heads:
      raise ValueError(f"hidden_size={self.hidden_size} is not a multiple of num_attention_heads={self.num_heads}")
    object.__setattr__(self, "param_dtype", dtype_from_name(self.param_dtype))
    object.__setattr__(self, "dtype", dtype_from_name(self.dtype))

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  def describe(self) -> str:
    return f"{self.model_type}, {self.num_layers} layers, {self.num_labels} labels"

  @classmethod
  def from_hf(cls, hf: dict[str, Any], **overrides) -> BertClassifierConfig:
    """From a HF `config.json` dict (`model_type == "bert"`); unsupported features raise naming the key."""
    if hf.get("model_type") != "bert":
      raise ValueError(f"config.json model_type {hf.get('model_type')!r} is not 'bert'")
    if hf.get("position_embedding_type", "absolute") != "absolute":
      raise ValueError(f"config.json key 'position_embedding_type'={hf['position_embedding_type']!r} is not "
                       "supported (only 'absolute')")
    for key in ("is_decoder", "add_cross_attention"):
      if hf.get(key):
        raise ValueError(f"config.json key {key!r}={hf[key]!r} is not supported (encoder-only classifier)")
    require_keys(hf, ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"))
    num_labels, id2label = num_labels_from_hf(hf)
    return cls(vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
               num_heads=hf["num_attention_heads"], intermediate_size=hf["intermediate_size"],
               num_labels=num_labels, max_position_embeddings=hf.get("max_position_embeddings", 512),
               type_vocab_size=hf.get("type_vocab_size", 2), layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
               hidden_act=hf.get("hidden_act", "gelu"), id2label=id2label,
               pad_token_id=hf.get("pad_token_id", 0), **overrides)

  def to_hf(self) -> dict[str, Any]:
    """The `config.json` dict that transformers' `AutoModelForSequenceClassification` reads as this model (the
    inverse of `from_hf`)."""
    dtype = jnp.dtype(self.param_dtype).name
    return {
        "architectures": ["BertForSequenceClassification"], "model_type": "bert", "vocab_size": self.vocab_size,
        "hidden_size": self.hidden_size, "num_hidden_layers": self.num_layers,
        "num_attention_heads": self.num_heads, "intermediate_size": self.intermediate_size,
        "max_position_embeddings": self.max_position_embeddings, "type_vocab_size": self.type_vocab_size,
        "layer_norm_eps": self.layer_norm_eps, "hidden_act": self.hidden_act,
        "position_embedding_type": "absolute", "is_decoder": False, "add_cross_attention": False,
        "pad_token_id": self.pad_token_id, "dtype": dtype, "torch_dtype": dtype,
        **labels_to_hf(self.num_labels, self.id2label),
    }


# ---------------------------------------------------------------- shared encoder pieces
class LayerNorm(nnx.Module):
  """`(x - mean) / sqrt(var + eps) * weight (+ bias)` over the last axis, in float32. x: `[..., dim]`."""

  def __init__(self, dim: int, eps: float, *, use_bias: bool = True, param_dtype, rngs: nnx.Rngs | None = None):
    self.eps = eps
    self.weight = param(rngs, ones_init, (dim,), ("norm",), param_dtype)
    self.bias = param(rngs, zeros_init, (dim,), ("norm",), param_dtype) if use_bias else None

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.eps) * self.weight[...].astype(jnp.float32)
    if self.bias is not None:
      y = y + self.bias[...].astype(jnp.float32)
    return y.astype(x.dtype)


class Embedding(nnx.Module):
  """Lookup table `weight [num, dim]` (HF `nn.Embedding` layout). ids `[B, T]` -> `[B, T, dim]` in `dtype`."""

  def __init__(self, num: int, dim: int, axes: tuple[str | None, str], *, param_dtype, dtype,
               rngs: nnx.Rngs | None = None):
    self.dtype = dtype
    self.weight = param(rngs, lambda k, s, d: jax.random.normal(k, s, d) * 0.02, (num, dim), axes, param_dtype)

  def __call__(self, ids: jax.Array) -> jax.Array:
    return jnp.take(self.weight[...], ids, axis=0).astype(self.dtype)


def bidirectional_attention(q: jax.Array, k: jax.Array, v: jax.Array, allowed: jax.Array) -> jax.Array:
  """Softmax attention, scores scaled by `head_dim ** -0.5` and softmaxed in float32.

  Args:
    q, k, v: `[B, T, H, D]`.
    allowed: bool, broadcastable to `[B, T, S]`: whether query t may attend to key s (padding keys are False).

  Returns:
    `[B, T, H * D]` in q's dtype.
  """
  b, t, h, d = q.shape
  q, k, v = q.transpose(0, 2, 1, 3), k.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3)  # q, v [B,H,T,D]; k [B,H,D,S]
  scores = jnp.einsum("bhtd,bhds->bhts", q, k, preferred_element_type=jnp.float32) * (d ** -0.5)
  scores = jnp.where(allowed[:, None], scores, _MASK_VALUE)
  probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
  return jnp.einsum("bhts,bhsd->bhtd", probs, v).transpose(0, 2, 1, 3).reshape(b, t, h * d)


def check_input(input_ids: jax.Array, attention_mask: jax.Array | None, max_positions: int) -> jax.Array:
  """Validates `[B, T]` ids against the position table; returns the int32 mask (default: all ones)."""
  if input_ids.ndim != 2:
    raise ValueError(f"input_ids must be [B, T], got shape {input_ids.shape}")
  if input_ids.shape[1] > max_positions:
    raise ValueError(f"sequence length {input_ids.shape[1]} exceeds max_position_embeddings={max_positions}")
  if attention_mask is None:
    return jnp.ones(input_ids.shape, jnp.int32)
  if attention_mask.shape != input_ids.shape:
    raise ValueError(f"attention_mask shape {attention_mask.shape} != input_ids shape {input_ids.shape}")
  return attention_mask.astype(jnp.int32)


# ---------------------------------------------------------------- BERT modules (transformers' names)
def _kw(c: BertClassifierConfig, rngs) -> dict:
  return dict(param_dtype=c.param_dtype, dtype=c.dtype, rngs=rngs)


class BertEmbeddings(nnx.Module):

  def __init__(self, c: BertClassifierConfig, *, rngs: nnx.Rngs | None = None):
    self.word_embeddings = Embedding(c.vocab_size, c.hidden_size, ("vocab", "embed"), **_kw(c, rngs))
    self.position_embeddings = Embedding(c.max_position_embeddings, c.hidden_size, (None, "embed"), **_kw(c, rngs))
    self.token_type_embeddings = Embedding(c.type_vocab_size, c.hidden_size, (None, "embed"), **_kw(c, rngs))
    self.LayerNorm = LayerNorm(c.hidden_size, c.layer_norm_eps, param_dtype=c.param_dtype, rngs=rngs)

  def __call__(self, input_ids: jax.Array, token_type_ids: jax.Array) -> jax.Array:
    positions = jnp.arange(input_ids.shape[1])[None, :]
    x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
    return self.LayerNorm(x + self.position_embeddings(positions))


class BertSelfAttention(nnx.Module):

  def __init__(self, c: BertClassifierConfig, *, rngs: nnx.Rngs | None = None):
    self.num_heads, self.head_dim = c.num_heads, c.head_dim
    proj = lambda: Linear(c.hidden_size, c.hidden_size, ("embed", "q_heads"), use_bias=True, **_kw(c, rngs))
    self.query, self.key, self.value = proj(), proj(), proj()

  def __call__(self, x: jax.Array, allowed: jax.Array) -> jax.Array:
    split = lambda y: y.reshape(*x.shape[:2], self.num_heads, self.head_dim)
    return bidirectional_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)), allowed)


class BertOutput(nnx.Module):
  """`LayerNorm(dense(h) + residual)` (HF's `BertSelfOutput` and `BertOutput`)."""

  def __init__(self, c: BertClassifierConfig, in_dim: int, axes: tuple[str, str], *, rngs: nnx.Rngs | None = None):
    self.dense = Linear(in_dim, c.hidden_size, axes, use_bias=True, **_kw(c, rngs))
    self.LayerNorm = LayerNorm(c.hidden_size, c.layer_norm_eps, param_dtype=c.param_dtype, rngs=rngs)

  def __call__(self, h: jax.Array, residual: jax.Array) -> jax.Array:
    return self.LayerNorm(self.dense(h) + residual)


class BertAttention(nnx.Module):

  def __init__(self, c: BertClassifierConfig, *, rngs: nnx.Rngs | None = None):
    self.self = BertSelfAttention(c, rngs=rngs)
    self.output = BertOutput(c, c.hidden_size, ("q_heads", "embed"), rngs=rngs)

  def __call__(self, x: jax.Array, allowed: jax.Array) -> jax.Array:
    return self.output(self.self(x, allowed), x)


class BertIntermediate(nnx.Module):

  def __init__(self, c: BertClassifierConfig, *, rngs: nnx.Rngs | None = None):
    self.act = c.hidden_act
    self.dense = Linear(c.hidden_size, c.intermediate_size, ("embed", "mlp"), use_bias=True, **_kw(c, rngs))

  def __call__(self, x: jax.Array) -> jax.Array:
    return ACTIVATIONS[self.act](self.dense(x))


class BertLayer(nnx.Module):
  """Post-LN block: `x = LN(x + attn(x))`, then `x = LN(x + W2 act(W1 x))`."""

  def __init__(self, c: BertClassifierConfig, *, rngs: nnx.Rngs | None = None):
    self.attention = BertAttention(c, rngs=rngs)
    self.intermediate = BertIntermediate(c, rngs=rngs)
    self.output = BertOutput(c, c.intermediate_size, ("mlp", "embed"), rngs=rngs)

  def __call__(self, x: jax.Array, allowed: jax.Array) -> jax.Array:
    x = self.attention(x, allowed)
    return self.output(self.intermediate(x), x)


class BertEncoder(nnx.Module):

  def __init__(self, c: BertClassifierConfig, *, rngs: nnx.Rngs | None = None):
    self.layer = nnx.List([BertLayer(c, rngs=rngs) for _ in range(c.num_layers)])


class BertPooler(nnx.Module):
  """`tanh(dense(h[:, 0]))`: the first ([CLS]) token of `[B, T, E]` -> `[B, E]`."""

  def __init__(self, c: BertClassifierConfig, *, rngs: nnx.Rngs | None = None):
    self.dense = Linear(c.hidden_size, c.hidden_size, ("embed", "embed"), use_bias=True, **_kw(c, rngs))

  def __call__(self, hidden: jax.Array) -> jax.Array:
    return jnp.tanh(self.dense(hidden[:, 0]))


class BertModel(nnx.Module):

  def __init__(self, c: BertClassifierConfig, *, rngs: nnx.Rngs | None = None):
    self.config = c
    self.embeddings = BertEmbeddings(c, rngs=rngs)
    self.encoder = BertEncoder(c, rngs=rngs)
    self.pooler = BertPooler(c, rngs=rngs)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array, token_type_ids: jax.Array) -> jax.Array:
    """The last layer's hidden states `[B, T, E]` (transformers' `last_hidden_state`) of int `[B, T]` inputs;
    padding keys (mask 0) are masked. The pooler is not applied."""
    allowed = (attention_mask > 0)[:, None, :]  # [B, 1, S]: every query sees every real token
    x = self.embeddings(input_ids, token_type_ids)
    for layer in self.encoder.layer:
      x = layer(x, allowed)
    return x


class BertForSequenceClassification(nnx.Module):
  """`model(input_ids, attention_mask, token_type_ids) -> float32 logits [B, num_labels]`.

  Positions are slot indices `0..T-1` (as in transformers), so pad on the right; padding keys are masked.
  A fresh `BertForSequenceClassification(config, rngs=nnx.Rngs(seed))` is randomly initialised: embeddings
  `N(0, 0.02)`, dense kernels `N(0, 1/fan_in)`, biases zeros, LayerNorm weight ones / bias zeros.
  """

  uses_token_type_ids: bool = True

  def __init__(self, config: BertClassifierConfig, *, rngs: nnx.Rngs | None = None):
    c = config
    self.config = c
    self.bert = BertModel(c, rngs=rngs)
    self.classifier = Linear(c.hidden_size, c.num_labels, ("embed", None), use_bias=True, **_kw(c, rngs))

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None,
               token_type_ids: jax.Array | None = None) -> jax.Array:
    """input_ids, attention_mask, token_type_ids (default zeros): int `[B, T]` -> float32 `[B, num_labels]`."""
    mask = check_input(input_ids, attention_mask, self.config.max_position_embeddings)
    if token_type_ids is None:
      token_type_ids = jnp.zeros(input_ids.shape, jnp.int32)
    elif token_type_ids.shape != input_ids.shape:
      raise ValueError(f"token_type_ids shape {token_type_ids.shape} != input_ids shape {input_ids.shape}")
    x = self.bert(input_ids, mask, token_type_ids)
    return self.classifier(self.bert.pooler(x)).astype(jnp.float32)
