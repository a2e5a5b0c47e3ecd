"""Sequence classifiers (BERT, ModernBERT, Llama / Qwen2 / Qwen3 decoders) in Flax NNX: HF import and export.

Public API:
  load_classifier(path, *, dtype=jnp.float32, mesh=None) -> BertForSequenceClassification
                                                            | ModernBertForSequenceClassification
                                                            | DecoderForSequenceClassification
  save_classifier(model, path, *, tokenizer=None)   # directory transformers' AutoModelForSequenceClassification
                                                    # and our load_classifier / models.load_pretrained read back
  init_classifier(config, seed=0)                   # randomly initialised model for a config
  model(input_ids [B, T], attention_mask [B, T], ...) -> float32 logits [B, num_labels]
  type(model).uses_token_type_ids                   # whether the forward takes token_type_ids (BERT only)

Every parameter is read from the checkpoint's safetensors by the shared machinery of
`darling_jax.models.hf_checkpoint` (one HF-name rule per architecture, per-shard reads, placement on `mesh`);
missing, unexpected or mis-shaped tensors raise one ValueError naming them. `darling_jax.models.load_pretrained`
delegates here for any config.json whose `architectures` has a `*ForSequenceClassification` entry.
"""

from __future__ import annotations

import os

import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from darling_jax.classifiers import bert, decoder_classifier, modernbert
from darling_jax.classifiers.bert import BertClassifierConfig, BertForSequenceClassification
from darling_jax.classifiers.decoder_classifier import DecoderClassifierConfig, DecoderForSequenceClassification
from darling_jax.classifiers.modernbert import ModernBertClassifierConfig, ModernBertForSequenceClassification
from darling_jax.models.hf_checkpoint import fill_from_source, module_tensor_name, read_hf_config, write_hf_directory
from darling_jax.models.tensor_sources import SafetensorsSource

__all__ = [
    "BertClassifierConfig", "BertForSequenceClassification", "DecoderClassifierConfig",
    "DecoderForSequenceClassification", "ModernBertClassifierConfig", "ModernBertForSequenceClassification",
    "SUPPORTED_MODEL_TYPES", "init_classifier", "load_classifier", "save_classifier",
]

# model_type -> (config class, model class, NNX path -> (HF name, transposed), checkpoint tensor-name suffixes
# that we derive or do not use instead of reading)
_DECODER = (DecoderClassifierConfig, DecoderForSequenceClassification, decoder_classifier.tensor_name,
            decoder_classifier.IGNORED_SUFFIXES)
_ARCHITECTURES = {
    "bert": (BertClassifierConfig, BertForSequenceClassification, module_tensor_name, bert.IGNORED_SUFFIXES),
    "modernbert": (ModernBertClassifierConfig, ModernBertForSequenceClassification, module_tensor_name,
                   modernbert.IGNORED_SUFFIXES),
    "llama": _DECODER,
    "qwen2": _DECODER,
    "qwen3": _DECODER,
}
SUPPORTED_MODEL_TYPES = tuple(_ARCHITECTURES)


def load_classifier(path: str | os.PathLike, *, dtype=jnp.float32, param_dtype=None, mesh: Mesh | None = None):
  """Loads a sequence classifier from an HF directory (config.json + safetensors).

  Args:
    path: directory written by transformers' `save_pretrained` of a `*ForSequenceClassification` model (or by
      `save_classifier`).
    dtype: compute dtype. param_dtype: storage dtype (default: `dtype`).
    mesh: place every parameter directly into its sharding on this mesh (default: the first device).

  Returns:
    A `BertForSequenceClassification`, `ModernBertForSequenceClassification` or
    `DecoderForSequenceClassification` (llama / qwen2 / qwen3), by config.json `model_type`.
  """
  path = os.fspath(path)
  config_path = os.path.join(path, "config.json")
  hf_config = read_hf_config(path, "classifier")
  model_type = hf_config.get("model_type")
  if model_type not in _ARCHITECTURES:
    raise ValueError(f"{config_path}: model_type {model_type!r} is not supported for classifiers; expected one "
                     f"of {SUPPORTED_MODEL_TYPES}")
  config_cls, model_cls, tensor_name, ignored_suffixes = _ARCHITECTURES[model_type]
  config = config_cls.from_hf(hf_config, dtype=dtype, param_dtype=param_dtype or dtype)
  abstract = nnx.eval_shape(lambda: model_cls(config, rngs=nnx.Rngs(0)))
  return fill_from_source(abstract, SafetensorsSource(path), tensor_name, mesh=mesh, origin=path,
                          ignored=lambda name: name.endswith(ignored_suffixes), describe=config.describe())


def init_classifier(config, seed: int = 0):
  """A randomly initialised classifier for `config` (a `BertClassifierConfig`, `ModernBertClassifierConfig` or
  `DecoderClassifierConfig`), e.g. to train from scratch and export with `save_classifier`."""
  for config_cls, model_cls, _, _ in _ARCHITECTURES.values():
    if type(config) is config_cls:
      return model_cls(config, rngs=nnx.Rngs(params=seed))
  raise TypeError(f"no classifier for a config of type {type(config).__name__}")


def save_classifier(model, path: str | os.PathLike, *, tokenizer=None) -> None:
  """Writes `config.json` + `model.safetensors` (+ `tokenizer.save_pretrained` files) that transformers'
  `AutoModelForSequenceClassification.from_pretrained` loads as the same model, and `load_classifier` /
  `darling_jax.models.load_pretrained` load back.

  Atomic (staging directory renamed into place, replacing `path`); sharded parameters are gathered per tensor
  (see `darling_jax.models.hf_checkpoint.write_hf_directory`).
  """
  entry = _ARCHITECTURES.get(getattr(getattr(model, "config", None), "model_type", None))
  if entry is None or not isinstance(model, entry[1]):
    raise TypeError(f"save_classifier expects one of {sorted({e[1].__name__ for e in _ARCHITECTURES.values()})}, "
                    f"got {type(model).__name__}")
  write_hf_directory(model, path, model.config.to_hf(), entry[2], tokenizer=tokenizer)
