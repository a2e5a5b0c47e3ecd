"""Tasks: the unit a user plugs into the trainer (`config.task.name`). See `darling_jax.tasks.base.Task`.

    task = make_task(config.task)          # {"name": "countdown", ...the task's own settings}
    TASKS.register("my_task", MyTask)      # a plug-in; or name it as "my_package.my_module:MyTask"

Built-in tasks (each a package, imported only when named): `countdown` (arithmetic expressions with a
ground-truth notion of "same strategy"), `math` (question / answer sets checked with math-verify) and
`open_ended` (prompts without answers, a reward model's quality, NoveltyBench's distinct and utility).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from darling_jax.registry import Registry
from darling_jax.tasks.base import EvalContext, Task, TaskData

TASKS = Registry("task", builtins={"countdown": "darling_jax.tasks.countdown:CountdownTask",
                                   "math": "darling_jax.tasks.math:MathTask",
                                   "open_ended": "darling_jax.tasks.open_ended:OpenEndedTask"})


def make_task(section: Mapping[str, Any]) -> Task:
  """The task a run config's `task` section names (`name`), built from its other keys."""
  values = dict(section.to_dict() if hasattr(section, "to_dict") else section)
  if "name" not in values:
    raise ValueError(f"config key 'task.name' is missing; known tasks: {TASKS.names()}")
  name = values.pop("name")
  task_class = TASKS.get(name)
  task = task_class(values)
  if not isinstance(task, Task):
    raise TypeError(f"task {name!r} built a {type(task).__name__}, not a darling_jax.tasks.Task")
  return task


__all__ = ["TASKS", "EvalContext", "Task", "TaskData", "make_task"]
