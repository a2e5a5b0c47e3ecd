"""A siamese BERT pair classifier: each response encoded once, a small head on the two embeddings.

    model = SiameseBertClassifier(config, rngs=nnx.Rngs(0))          # config: a BertClassifierConfig
    u, v = model.embed(ids_a, mask_a), model.embed(ids_b, mask_b)   # float32 [N, E]: mean-pooled last layer
    logits = model.pair_logits(u, v)                                 # float32 [P]: logit of P(similar)

The head sees only `(|u − v|, u ⊙ v)` (sentence-BERT's symmetric pair features), so the score of (a, b) equals
that of (b, a) and one order suffices. Unlike a cross-encoder, which needs G(G−1)/2 passes over concatenated
pairs per group of G, a group costs G encoder passes plus a `[P, 2E]` MLP. Written and read back as a
directory (`save_siamese` / `load_siamese`: `config.json` with the encoder's BERT config, `architectures`
`["SiameseBertClassifier"]` and the head's width, `model.safetensors`, the tokenizer); it is not a transformers
architecture.
"""

from __future__ import annotations

import json
import os
import pathlib

import jax
import jax.numpy as jnp
from flax import nnx

from darling_jax.classifiers.bert import BertClassifierConfig, BertModel
from darling_jax.models.hf_checkpoint import fill_from_source, module_tensor_name, write_hf_directory
from darling_jax.models.layers import Linear
from darling_jax.models.tensor_sources import SafetensorsSource

ARCHITECTURE = "SiameseBertClassifier"  # config.json: model_type "bert" (the encoder), this architecture


class SiameseBertClassifier(nnx.Module):
  """A `BertModel` encoder (mean-pooled) and a 2-layer GELU MLP on `(|u − v|, u ⊙ v)` -> one logit."""

  def __init__(self, config: BertClassifierConfig, *, head_width: int | None = None, rngs: nnx.Rngs | None = None):
    self.config = config
    self.head_width = head_width or 2 * config.hidden_size
    kw = dict(param_dtype=config.param_dtype, dtype=config.dtype, rngs=rngs)
    self.encoder = BertModel(config, rngs=rngs)
    self.hidden = Linear(2 * config.hidden_size, self.head_width, (None, None), use_bias=True, **kw)
    self.out = Linear(self.head_width, 1, (None, None), use_bias=True, **kw)

  def embed(self, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """int `[N, W]` `[CLS] text [SEP]` rows (right-padded) -> float32 `[N, E]` mean of the real positions."""
    hidden = self.encoder(input_ids, attention_mask, jnp.zeros_like(input_ids)).astype(jnp.float32)
    weights = (attention_mask > 0).astype(jnp.float32)[..., None]
    return (hidden * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)

  def pair_logits(self, u: jax.Array, v: jax.Array) -> jax.Array:
    """float32 `[P, E]` × 2 -> float32 `[P]`, symmetric in (u, v)."""
    features = jnp.concatenate([jnp.abs(u - v), u * v], axis=-1)
    return self.out(jax.nn.gelu(self.hidden(features)))[:, 0].astype(jnp.float32)

  def __call__(self, ids_a, mask_a, ids_b, mask_b) -> jax.Array:
    """Logits `[P]` of P(similar) for P pairs given as two `[P, W]` token batches."""
    return self.pair_logits(self.embed(ids_a, mask_a), self.embed(ids_b, mask_b))


def save_siamese(model: SiameseBertClassifier, path: str | os.PathLike, *, tokenizer=None) -> None:
  """`config.json` (model_type `darling_siamese_bert`, the encoder's BERT config, `head_width`),
  `model.safetensors` and the tokenizer's files, written atomically."""
  hf = {**model.config.to_hf(), "architectures": [ARCHITECTURE], "head_width": model.head_width}
  write_hf_directory(model, path, hf, module_tensor_name, tokenizer=tokenizer)


def is_siamese(path: str | os.PathLike) -> bool:
  config = pathlib.Path(path) / "config.json"
  return config.exists() and json.loads(config.read_text()).get("architectures") == [ARCHITECTURE]


def load_siamese(path: str | os.PathLike) -> SiameseBertClassifier:
  """The model `save_siamese` wrote at `path`; a missing or mis-shaped tensor is one error naming it."""
  path = os.fspath(path)
  if not is_siamese(path):
    raise ValueError(f"{path}/config.json: architectures is not [{ARCHITECTURE!r}]: not a siamese classifier")
  hf = json.loads((pathlib.Path(path) / "config.json").read_text())
  config = BertClassifierConfig.from_hf(hf)
  abstract = nnx.eval_shape(lambda: SiameseBertClassifier(config, head_width=hf["head_width"], rngs=nnx.Rngs(0)))
  return fill_from_source(abstract, SafetensorsSource(path), module_tensor_name, origin=path,
                          describe=f"siamese BERT, {config.num_layers} layers")
