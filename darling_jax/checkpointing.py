"""Training checkpoints with orbax: a train state, the data-iterator position and the run config, restored into
shardings. The one checkpoint path of every trainer here (the RL loop, the pair-classifier trainer).

One checkpoint step is a directory `<directory>/<step>/` with the items

  state/        the state pytree (e.g. a `TrainState`: params, optimizer state, step, RNG key data), one
                tensorstore array per leaf
  data_state/   the data iterator's `get_state()` dict, as JSON (optional)
  config/       the run config, a JSON-able dict such as `config.to_dict()` (optional)
  meta/         JSON: the implementation of each typed RNG key in the state (`"threefry2x32"`, ...), by path,
                to re-wrap the stored key data

Usage:

  with Checkpointer(directory, max_to_keep=3, save_interval_steps=100) as checkpointer:
    if checkpointer.latest_step() is not None:
      abstract = with_shardings(jax.eval_shape(lambda: init_train_state(model, optimizer, key)),
                                train_state_shardings(state, optimizer, mesh))
      state, data_state, _ = checkpointer.restore(abstract)
      iterator.set_state(data_state)
    for step in ...:
      state, metrics = update(state, batch)
      checkpointer.save(int(state.step), state, data_state=iterator.get_state(), config=config.to_dict())

Saves are asynchronous: `save` returns once the arrays are copied off the devices (so `state` may then be
donated), the files are written in the background and the step directory appears atomically (orbax writes into
`<step>.orbax-checkpoint-tmp` and renames it when complete), so a step whose write was interrupted is never
listed or restored. `wait()` blocks until the pending save is on disk; `close()` waits and releases the manager.

The data state is one process's iterator position; with several JAX processes only process 0's is stored (use
grain's own `grain.checkpoint.CheckpointHandler` for per-process positions).
"""

from __future__ import annotations

import json
import operator
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp


_ITEMS = ("state", "data_state", "config", "meta")


def _key_name(key: Any) -> str:
  """One pytree key as orbax names it in a checkpoint's tree (dict key, sequence index or attribute name)."""
  for attribute in ("key", "idx", "name"):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  raise TypeError(f"unsupported pytree key {key!r}")


def _flat_by_path(tree: Any, is_leaf=None) -> dict[tuple[str, ...], Any]:
  """`{("params", "embed_tokens", "value"): leaf, ...}` in the tree's flattening order."""
  return {tuple(_key_name(k) for k in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]}


def _show_path(path: tuple[str, ...]) -> str:
  """`("params", "embed_tokens", "value")` -> `"params/embed_tokens"` (an `nnx.Variable`'s `value` dropped)."""
  return "/".join(path[:-1] if path and path[-1] == "value" else path)


def _is_key(leaf: Any) -> bool:
  return jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def with_shardings(abstract_state: Any, shardings: Any) -> Any:
  """`abstract_state` (e.g. `jax.eval_shape` of `init_train_state`) with each leaf's `sharding` set: the target of
  `Checkpointer.restore`.

  Args:
    abstract_state: a pytree of `jax.ShapeDtypeStruct`s (or arrays), e.g. a `TrainState`.
    shardings: a prefix tree of it, e.g. `train_state_shardings(abstract_state, optimizer, mesh)` (one sharding
      per `nnx.Variable`, which applies to the variable's value).
  """
  def sharded(sharding, subtree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), subtree)

  return jax.tree.map(sharded, shardings, abstract_state)


