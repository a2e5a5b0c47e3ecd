"""Small name → object registries for the swappable parts of a run: tasks, reward (quality) functions, diversity
sources, reward modes.

    TASKS = Registry("task", builtins={"my_task": "my_package.tasks:MyTask"})
    @REWARD_FUNCTIONS.register("my_reward")
    def my_reward(prompts, completions, **columns): ...
    REWARD_FUNCTIONS.get("my_reward"); REWARD_FUNCTIONS.get("my_package.rewards:length_penalty")

A built-in entry is imported the first time it is asked for, so a registry never imports every task's code. A
name of the form `"package.module:attribute"` that is not registered is imported from there: a user's plug-in
works from a config without registering anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


class Registry:
  """Named entries of one kind (`kind` names it in errors)."""

  def __init__(self, kind: str, *, builtins: Mapping[str, str] | None = None):
    self.kind = kind
    self._builtins = dict(builtins or {})
    self._entries: dict[str, Any] = {}

  def register(self, name: str, entry: Any = None) -> Any:
    """Registers `entry` under `name`; without `entry`, a decorator. Re-registering a name replaces it."""
    if not isinstance(name, str) or not name or ":" in name:
      raise ValueError(f"a {self.kind} name must be a non-empty string without ':', got {name!r}")
    if entry is None:
      def decorator(obj):
        self._entries[name] = obj
        return obj
      return decorator
    self._entries[name] = entry
    return entry

  def names(self) -> list[str]:
    return sorted(set(self._entries) | set(self._builtins))

  def __contains__(self, name: str) -> bool:
    return name in self._entries or name in self._builtins

  def get(self, name: str) -> Any:
    """The entry registered as `name`, a built-in (imported now), or the `"module:attribute"` it names.

    Raises:
      ValueError: an unknown name (the message lists the known ones) or an import path that does not resolve.
    """
    if not isinstance(name, str) or not name:
      raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}; known: {self.names()}")
    if name in self._entries:
      return self._entries[name]
    if name in self._builtins:
      self._entries[name] = _import(self._builtins[name], f"built-in {self.kind} {name!r}")
      return self._entries[name]
    if ":" in name:
      return _import(name, f"{self.kind} {name!r}")
    raise ValueError(f"unknown {self.kind} {name!r}; known: {self.names()} (or give 'package.module:attribute')")


def _import(path: str, what: str) -> Any:
  module_name, _, attribute = path.partition(":")
  try:
    module = importlib.import_module(module_name)
  except ImportError as error:
    raise ValueError(f"{what}: cannot import module {module_name!r}: {error}") from error
  try:
    return getattr(module, attribute)
  except AttributeError:
    raise ValueError(f"{what}: module {module_name!r} has no attribute {attribute!r}") from None
