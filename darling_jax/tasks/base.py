"""The `Task` interface: everything task-specific a DARLING run needs, behind one object.

`darling_jax.train` and `darling_jax.train_step` only call these methods; a task is a plug-in package that
subclasses `Task` and is named in the run config (`config.task.name`, see `darling_jax.tasks.make_task`). The
task's own settings are the other keys of `config.task`; they reach the constructor as a plain dict.

What a task owns:

* its prompt sets (`prepare_data`: a TF-free tensorflow-datasets builder written into the run's data dir, or a
  JSONL file of prompts through `darling_jax.data.prepare_jsonl_prompts`), read with grain by the trainer;
* how a prompt becomes tokens (`prompt_ids`; for pretrained policies, the policy tokenizer's chat template);
* its default quality, as TRL-style reward functions (`quality_functions`, see `darling_jax.quality`), and the
  dataset columns those functions receive (`reward_columns`);
* optionally, ground-truth equivalence classes of responses (`oracle_classes`, for the "oracle" diversity source
  and for measuring the classifier), task metrics of each step (`rollout_metrics`), a policy of its own for runs
  without a checkpoint (`initial_policy`), a supervised warm start (`warm_start`) and a trained pair classifier
  (`train_classifier`); the trainer caches each stage in the workdir;
* its end-of-run evaluation, with its own metric names (`evaluate`).

Batches are loader batches (`darling_jax.data.prompt_loader`): dicts of columns, B rows. Completions are B
lists of G response texts (rows `i*G ... i*G+G-1` of the sampler are prompt i's).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

# Sampling for evaluation: `sample(batch, num_samples) -> B lists of num_samples texts` of the policy under test.
SampleFn = Callable[[dict[str, Any], int], list[list[str]]]
# The run's quality: `quality(batch, completions) -> f32 [B, n]` (the configured reward functions, weighted).
QualityFn = Callable[[dict[str, Any], Sequence[Sequence[str]]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class TaskData:
  """A task's prepared prompt sets: the RL prompts and the end-of-run evaluation prompts."""

  train: tfds.core.DatasetBuilder
  train_split: str
  eval: tfds.core.DatasetBuilder
  eval_split: str


@dataclasses.dataclass(frozen=True)
class EvalContext:
  """What a task's `evaluate` may use.

  Attributes:
    sample: the policy's responses to a batch (see `SampleFn`).
    quality: the run's quality of responses (see `QualityFn`).
    batches: the evaluation batches (loader batches of `TaskData.eval`, at most `num_problems` prompts).
    num_samples: responses per prompt.
    equivalence: the run's pair classifier (`EquivalenceClassifier`), or None.
  """

  sample: SampleFn
  quality: QualityFn
  batches: Callable[[], Any]
  num_samples: int
  equivalence: Any = None


