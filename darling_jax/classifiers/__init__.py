"""Sequence classifiers (BERT, ModernBERT) in Flax NNX, loaded from HF directories.

Public API:
  load_classifier(path, *, dtype=jnp.float32, mesh=None) -> BertForSequenceClassification
                                                            | ModernBertForSequenceClassification
  model(input_ids [B, T], attention_mask [B, T], ...) -> float32 logits [B, num_labels]

Every parameter is read from the checkpoint's safetensors by the shared machinery of
`darling_jax.models.hf_checkpoint` (one HF-name rule, per-shard reads, placement on `mesh`); missing,
unexpected or mis-shaped tensors raise one ValueError naming them.
"""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from darling_jax.classifiers import bert, modernbert
from darling_jax.classifiers.bert import BertClassifierConfig, BertForSequenceClassification
from darling_jax.classifiers.modernbert import ModernBertClassifierConfig, ModernBertForSequenceClassification
from darling_jax.models.hf_checkpoint import fill_from_source, module_tensor_name
from darling_jax.models.tensor_sources import SafetensorsSource

__all__ = [
    "BertClassifierConfig", "BertForSequenceClassification", "ModernBertClassifierConfig",
    "ModernBertForSequenceClassification", "SUPPORTED_MODEL_TYPES", "load_classifier",
]

# model_type -> (config class, model class, checkpoint tensors we derive instead of reading)
_ARCHITECTURES = {
    "bert": (BertClassifierConfig, BertForSequenceClassification, bert.IGNORED_SUFFIXES),
    "modernbert": (ModernBertClassifierConfig, ModernBertForSequenceClassification, modernbert.IGNORED_SUFFIXES),
}
SUPPORTED_MODEL_TYPES = tuple(_ARCHITECTURES)


def load_classifier(path: str | os.PathLike, *, dtype=jnp.float32, param_dtype=None, mesh: Mesh | None = None):
  """Loads a sequence classifier from an HF directory (config.json + safetensors).

  Args:
    path: directory written by transformers' `save_pretrained` of a `*ForSequenceClassification` model.
    dtype: compute dtype. param_dtype: storage dtype (default: `dtype`).
    mesh: place every parameter directly into its sharding on this mesh (default: the first device).

  Returns:
    A `BertForSequenceClassification` or `ModernBertForSequenceClassification`, by config.json `model_type`.
  """
  path = os.fspath(path)
  config_path = os.path.join(path, "config.json")
  if not os.path.isdir(path):
    raise FileNotFoundError(f"classifier directory {path!r} does not exist")
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"{path!r} has no config.json")
  with open(config_path) as f:
    hf_config = json.load(f)
  model_type = hf_config.get("model_type")
  if model_type not in _ARCHITECTURES:
    raise ValueError(f"{config_path}: model_type {model_type!r} is not supported for classifiers; expected one "
                     f"of {SUPPORTED_MODEL_TYPES}")
  config_cls, model_cls, ignored_suffixes = _ARCHITECTURES[model_type]
  config = config_cls.from_hf(hf_config, dtype=dtype, param_dtype=param_dtype or dtype)
  abstract = nnx.eval_shape(lambda: model_cls(config, rngs=nnx.Rngs(0)))
  return fill_from_source(abstract, SafetensorsSource(path), module_tensor_name, mesh=mesh, origin=path,
                          ignored=lambda name: name.endswith(ignored_suffixes), describe=config.describe())
