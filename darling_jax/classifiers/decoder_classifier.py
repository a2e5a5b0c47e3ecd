"""Decoder sequence classifier (transformers' `LlamaForSequenceClassification`, `Qwen2ForSequenceClassification`,
`Qwen3ForSequenceClassification`) in Flax NNX: our `DecoderLM` trunk plus a bias-free `score` head that reads
the hidden state of each row's last non-pad token.

The trunk is a `darling_jax.models.decoder.DecoderLM` (embeddings, layers, final norm; built without an
`lm_head`), so parameter paths are `model.<DecoderLM path>` and `score.kernel`, and HF names are
`model.layers.0.…`, `model.embed_tokens.weight`, `model.norm.weight`, `score.weight` (`tensor_name`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from darling_jax.classifiers.bert import check_labels, labels_to_hf, num_labels_from_hf
from darling_jax.models.config import DecoderConfig
from darling_jax.models.decoder import DecoderLM
from darling_jax.models.hf_checkpoint import hf_tensor_name, module_tensor_name
from darling_jax.models.layers import Linear

ARCHITECTURES = {"llama": "LlamaForSequenceClassification", "qwen2": "Qwen2ForSequenceClassification",
                 "qwen3": "Qwen3ForSequenceClassification"}
# Derived RoPE buffers, and a causal-LM head that some classifier checkpoints carry but never use.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq", "lm_head.weight")


@dataclasses.dataclass(frozen=True)
class DecoderClassifierConfig:
  """A decoder (`DecoderConfig`: shapes, numerics, `pad_token_id`) with a `num_labels`-way score head.

  `pad_token_id` (of the decoder config) decides which token is pooled, as in transformers: see
  `DecoderForSequenceClassification`. `decoder.tie_word_embeddings` is carried for export only (there is no
  LM head).
  """

  decoder: DecoderConfig
  num_labels: int = 2
  id2label: tuple[str, ...] | None = None

  def __post_init__(self):
    object.__setattr__(self, "id2label", check_labels(self.num_labels, self.id2label))

  @property
  def model_type(self) -> str:
    return self.decoder.model_type

  @property
  def pad_token_id(self) -> int | None:
    return self.decoder.pad_token_id

  @property
  def hidden_size(self) -> int:
    return self.decoder.hidden_size

  @property
  def dtype(self):
    return self.decoder.dtype

  @property
  def param_dtype(self):
    return self.decoder.param_dtype

  def replace(self, **changes) -> DecoderClassifierConfig:
    return dataclasses.replace(self, **changes)

  def describe(self) -> str:
    return (f"{self.model_type} classifier, {self.decoder.num_layers} layers, {self.num_labels} labels, "
            f"pad_token_id={self.pad_token_id}")

  @classmethod
  def from_hf(cls, hf: dict[str, Any], **overrides) -> DecoderClassifierConfig:
    """From a HF `config.json` dict of a `*ForSequenceClassification` Llama / Qwen2 / Qwen3; `overrides` (dtype,
    param_dtype, remat, …) go to `DecoderConfig.from_hf`. Unsupported features raise naming the key."""
    architectures = hf.get("architectures") or []
    if architectures and not any(str(a).endswith("ForSequenceClassification") for a in architectures):
      raise ValueError(f"config.json 'architectures'={architectures} has no '*ForSequenceClassification' entry: "
                       "not a sequence classifier (load a causal LM with darling_jax.models.load_pretrained)")
    num_labels, id2label = num_labels_from_hf(hf)
    return cls(decoder=DecoderConfig.from_hf(hf, **overrides), num_labels=num_labels, id2label=id2label)

  def to_hf(self) -> dict[str, Any]:
    """The `config.json` dict that transformers' `AutoModelForSequenceClassification` reads as this model."""
    hf = self.decoder.to_hf()
    hf["architectures"] = [ARCHITECTURES[self.model_type]]
    hf.update(labels_to_hf(self.num_labels, self.id2label))
    return hf


def tensor_name(path: tuple) -> tuple[str, bool]:
  """NNX state path -> (HF tensor name, whether HF stores it transposed): `model.…` by the decoder's rule,
  `score.kernel` -> `score.weight` (transposed)."""
  parts = tuple(str(p) for p in path)
  if parts[0] == "model":
    return hf_tensor_name(path[1:])
  return module_tensor_name(path)


class DecoderForSequenceClassification(nnx.Module):
  """`model(input_ids, attention_mask) -> float32 logits [B, num_labels]`.

  Pooling follows transformers 5's `GenericForSequenceClassification` exactly: the pooled token of a row is the
  rightmost token whose id is not `pad_token_id` (`argmax(arange(T) * (input_ids != pad_token_id))`; 0 for an
  all-pad row). It depends on `pad_token_id`, not on `attention_mask`: a real trailing token equal to the pad id
  (e.g. pad == eos) is skipped, as in transformers. Works for right and left padding. Without a
  `pad_token_id` only batches of one row are accepted (the last slot is pooled), as in transformers.

  RoPE positions are slot indices `0..T-1` (transformers' default when no `position_ids` are passed); with
  left padding this shifts every real token of a row by the same amount, which RoPE attention is invariant to.
  """

  uses_token_type_ids: bool = False

  def __init__(self, config: DecoderClassifierConfig, *, rngs: nnx.Rngs | None = None):
    c = config
    self.config = c
    # The DecoderLM trunk, built tied so it owns no lm_head (its `logits` is never used).
    self.model = DecoderLM(c.decoder.replace(tie_word_embeddings=True), rngs=rngs)
    self.score = Linear(c.hidden_size, c.num_labels, ("embed", None), use_bias=False,
                        param_dtype=c.param_dtype, dtype=c.dtype, rngs=rngs)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
    """input_ids, attention_mask (default ones): int `[B, T]`, right- or left-padded -> float32
    `[B, num_labels]`."""
    if input_ids.ndim != 2:
      raise ValueError(f"input_ids must be [B, T], got shape {input_ids.shape}")
    if attention_mask is None:
      attention_mask = jnp.ones(input_ids.shape, jnp.int32)
    elif attention_mask.shape != input_ids.shape:
      raise ValueError(f"attention_mask shape {attention_mask.shape} != input_ids shape {input_ids.shape}")
    b, t = input_ids.shape
    positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32)[None], (b, t))
    hidden = self.model.hidden_states(input_ids, attention_mask.astype(jnp.int32), positions)
    pooled = hidden[jnp.arange(b), self.pooled_index(input_ids)]  # [B, E]
    return self.score(pooled).astype(jnp.float32)

  def pooled_index(self, input_ids: jax.Array) -> jax.Array:
    """int32 `[B]`: the slot each row is classified from (its rightmost non-pad token; see the class doc)."""
    b, t = input_ids.shape
    pad = self.config.pad_token_id
    if pad is None:
      if b != 1:
        raise ValueError(f"config has no pad_token_id, so the last token of each row of a batch of {b} cannot be "
                         "found (transformers refuses too): set pad_token_id in config.json or pass one row")
      return jnp.full((b,), t - 1, jnp.int32)
    non_pad = (input_ids != pad).astype(jnp.int32)
    return jnp.argmax(jnp.arange(t, dtype=jnp.int32) * non_pad, axis=-1).astype(jnp.int32)
