"""Policy models: the Llama / Qwen2 / Qwen3 decoder, checkpoint import (HF, GGUF) and export.

Public API:
  load_pretrained(path, *, dtype=jnp.float32, mesh=None) -> DecoderLM   # HF directory or .gguf file
                                                         | classifier  # `*ForSequenceClassification` directory
  save_pretrained(model, path, *, tokenizer=None)                       # transformers-loadable directory
  load_tokenizer(path)                                                  # HF directory or .gguf file

`load_pretrained` is the one load entry point: an HF directory whose config.json `architectures` names a
`*ForSequenceClassification` model (BERT, ModernBERT, Llama / Qwen2 / Qwen3) is loaded by
`darling_jax.classifiers.load_classifier`; classifiers are exported by `darling_jax.classifiers.save_classifier`.
"""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
from jax.sharding import Mesh

from darling_jax.models.config import DecoderConfig, RopeConfig
from darling_jax.models.decoder import DecoderLM, init_model
from darling_jax.models.gguf_checkpoint import read_gguf
from darling_jax.models.hf_checkpoint import model_from_source, save_pretrained
from darling_jax.models.kv_cache import KVCache
from darling_jax.models.tensor_sources import SafetensorsSource
from darling_jax.models.tokenizer import load_tokenizer

__all__ = [
    "DecoderConfig", "DecoderLM", "KVCache", "RopeConfig", "init_model", "load_pretrained", "load_tokenizer",
    "save_pretrained",
]


def load_pretrained(path: str | os.PathLike, *, dtype=jnp.float32, param_dtype=None, mesh: Mesh | None = None,
                    remat: bool = False):
  """Loads a causal LM or a sequence classifier from an HF directory (config.json + safetensors), or a causal LM
  from a llama.cpp `.gguf` file.

  Args:
    path: HF directory, or a `.gguf` file (Llama architecture; quantized tensors are dequantized).
    dtype: compute dtype. param_dtype: storage dtype (default: `dtype`).
    mesh: place every parameter directly into its sharding on this mesh (default: the first device).
    remat: rematerialise each layer in the backward pass (causal LMs only; classifiers ignore it).

  Returns:
    A `DecoderLM`; or, when config.json `architectures` has an entry ending in "ForSequenceClassification", the
    classifier `darling_jax.classifiers.load_classifier` builds (BERT, ModernBERT or a decoder classifier).
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"checkpoint path {path!r} does not exist")
  overrides = dict(dtype=dtype, param_dtype=param_dtype or dtype, remat=remat)
  if path.endswith(".gguf"):
    config, source = read_gguf(path)
    return model_from_source(config.replace(**overrides), source, mesh=mesh, origin=path)
  config_path = os.path.join(path, "config.json")
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"{path!r} is neither a .gguf file nor a directory with config.json")
  with open(config_path) as f:
    hf_config = json.load(f)
  if any(str(a).endswith("ForSequenceClassification") for a in hf_config.get("architectures") or []):
    from darling_jax.classifiers import load_classifier  # lazy: the classifiers import this package
    return load_classifier(path, dtype=dtype, param_dtype=param_dtype, mesh=mesh)
  config = DecoderConfig.from_hf(hf_config, **overrides)
  return model_from_source(config, SafetensorsSource(path), mesh=mesh, origin=path)