class Checkpointer:
  """Keeps the last `max_to_keep` checkpoints of a run in `directory`, saving every `save_interval_steps` steps.

  Args:
    directory: local directory (created if missing) or a remote path orbax understands (`gs://...`).
    max_to_keep: number of most recent steps kept (older ones are deleted after each save); None keeps all.
    save_interval_steps: `save` writes only steps that are multiples of this (and the first step it is given);
      `save(..., force=True)` writes any step.
    async_save: write in a background thread (`save` returns after the device-to-host copy).

  Raises:
    ValueError: `directory` is a file, cannot be created, or a bad option.
    PermissionError: `directory` is not writable.
  """

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int | None = 3, save_interval_steps: int = 1,
               async_save: bool = True):
    if max_to_keep is not None and (isinstance(max_to_keep, bool) or not isinstance(max_to_keep, int)
                                    or max_to_keep < 1):
      raise ValueError(f"max_to_keep must be a positive int or None, got {max_to_keep!r}")
    if isinstance(save_interval_steps, bool) or not isinstance(save_interval_steps, int) or save_interval_steps < 1:
      raise ValueError(f"save_interval_steps must be a positive int, got {save_interval_steps!r}")
    self.directory = _checked_directory(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, save_interval_steps=save_interval_steps, enable_async_checkpointing=async_save,
        cleanup_tmp_directories=True)  # leftovers of interrupted writes
    handlers = {name: ocp.StandardCheckpointHandler() if name == "state" else ocp.JsonCheckpointHandler()
                for name in _ITEMS}  # registered up front: a fresh manager can read an existing step's metadata
    self._manager = ocp.CheckpointManager(self.directory, item_handlers=handlers, options=options)

  def all_steps(self) -> list[int]:
    """The finished checkpoint steps, ascending."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    """The newest finished checkpoint step, or None when there is none."""
    return self._manager.latest_step()

  def save(self, step: int, state: Any, *, data_state: Mapping[str, Any] | None = None,
           config: Mapping[str, Any] | None = None, force: bool = False) -> bool:
    """Starts saving `state` (and the optional data-iterator state and run config) as checkpoint `step`.

    Args:
      step: the checkpoint's step number (usually `int(state.step)`), larger than every saved step.
      state: a pytree of arrays (e.g. a `TrainState`), any sharding; typed PRNG keys (`jax.random.key`) are
        stored as their key data and re-wrapped on restore.
      data_state: the data iterator's `get_state()`, a JSON-able dict.
      config: the run config as a JSON-able dict (e.g. `config.to_dict()` of an `ml_collections.ConfigDict`).
      force: save even if `step` is not a multiple of `save_interval_steps`.

    Returns:
      Whether a save was started (False: not a save step, or not newer than the latest saved step).

    Raises:
      ValueError: `step` is not a non-negative int or (with `force`) is already saved; `data_state` / `config`
        is not JSON-able.
    """
    step = _step_index(step)
    if not (force or self._manager.should_save(step)):
      return False
    key_impls = _key_impls(state)
    state = jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, state)
    items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave({"rng_impls": key_impls})}
    for name, value in (("data_state", data_state), ("config", config)):
      if value is not None:
        items[name] = ocp.args.JsonSave(_json_checked(name, value))
    return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore(self, abstract_state: Any, step: int | None = None
              ) -> tuple[Any, dict[str, Any] | None, dict[str, Any] | None]:
    """Restores checkpoint `step` (default: the latest) directly into the shardings of `abstract_state`.

    Args:
      abstract_state: the target pytree (e.g. a `TrainState`) whose leaves are `jax.ShapeDtypeStruct`s or arrays
        with a `sharding` (see `with_shardings`); leaves without one go to the first local device. Typed PRNG
        key leaves are restored as typed keys of the stored implementation, raw key data as raw data.
      step: the checkpoint to restore; None for the latest.

    Returns:
      `(state, data_state, config)`: the state in the target shardings, and the saved data-iterator state and run
      config (None where the checkpoint has none).

    Raises:
      FileNotFoundError: no checkpoint (or no checkpoint `step`) in the directory.
      ValueError: the stored tree does not match `abstract_state` (the message names the first differing path,
        its stored and expected shape / dtype) or a stored RNG implementation differs from the target's.
    """
    step = self._existing_step(step)
    where = f"checkpoint at {self.directory} step {step}"
    stored_items = self._manager.item_metadata(step)
    meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    stored_impls = meta.get("rng_impls", {})
    target_keys = _key_dtypes(abstract_state)
    _check_rng_impls(where, stored_impls, target_keys)
    target = jax.tree.map(lambda x: _abstract_key_data(x) if _is_key(x) else x, abstract_state)
    target = _abstract_with_sharding(target)
    _check_tree(where, stored_items["state"].tree, target)
    items = {"state": ocp.args.StandardRestore(target)}
    items.update({name: ocp.args.JsonRestore() for name in ("data_state", "config") if name in stored_items})
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    keys = iter(stored_impls[path] for path in target_keys)
    state = jax.tree.map(lambda x, data: jax.random.wrap_key_data(data, impl=next(keys)) if _is_key(x) else data,
                         abstract_state, restored["state"])
    return state, restored.get("data_state"), restored.get("config")

  def restore_config(self, step: int | None = None) -> dict[str, Any] | None:
    """The run config saved with checkpoint `step` (default: the latest), None if it has none; reads no arrays
    (e.g. to check that a checkpoint belongs to this run before restoring it)."""
    step = self._existing_step(step)
    if "config" not in self._manager.item_metadata(step):
      return None
    return self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

  def _existing_step(self, step: int | None) -> int:
    self.wait()
    steps = self.all_steps()
    if step is None:
      if not steps:
        raise FileNotFoundError(f"no checkpoint in {self.directory}")
      return steps[-1]
    step = _step_index(step)
    if step not in steps:
      raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory}; saved steps: {steps}")
    return step

  def wait(self) -> None:
    """Blocks until the pending asynchronous save (if any) is written and finalized."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for the pending save and releases the manager's resources."""
    self._manager.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def __repr__(self) -> str:
    return f"Checkpointer({self.directory!r}, steps={self.all_steps()})"


