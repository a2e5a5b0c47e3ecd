"""Loading `configs/*.py` run configs by path (so one config can build on another, and tests can load them)."""

from __future__ import annotations

import importlib.util
import os
import pathlib

import ml_collections


def load_config(path: str | os.PathLike, *args) -> ml_collections.ConfigDict:
  """`get_config(*args)` of the config file at `path`."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"config file {str(path)!r} does not exist")
  spec = importlib.util.spec_from_file_location(f"darling_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"config file {str(path)!r} has no get_config()")
  return module.get_config(*args)