class Task:
  """Base class of tasks (see the module docstring). Subclasses implement `prepare_data` and
  `quality_functions`; the defaults of the others render each prompt as one user turn of the policy's chat
  template, evaluate quality and distinct responses, and mean "this task has no such thing" for the rest."""

  name = "task"
  # Whether `prompt_ids` renders prompts with the policy tokenizer's chat template (checked before any stage).
  needs_chat_template = True
  # Task metrics (of `rollout_metrics`) plotted with the run's curves: `(metric, label)` pairs.
  curves: tuple[tuple[str, str], ...] = ()

  def __init__(self, config: Mapping[str, Any] | None = None):
    self.config = dict(config or {})

  # ------------------------------------------------------------------ required
  def prepare_data(self, data_dir: pathlib.Path) -> TaskData:
    """Writes (once, offline) and returns the task's prompt sets under `data_dir`."""
    raise NotImplementedError

  def prompt_ids(self, batch: dict[str, Any], tokenizer) -> list[list[int]]:
    """Token ids of each prompt of `batch` for the policy's `tokenizer` (B lists); default: each prompt text as
    one user message of the tokenizer's chat template, with the assistant's turn opened."""
    return [list(tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                               tokenize=True, return_dict=False))
            for prompt in self.prompts(batch)]

  def quality_functions(self) -> list[tuple[str | Callable, float]]:
    """The task's default quality: `(reward function or its name in darling_jax.quality, weight)` pairs; a run
    config's `quality.functions` replaces them."""
    raise NotImplementedError

  def evaluate(self, context: EvalContext) -> dict[str, float]:
    """The end-of-run evaluation of one policy: a flat dict of the task's metrics. Default: the mean quality of
    `num_samples` responses per prompt, and the distinct responses per prompt (whitespace-normalised texts, and
    the pair classifier's classes when the run has one)."""
    from darling_jax.diversity import partition
    quality, distinct, classes = [], [], []
    for batch in context.batches():
      texts = context.sample(batch, context.num_samples)
      quality.append(np.asarray(context.quality(batch, texts), np.float32).reshape(-1))
      distinct.extend(len({" ".join(text.split()) for text in group}) for group in texts)
      if context.equivalence is not None:
        class_ids = np.asarray(partition(context.equivalence(texts)[0]))
        classes.extend(len(set(ids)) for ids in class_ids)
    if not distinct:
      raise ValueError(f"task {self.name!r}: the evaluation split gave no prompts")
    n = context.num_samples
    metrics = {"prompts": float(len(distinct)), "quality": float(np.mean(np.concatenate(quality))),
               f"distinct@{n}": float(np.mean(distinct))}
    if classes:
      metrics[f"classes@{n}"] = float(np.mean(classes))
    return metrics

  # ------------------------------------------------------------------ with defaults
  def prompts(self, batch: dict[str, Any]) -> list[str]:
    """The prompt texts reward functions receive as `prompts` (default: the `prompt` column)."""
    return [str(p) for p in batch["prompt"]]

  def reward_columns(self, batch: dict[str, Any]) -> dict[str, list]:
    """Per-prompt dataset columns reward functions receive as keyword arguments (TRL's `**kwargs`), repeated per
    completion by the caller (default: every column but `prompt`)."""
    return {key: list(value) for key, value in batch.items() if key != "prompt"}

  def oracle_classes(self, completions: Sequence[Sequence[str]], batch: dict[str, Any]) -> np.ndarray | None:
    """int32 `[B, G]` ground-truth equivalence classes (each response labelled by its class's first member), or
    None when the task has no ground truth."""
    return None

  def rollout_metrics(self, completions: Sequence[Sequence[str]], quality: np.ndarray, batch: dict[str, Any],
                      oracle: np.ndarray | None) -> dict[str, float]:
    """Task metrics of one step's rollouts (logged with the step's metrics), e.g. a pass rate."""
    return {}

  def initial_policy(self, config: Mapping[str, Any], seed: int):
    """`(model, tokenizer)` of a policy built by the task for runs without `policy.checkpoint`, or None."""
    return None

  def warm_start_enabled(self) -> bool:
    """Whether `warm_start` trains (known before any stage runs)."""
    return False

  def warm_start(self, model, tokenizer, data: TaskData, *, seed: int, log: Callable[[str], None]):
    """`(model, info)`: a supervised warm start of `model` (called only when `warm_start_enabled()`)."""
    raise NotImplementedError(f"task {self.name!r} has no warm start")

  def has_classifier(self) -> bool:
    """Whether `train_classifier` trains a pair classifier for this task."""
    return False

  def train_classifier(self, data: TaskData, *, seed: int, log: Callable[[str], None]):
    """`(classifier, tokenizer, info)`: a pair classifier trained for this task (called only when
    `has_classifier()`); `info` holds at least its `threshold` and `max_length`."""
    raise NotImplementedError(f"task {self.name!r} trains no pair classifier")

  def check_tokenizer(self, tokenizer, source: str) -> None:
    """Raises one clear error if the policy's `tokenizer` (from `source`) cannot render this task's prompts."""
    if self.needs_chat_template and not getattr(tokenizer, "chat_template", None):
      raise ValueError(f"the tokenizer of {source} has no chat template, which task {self.name!r} renders its "
                       "prompts with: use an instruct checkpoint (or a tokenizer with a chat_template)")