def _checked_directory(directory: str | os.PathLike) -> str:
  """The checkpoint directory as a string, created if local and missing; clear errors for unusable paths."""
  path = os.fspath(directory)
  if not isinstance(path, str) or not path:
    raise ValueError(f"checkpoint directory must be a non-empty path, got {directory!r}")
  if "://" in path:
    return path  # remote (gs://, ...): orbax checks it
  path = os.path.abspath(path)
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f"checkpoint directory {path} exists and is not a directory")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as error:
    raise ValueError(f"cannot create checkpoint directory {path}: {error.strerror or error}") from error
  try:
    with tempfile.NamedTemporaryFile(dir=path, prefix=".write_probe_"):
      pass
  except OSError as error:
    raise PermissionError(f"checkpoint directory {path} is not writable: {error.strerror or error}") from error
  return path


def _step_index(step: Any) -> int:
  """`step` as a non-negative Python int (numpy and JAX integer scalars accepted)."""
  try:
    index = None if isinstance(step, bool) else operator.index(step)
  except TypeError:
    index = None
  if index is None or index < 0:
    raise ValueError(f"step must be a non-negative int, got {step!r}")
  return index


def _json_checked(name: str, value: Mapping[str, Any]) -> dict[str, Any]:
  if not isinstance(value, Mapping):
    raise ValueError(f"{name} must be a JSON-able dict (e.g. a ConfigDict's .to_dict()), got {type(value).__name__}")
  try:
    return json.loads(json.dumps(dict(value)))
  except (TypeError, ValueError) as error:
    raise ValueError(f"{name} must be a JSON-able dict: {error}") from error


def _key_impls(tree: Any) -> dict[str, str]:
  """`{"rng": "threefry2x32", ...}`: the implementation of every typed PRNG key leaf, by its path."""
  return {"/".join(path): str(jax.random.key_impl(leaf)) for path, leaf in _flat_by_path(tree).items()
          if _is_key(leaf)}


def _key_dtypes(tree: Any) -> dict[str, Any]:
  """The dtype of every typed PRNG key leaf (array or `ShapeDtypeStruct`), by its path."""
  return {"/".join(path): leaf.dtype for path, leaf in _flat_by_path(tree).items() if _is_key(leaf)}


def _abstract_key_data(key: Any) -> jax.ShapeDtypeStruct:
  data = jax.eval_shape(jax.random.key_data, key)
  return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=getattr(key, "sharding", None))


def _abstract_with_sharding(tree: Any) -> Any:
  """Leaves as `ShapeDtypeStruct`s with a sharding: their own, or the first local device."""
  default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                     sharding=getattr(x, "sharding", None) or default), tree)


def _check_rng_impls(where: str, stored: dict[str, str], target: dict[str, Any]) -> None:
  """Every typed key of the target (`{path: key dtype}`) was stored as a key of the same implementation
  (`{path: implementation name}`), and no other leaf was."""
  for path in sorted(set(stored) | set(target)):
    if path not in target:
      raise ValueError(f"{where} does not match the config: {path}: stored a typed {stored[path]} key, config "
                       "expects raw key data")
    if path not in stored:
      raise ValueError(f"{where} does not match the config: {path}: stored raw key data, config expects a typed "
                       f"key ({target[path]})")
    stored_dtype = jax.eval_shape(lambda: jax.random.key(0, impl=stored[path])).dtype
    if stored_dtype != target[path]:
      raise ValueError(f"{where} does not match the config: {path}: stored a {stored[path]} key ({stored_dtype}), "
                       f"config expects {target[path]}")


def _check_tree(where: str, stored_tree: Any, target: Any) -> None:
  """Raises one ValueError for the first leaf (in `target` order) whose path, shape or dtype differs."""
  stored = _flat_by_path(stored_tree, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype"))
  expected = _flat_by_path(target)
  problem = None
  for path, leaf in expected.items():
    if path not in stored:
      problem = f"{_show_path(path)}: missing from the checkpoint, config expects {tuple(leaf.shape)} {leaf.dtype}"
    elif tuple(stored[path].shape) != tuple(leaf.shape):
      problem = f"{_show_path(path)}: stored {tuple(stored[path].shape)}, config expects {tuple(leaf.shape)}"
    elif stored[path].dtype != leaf.dtype:
      problem = f"{_show_path(path)}: stored dtype {stored[path].dtype}, config expects {leaf.dtype}"
    if problem:
      break
  else:
    extra = [path for path in stored if path not in expected]
    if extra:
      leaf = stored[extra[0]]
      problem = f"{_show_path(extra[0])}: stored {tuple(leaf.shape)} {leaf.dtype}, not in the config's state"
  if problem:
    raise ValueError(f"{where} does not match the config: {problem}")
