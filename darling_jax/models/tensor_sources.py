"""Read-only views of checkpoint tensors by their HF (transformers) names, in HF layout.

A source answers `names()`, `shape(name)` and `read(name, index)`; `read` returns only the requested slice,
so a sharded model can be filled one device shard at a time with no full host copy.
"""

from __future__ import annotations

import json
import os
from typing import Protocol

import jax
import numpy as np
from safetensors import safe_open


class TensorSource(Protocol):

  def names(self) -> set[str]:
    ...

  def shape(self, name: str) -> tuple[int, ...]:
    ...

  def read(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
    ...


class SafetensorsSource:
  """`model.safetensors` or a sharded `model.safetensors.index.json` in an HF directory (f32/f16/bf16)."""

  def __init__(self, directory: str):
    index_path = os.path.join(directory, "model.safetensors.index.json")
    single_path = os.path.join(directory, "model.safetensors")
    if os.path.exists(index_path):
      with open(index_path) as f:
        weight_map = json.load(f)["weight_map"]
      files = {name: os.path.join(directory, fname) for name, fname in weight_map.items()}
    elif os.path.exists(single_path):
      files = None
    else:
      raise FileNotFoundError(f"{directory!r} has neither model.safetensors nor model.safetensors.index.json")
    self._handles = {}
    self._bf16_handles = {}  # JAX-framework readers, opened on first bf16 read of a file
    paths = sorted(set(files.values())) if files else [single_path]
    for path in paths:
      if not os.path.exists(path):
        raise FileNotFoundError(f"safetensors shard {path!r} listed in the index does not exist")
      self._handles[path] = safe_open(path, framework="numpy")
    self._file_of = {}
    for path, handle in self._handles.items():
      for name in handle.keys():
        self._file_of[name] = path
    if files:
      for name, path in files.items():
        if self._file_of.get(name) != path:
          raise ValueError(f"tensor {name!r} is listed in {index_path!r} but not found in {path!r}")

  def names(self) -> set[str]:
    return set(self._file_of)

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self._handles[self._file_of[name]].get_slice(name).get_shape())

  def read(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
    path = self._file_of[name]
    view = self._handles[path].get_slice(name)
    if view.get_dtype() != "BF16":
      return np.asarray(view[index])
    # numpy has no bfloat16: read the slice through the JAX reader on the host CPU (ml_dtypes bfloat16).
    if path not in self._bf16_handles:
      self._bf16_handles[path] = safe_open(path, framework="flax")
    with jax.default_device(jax.devices("cpu")[0]):
      return np.asarray(self._bf16_handles[path].get_slice(name)[index])


class ArraySource:
  """In-memory arrays by HF name (e.g. dequantized GGUF tensors)."""

  def __init__(self, arrays: dict[str, np.ndarray]):
    self._arrays = arrays

  def names(self) -> set[str]:
    return set(self._arrays)

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self._arrays[name].shape)

  def read(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
    return self._arrays[name][index]
