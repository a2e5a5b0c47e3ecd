"""Config sections → the frozen dataclasses the building blocks take, with errors that name the config key.

    update_config = dataclass_from_section(config.grpo, UpdateConfig, "grpo")
    step_config = dataclass_from_section(config.rl, StepConfig, "rl", ignore=("steps", "prompts_per_step"))

One helper for every section of a run config (the RL step and update, the warm start, the pair-classifier
trainer, the tasks' own sections): a key the dataclass does not have raises naming `section.key` and listing the
keys it does take; a bad value raises from the dataclass's own checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def dataclass_from_section(section: Mapping[str, Any] | None, cls: type[T], name: str, *,
                           ignore: Iterable[str] = (), **fixed: Any) -> T:
  """`cls(**section, **fixed)`, minus the keys in `ignore` (read elsewhere).

  Args:
    section: a config section (`ml_collections.ConfigDict` or dict); None is an empty section.
    cls: a dataclass.
    name: the section's dotted name in the run config, for error messages (e.g. `"grpo"`, `"task.sft"`).
    ignore: keys of `section` that belong to someone else (e.g. the loop length in `rl`).
    **fixed: values set by the caller; they override the section's.

  Raises:
    ValueError: `section` has a key that is neither a field of `cls` nor in `ignore`.
  """
  values = dict(section or {})
  fields = {f.name for f in dataclasses.fields(cls)}
  ignore = set(ignore)
  unknown = sorted(set(values) - fields - ignore)
  if unknown:
    raise ValueError(f"unknown config key(s) {[f'{name}.{k}' for k in unknown]}; {name} takes {sorted(fields)}")
  values = {k: v for k, v in values.items() if k in fields}
  values.update(fixed)
  return cls(**{k: _plain(v) for k, v in values.items()})


def _plain(value: Any) -> Any:
  """ConfigDict sub-sections and lists become dicts and tuples (frozen dataclasses hash their fields)."""
  if hasattr(value, "to_dict"):
    return value.to_dict()
  if isinstance(value, list):
    return tuple(value)
  return value


def check_fields(obj: Any, prefix: str, checks: Iterable[tuple[str, bool, str]]) -> None:
  """Raises for the first `(field, ok, requirement)` that is not ok: "`prefix.field` must be `requirement`, got
  `value`" (the `__post_init__` checks of the settings dataclasses)."""
  for name, ok, requirement in checks:
    if not ok:
      raise ValueError(f"{prefix}.{name} must be {requirement}, got {getattr(obj, name)!r}")
