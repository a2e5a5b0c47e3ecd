"""Quality as plain reward functions with TRL's signature, weighted and summed as TRL's GRPOTrainer does.

A reward function is `fn(prompts: list[str], completions: list[str], **columns) -> list[float | None]`: one
value per completion, where `prompts[i]` is completion i's prompt and `columns` are the dataset's other fields,
repeated per completion (so a user's existing TRL reward functions run unchanged). `None` means "not applicable
to this completion": as in TRL, such entries are left out of the weighted sum (a completion no function applies
to gets 0, with a warning).

    quality = Quality([("math_verify", 1.0), (my_length_penalty, 0.1)])
    values, per_function = quality(prompts, completions, columns)   # f32 [B, G], {name: f32 [B, G]}

Names are looked up in `REWARD_FUNCTIONS` (built-ins: `math_verify`, and `prompt_relevance`, the offline
relevance × non-degeneracy quality of `darling_jax.quality.relevance`; `"package.module:function"` imports one);
`reward_model` is the decoder reward model of the run config (`quality.reward_model`, `RewardModel`).
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from darling_jax.registry import Registry

REWARD_FUNCTIONS = Registry("reward function", builtins={
    "math_verify": "darling_jax.quality.math_verify:math_verify_reward",
    "prompt_relevance": "darling_jax.quality.relevance:prompt_relevance"})


def function_name(fn: Callable) -> str:
  return getattr(fn, "__name__", None) or type(fn).__name__


class Quality:
  """The weighted sum of reward functions (TRL's GRPOTrainer reward semantics).

  Args:
    functions: `(function or name in REWARD_FUNCTIONS, weight)` pairs; at least one. A function is known (in
      metrics and errors) by its registry name, the attribute of a `"module:attribute"` path, or its `__name__`.
  """

  def __init__(self, functions: Sequence[tuple[str | Callable, float]]):
    if not functions:
      raise ValueError("quality needs at least one reward function")
    self.functions: list[tuple[str, Callable, float]] = []
    for entry, weight in functions:
      fn = REWARD_FUNCTIONS.get(entry) if isinstance(entry, str) else entry
      if not callable(fn):
        raise ValueError(f"reward function {entry!r} is not callable")
      if not isinstance(weight, numbers.Real) or not math.isfinite(weight):
        raise ValueError(f"the weight of reward function {entry!r} must be a finite number, got {weight!r}")
      name = entry.rsplit(":", 1)[-1] if isinstance(entry, str) else function_name(fn)
      self.functions.append((name, fn, float(weight)))
    names = [name for name, _, _ in self.functions]
    if len(set(names)) != len(names):
      raise ValueError(f"reward functions must have distinct names, got {names}")

  @property
  def names(self) -> list[str]:
    return [name for name, _, _ in self.functions]

  def __call__(self, prompts: Sequence[str], completions: Sequence[Sequence[str]],
               columns: Mapping[str, Sequence[Any]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Quality of B groups of G completions.

    Args:
      prompts: B prompt texts.
      completions: B lists of G completion texts.
      columns: dataset columns, each with B per-prompt values.

    Returns:
      `(quality, per_function)`: f32 `[B, G]`, and each function's raw values f32 `[B, G]` (NaN where it
      returned None).

    Raises:
      ValueError: a function returned the wrong number of values, a non-number, or NaN / inf (naming it).
    """
    num_prompts = len(completions)
    group_size = len(completions[0]) if num_prompts else 0
    if len(prompts) != num_prompts or any(len(group) != group_size for group in completions):
      raise ValueError(f"{len(prompts)} prompts for {num_prompts} groups of completions of sizes "
                       f"{sorted({len(g) for g in completions})}")
    flat_prompts = [p for p in prompts for _ in range(group_size)]
    flat_completions = [c for group in completions for c in group]
    flat_columns = {}
    for key, values in columns.items():
      if len(values) != num_prompts:
        raise ValueError(f"column {key!r} has {len(values)} values for {num_prompts} prompts")
      flat_columns[key] = [v for v in values for _ in range(group_size)]
    per_function = {}
    for name, fn, _ in self.functions:
      values = fn(flat_prompts, flat_completions, **flat_columns)
      per_function[name] = _checked_values(name, values, len(flat_completions)).reshape(num_prompts, group_size)
    stacked = np.stack([per_function[name] for name, _, _ in self.functions], axis=-1)     # [B, G, F]
    weights = np.asarray([weight for _, _, weight in self.functions], np.float32)
    unscored = np.all(np.isnan(stacked), axis=-1)
    if unscored.any():
      logging.warning("%d of %d completions have no applicable reward function (every function returned None): "
                      "their quality is 0", int(unscored.sum()), unscored.size)
    quality = np.nansum(stacked * weights, axis=-1).astype(np.float32)
    return quality, per_function


def _checked_values(name: str, values: Any, expected: int) -> np.ndarray:
  """f32 `[expected]` of a reward function's output (None -> NaN); one clear error for anything else."""
  try:
    count = len(values)
  except TypeError:
    raise ValueError(f"reward function {name!r} returned {type(values).__name__}, not a list of "
                     f"{expected} floats") from None
  if count != expected:
    raise ValueError(f"reward function {name!r} returned {count} values for {expected} completions")
  out = np.empty(expected, np.float32)
  for i, value in enumerate(values):
    if value is None:
      out[i] = np.nan
      continue
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
      raise ValueError(f"reward function {name!r} returned {value!r} for completion {i}: expected a float or None")
    if not math.isfinite(float(value)):
      raise ValueError(f"reward function {name!r} returned {float(value)} for completion {i}: rewards must be "
                       "finite (return None for 'not applicable')")
    out[i] = float(value)
  return out
