"""Countdown as a DARLING task: a tiny policy of its own, a supervised warm start, a pair classifier trained on
oracle labels, exact quality and ground-truth equivalence classes of responses.

    task = CountdownTask({"data": {...}, "policy": {...}, "sft": {...}, "classifier": {...}})   # config.task
    ids = task.prompt_ids(batch, tokenizer)      # B lists: <bos> + "<n3><n5><n7><n2><t2><t6>:"
    countdown_reward(prompts, completions, numbers=..., target=...)   # 1.0 for an exact solution (never eval-ed)
    task.oracle_classes(texts, batch)            # int32 [B, G]: same class iff the same strategy

The task's settings (the run config's `task` section besides `name`):

* `data`: `CountdownConfig` options of the generated problem sets (`darling_jax.tasks.countdown.builder`);
* `policy`: `DecoderConfig` overrides of the tiny from-scratch policy (`warm_start.policy_config`), used when the
  run has no `policy.checkpoint`;
* `sft`: `SftConfig` of the supervised warm start on respelled solutions (`steps=0`: none);
* `classifier`: the oracle-labelled pair classifier (`num_pairs`, `num_eval_pairs`, `epochs`, `max_length`,
  `threshold`; `classifier.train_countdown_classifier`).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from darling_jax.config_sections import dataclass_from_section
from darling_jax.data.loader import decode_record
from darling_jax.tasks.base import EvalContext, Task, TaskData
from darling_jax.tasks.countdown.builder import prepare_countdown
from darling_jax.tasks.countdown.classifier import (CLASSIFIER_ARCHITECTURES, CLASSIFIER_MAX_LENGTH,
                                                    classifier_config, default_train_config,
                                                    train_countdown_classifier)
from darling_jax.tasks.countdown.evaluation import evaluate_countdown
from darling_jax.tasks.countdown.oracle import first_member_classes, response_key
from darling_jax.tasks.countdown.problems import strategy_id
from darling_jax.tasks.countdown.tokenizer import countdown_tokenizer
from darling_jax.tasks.countdown.warm_start import SftConfig, countdown_prompt_ids, policy_config, train_sft


def countdown_reward(prompts: Sequence[str], completions: Sequence[str], *, numbers: Sequence[Sequence[int]],
                     target: Sequence[int], **_: Any) -> list[float]:
  """TRL-style reward function: 1.0 for an exact solution of the completion's problem, else 0.0 (parsed by the
  safe expression parser, never `eval`-ed)."""
  del prompts
  return [0.0 if strategy_id(text, [int(x) for x in row], int(goal)) is None else 1.0
          for text, row, goal in zip(completions, numbers, target)]


@dataclasses.dataclass(frozen=True)
class CountdownClassifierSettings:
  """The task's pair classifier (a 2-layer BERT over the character vocabulary, trained on oracle labels):
  `architecture` "siamese" (each expression encoded once; `max_length` tokens per expression) or
  "cross_encoder" (`[CLS] a [SEP] b [SEP]`; `max_length` tokens per pair)."""

  num_pairs: int = 3000
  num_eval_pairs: int = 500
  epochs: int = 3
  max_length: int = CLASSIFIER_MAX_LENGTH
  threshold: float = 0.5
  architecture: str = "siamese"

  def __post_init__(self):
    if self.architecture not in CLASSIFIER_ARCHITECTURES:
      raise ValueError(f"task.classifier.architecture must be one of {CLASSIFIER_ARCHITECTURES}, got "
                       f"{self.architecture!r}")


@dataclasses.dataclass(frozen=True)
class CountdownSettings:
  """The `task` section of a Countdown run (see the module docstring)."""

  data: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  policy: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  sft: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  classifier: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class CountdownTask(Task):
  """The Countdown task (see the module docstring)."""

  name = "countdown"
  needs_chat_template = False  # its own character tokenizer and compact prompt
  curves = (("pass_rate", "pass rate"), ("distinct_correct", "distinct correct strategies / group"))

  def __init__(self, config: Mapping[str, Any] | None = None):
    super().__init__(config)
    settings = dataclass_from_section(self.config, CountdownSettings, "task", ignore=())
    self.data_options = dict(settings.data)
    if "target_range" in self.data_options:
      self.data_options["target_range"] = tuple(self.data_options["target_range"])
    self.policy_overrides = dict(settings.policy)
    self.sft = dict(settings.sft)
    self.sft_steps = int(self.sft.get("steps", SftConfig.steps))
    if self.sft_steps:  # checked now, before any stage runs
      dataclass_from_section(self.sft, SftConfig, "task.sft")
    self.classifier = dataclass_from_section(settings.classifier, CountdownClassifierSettings, "task.classifier")
    policy_config(**self.policy_overrides)  # unknown DecoderConfig fields raise now

  # ------------------------------------------------------------------ data and prompts
  def prepare_data(self, data_dir: pathlib.Path) -> TaskData:
    builder = prepare_countdown(data_dir, **self.data_options)
    return TaskData(train=builder, train_split="train", eval=builder, eval_split="test")

  def prompt_ids(self, batch: dict[str, Any], tokenizer) -> list[list[int]]:
    return [countdown_prompt_ids(tokenizer, [int(x) for x in numbers], int(target))
            for numbers, target in zip(batch["numbers"], batch["target"])]

  def reward_columns(self, batch: dict[str, Any]) -> dict[str, list]:
    return {"numbers": [[int(x) for x in row] for row in batch["numbers"]],
            "target": [int(x) for x in batch["target"]]}

  def quality_functions(self):
    return [(countdown_reward, 1.0)]

  # ------------------------------------------------------------------ ground truth and metrics
  def oracle_classes(self, completions: Sequence[Sequence[str]], batch: dict[str, Any]) -> np.ndarray:
    return np.stack([first_member_classes([response_key(text, numbers, target) for text in group])
                     for group, numbers, target in _problems(completions, batch)])

  def rollout_metrics(self, completions, quality, batch, oracle) -> dict[str, float]:
    """pass_rate (share of exact solutions), distinct_correct (distinct correct strategies per group), and the
    oracle's number of classes per group."""
    from darling_jax.diversity import diversity_scores
    correct = np.asarray(quality) > 0
    oracle = self.oracle_classes(completions, batch) if oracle is None else oracle
    distinct = [len(set(classes[ok])) for classes, ok in zip(oracle, correct)]
    sorted_ids = np.sort(oracle, axis=-1)
    num_classes = 1 + np.sum(sorted_ids[:, 1:] != sorted_ids[:, :-1], axis=-1)
    return {"pass_rate": float(correct.mean()), "distinct_correct": float(np.mean(distinct)),
            "oracle_classes": float(num_classes.mean()),
            "oracle_diversity": float(np.mean(diversity_scores(oracle)))}

  def evaluate(self, context: EvalContext) -> dict[str, float]:
    return evaluate_countdown(lambda batch: context.sample(batch, context.num_samples), context.batches(),
                              num_samples=context.num_samples, equivalence=context.equivalence)

  # ------------------------------------------------------------------ stages
  def initial_policy(self, config, seed: int):
    from darling_jax.models import init_model
    tokenizer = countdown_tokenizer()
    return init_model(policy_config(**self.policy_overrides), seed=seed), tokenizer

  def warm_start_enabled(self) -> bool:
    return self.sft_steps > 0

  def warm_start(self, model, tokenizer, data: TaskData, *, seed: int, log):
    sft_config = dataclass_from_section(self.sft, SftConfig, "task.sft", seed=seed)
    problems = _train_problems(data)
    started = time.perf_counter()
    log(f"supervised warm start: {sft_config.steps} steps on respelled solutions of {len(problems)} problems")
    model, history = train_sft(model, tokenizer, problems, sft_config, log=log)
    tail = history[-20:]
    return model, {"seconds": time.perf_counter() - started, "steps": sft_config.steps,
                   "final_loss": sum(h["loss"] for h in tail) / len(tail)}

  def has_classifier(self) -> bool:
    return True

  def train_classifier(self, data: TaskData, *, seed: int, log):
    c = self.classifier
    tokenizer = countdown_tokenizer()
    started = time.perf_counter()
    log(f"training on {c.num_pairs} oracle-labelled expression pairs")
    model, metrics = train_countdown_classifier(
        _train_problems(data), seed=seed, num_pairs=c.num_pairs, num_eval_pairs=c.num_eval_pairs,
        config=classifier_config(max_position_embeddings=max(c.max_length, CLASSIFIER_MAX_LENGTH)),
        train_config=default_train_config(max_length=c.max_length, epochs=c.epochs), tokenizer=tokenizer,
        threshold=c.threshold, architecture=c.architecture, log=log)
    info = {"seconds": time.perf_counter() - started, "threshold": float(c.threshold), "max_length": c.max_length,
            **metrics}
    return model, tokenizer, info


def _train_problems(data: TaskData) -> list[dict[str, Any]]:
  return [decode_record(record) for record in data.train.as_data_source(data.train_split)]


def _problems(texts: Sequence[Sequence[str]], batch: dict[str, Any]):
  numbers, targets = np.asarray(batch["numbers"]), np.asarray(batch["target"])
  if len(texts) != len(targets):
    raise ValueError(f"{len(texts)} groups of responses for a batch of {len(targets)} problems")
  return [(group, [int(x) for x in row], int(target)) for group, row, target in zip(texts, numbers, targets)]
