"""HF-format checkpoints: tensor-name mapping, building a model from a tensor source, and export.

Our parameter paths mirror transformers' module names (`layers.3.self_attn.q_proj.kernel` is
`model.layers.3.self_attn.q_proj.weight`, transposed), so the mapping is one rule (`module_tensor_name`), not
a table. `fill_from_source` fills any such module (decoder, classifiers) from a tensor source, and
`write_hf_directory` exports one (atomically, gathering sharded parameters).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, SingleDeviceSharding
from safetensors.numpy import save_file

from darling_jax.models.config import DecoderConfig
from darling_jax.models.decoder import DecoderLM
from darling_jax.models.tensor_sources import TensorSource
from darling_jax.sharding import state_shardings

# Tensors that HF checkpoints may carry and that we derive instead.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)



def read_hf_config(path: str, what: str) -> dict:
  """The `config.json` dict of HF directory `path`; `what` names the directory in errors ("classifier")."""
  config_path = os.path.join(path, "config.json")
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{what} directory {path!r} does not exist")
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"{path!r} has no config.json")
  with open(config_path) as f:
    return json.load(f)

def module_tensor_name(path: tuple) -> tuple[str, bool]:
  """The one rule: NNX state path `a.0.b.kernel` -> (`a.0.b.weight`, True: HF stores it `[out, in]`); any other
  leaf (`bias`, an embedding's `weight`, …) keeps its name and layout."""
  parts = [str(p) for p in path]
  leaf = parts[-1]
  return ".".join(parts[:-1] + ["weight" if leaf == "kernel" else leaf]), leaf == "kernel"


def hf_tensor_name(path: tuple) -> tuple[str, bool]:
  """Our decoder's NNX state path -> (HF tensor name, whether HF stores it transposed `[out, in]`)."""
  parts = [str(p) for p in path]
  if parts == ["lm_head"]:
    return "lm_head.weight", True
  if parts == ["embed_tokens"]:
    return "model.embed_tokens.weight", False
  name, transposed = module_tensor_name(path)
  return "model." + name, transposed


def fill_from_source(abstract: nnx.Module, source: TensorSource,
                     tensor_name: Callable[[tuple], tuple[str, bool]] = module_tensor_name, *,
                     mesh: Mesh | None = None, origin: str = "checkpoint",
                     ignored: Callable[[str], bool] = lambda name: False, describe: str = "") -> nnx.Module:
  """Materialises an abstract module (`nnx.eval_shape`) with every parameter read from `source`.

  Each parameter's HF name and layout come from `tensor_name(path)`; it is placed straight into its sharding
  on `mesh` (from its logical axes) or on the first device. Each device shard is read separately
  (`jax.make_array_from_callback`), so a big model never exists as one host copy. Missing, unexpected (unless
  `ignored(name)`) or mis-shaped tensors raise one ValueError naming them, with `describe` (the config) for
  context; nothing is randomly initialised.
  """
  graphdef, abstract_state = nnx.split(abstract)
  if mesh is not None:
    shardings = nnx.to_flat_state(state_shardings(abstract_state, mesh))
  else:
    device = SingleDeviceSharding(jax.devices()[0])
    shardings = [(path, device) for path, _ in nnx.to_flat_state(abstract_state)]
  flat = nnx.to_flat_state(abstract_state)

  wanted = {tensor_name(path)[0] for path, _ in flat}
  available = source.names()
  missing = sorted(wanted - available)
  if missing:
    raise ValueError(f"{origin}: missing tensor(s) {missing[:5]}{' …' if len(missing) > 5 else ''} required by "
                     f"the config ({describe})")
  unexpected = sorted(n for n in available - wanted if not ignored(n))
  if unexpected:
    raise ValueError(f"{origin}: unexpected tensor(s) {unexpected[:5]}{' …' if len(unexpected) > 5 else ''} not "
                     f"used by the config ({describe})")

  new_leaves = []
  for (path, variable), (_, sharding) in zip(flat, shardings, strict=True):
    name, transposed = tensor_name(path)
    target = variable.get_value()
    stored = source.shape(name)
    expected = tuple(reversed(target.shape)) if transposed else tuple(target.shape)
    if stored != expected:
      raise ValueError(f"{origin}: tensor {name!r} has shape {stored}, the config expects {expected}")

    def read_shard(index, name=name, transposed=transposed, dtype=target.dtype, ndim=len(target.shape)):
      index = tuple(index) + (slice(None),) * (ndim - len(index))
      if transposed:
        return np.ascontiguousarray(source.read(name, index[::-1]).T).astype(dtype)
      return np.asarray(source.read(name, index)).astype(dtype)

    array = jax.make_array_from_callback(target.shape, sharding, read_shard)
    new_leaves.append((path, variable.replace(array)))
  return nnx.merge(graphdef, nnx.from_flat_state(new_leaves))


def model_from_source(config: DecoderConfig, source: TensorSource, *, mesh: Mesh | None = None,
                      origin: str = "checkpoint") -> DecoderLM:
  """Builds a decoder whose every parameter is read from `source` (see `fill_from_source`)."""
  abstract = nnx.eval_shape(lambda: DecoderLM(config, rngs=nnx.Rngs(0)))

  def ignored(name: str) -> bool:
    return name.endswith(_IGNORED_SUFFIXES) or (name == "lm_head.weight" and config.tie_word_embeddings)

  return fill_from_source(abstract, source, hf_tensor_name, mesh=mesh, origin=origin, ignored=ignored,
                          describe=f"{config.model_type}, {config.num_layers} layers, "
                                   f"tie_word_embeddings={config.tie_word_embeddings}")


def save_pretrained(model: DecoderLM, path: str, *, tokenizer=None) -> None:
  """Writes `config.json` + `model.safetensors` (+ tokenizer files) that transformers loads as the same model.

  The directory is written to a temporary sibling first and renamed into place, so an interrupted export never
  leaves a half-written checkpoint. Sharded (multi-device/multi-host) parameters are gathered per tensor.
  """
  config: DecoderConfig = model.config
  write_hf_directory(model, path, config.to_hf(), hf_tensor_name, tokenizer=tokenizer)


def write_hf_directory(model: nnx.Module, path: str | os.PathLike, hf_config: dict,
                       tensor_name: Callable[[tuple], tuple[str, bool]], *, tokenizer=None) -> None:
  """Writes `hf_config` as `config.json` and every `nnx.Param` of `model` into `model.safetensors`, named and
  laid out by `tensor_name(path)` (+ `tokenizer.save_pretrained` files when given).

  Atomic: the directory is written to a temporary sibling and renamed into place (replacing `path`), so an
  interrupted export never leaves a half-written checkpoint. Sharded (multi-device/multi-host) parameters are
  gathered per tensor on every process; only process 0 writes.
  """
  path = os.fspath(path)
  tensors = {}
  for param_path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    name, transposed = tensor_name(param_path)
    if name in tensors:
      raise ValueError(f"two parameters map to the tensor name {name!r} (second: {param_path})")
    value = variable.get_value()
    host = np.asarray(value if value.is_fully_addressable else multihost_utils.process_allgather(value))
    tensors[name] = np.ascontiguousarray(host.T if transposed else host)
  if jax.process_index() != 0:
    return
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
  try:
    with open(os.path.join(staging, "config.json"), "w") as f:
      json.dump(hf_config, f, indent=2)
    save_file(tensors, os.path.join(staging, "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
      tokenizer.save_pretrained(staging)
    if os.path.exists(path):
      shutil.rmtree(path)
    os.replace(staging, path)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
