"""The one DARLING train step: sample → quality → classify pairs → partition → diversity → reward → GRPO update.

    step_fn = TrainStep(graphdef, update, task, equivalence, tokenizer, config)
    state, metrics, rollouts = step_fn(state, prompts, step)

Every stage is a building block of its own module; this file only composes them:

1. `darling_jax.sampling.generate`: G samples per prompt with the current policy, keys `fold_in(rng, step)`.
2. `task.quality` (e.g. Countdown: 1 for an exact solution, else 0) → quality `f32[B, G]`.
3. The diversity source (`config.diversity_source`):
   - `"classifier"`: the batched pairwise kernel (`darling_jax.equivalence.EquivalenceClassifier`) decides
     which responses are equivalent, `darling_jax.diversity.partition` takes connected components;
   - `"oracle"`: the task's ground-truth classes (Countdown: canonical forms), for ablations;
   - `"ngram"`: `darling_jax.diversity.ngram_diversity` (the paper's lexical ablation, no partition).
   Classes → `darling_jax.diversity.diversity_scores` → diversity `f32[B, G]`.
4. `darling_jax.rewards.combine(quality, diversity, mode=...)` → `darling_jax.grpo.group_advantages`.
5. `darling_jax.grpo.rollout_batch` → the sharded, donated `grpo_update` (`make_update_fn`).

Host work (text decoding, parsing, pair packing) runs between the jitted stages; each stage's wall time is
reported (`time/*` metrics), so the classifier kernel's share of a step is measured in every run.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import numpy as np
from flax import nnx

from darling_jax import rewards, sharding
from darling_jax.diversity import diversity_scores, ngram_diversity, partition
from darling_jax.diversity.ngram import UNITS as NGRAM_UNITS
from darling_jax.grpo import TrainState, global_rollout_batch, group_advantages, rollout_batch
from darling_jax.sampling import decode_responses, generate

DIVERSITY_SOURCES = ("classifier", "oracle", "ngram")


class Task(Protocol):
  """What the train step needs from a task (see `darling_jax.tasks.countdown_task.CountdownTask`)."""

  def prompt_ids(self, batch: dict[str, Any]) -> list[list[int]]:
    """Token ids of each prompt of a loader batch (B lists)."""

  def quality(self, texts: Sequence[Sequence[str]], batch: dict[str, Any]) -> np.ndarray:
    """f32 `[B, G]` quality of each response."""

  def oracle_classes(self, texts: Sequence[Sequence[str]], batch: dict[str, Any]) -> np.ndarray:
    """int32 `[B, G]` ground-truth equivalence class of each response (labelled by its first member)."""


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Settings of one RL step (the `rl` section of a run config).

  Attributes:
    group_size: G samples per prompt (>= 2: advantages are relative to the group).
    max_new_tokens: N, the response width.
    temperature: sampling temperature (> 0), also used by the update's log-probs.
    diversity_source: one of `DIVERSITY_SOURCES`.
    reward_mode: `rewards.combine` mode: "multiplicative" (DARLING), "additive" or "quality_only" (GRPO).
    add_bias: `rewards.combine`'s per-group min-shift of quality (multiplicative only).
    diversity_weight: weight of diversity in "additive" mode.
    diversity_floor: the floor of `diversity_scores` (0.1 in the paper).
    normalize_std: divide advantages by the group std (GRPO: True; DARLING: False).
    ngram_n: n of the "ngram" source.
    ngram_unit: units of the "ngram" source's n-grams, "word" or "char" (`ngram_diversity`).
  """

  group_size: int = 8
  max_new_tokens: int = 24
  temperature: float = 1.0
  diversity_source: str = "classifier"
  reward_mode: str = "multiplicative"
  add_bias: bool = False
  diversity_weight: float = 1.0
  diversity_floor: float = 0.1
  normalize_std: bool = False
  ngram_n: int = 4
  ngram_unit: str = "word"

  def __post_init__(self):
    checks = (
        ("group_size", self.group_size >= 2, ">= 2"),
        ("max_new_tokens", self.max_new_tokens >= 1, ">= 1"),
        ("temperature", self.temperature > 0, "> 0"),
        ("diversity_source", self.diversity_source in DIVERSITY_SOURCES, f"one of {DIVERSITY_SOURCES}"),
        ("reward_mode", self.reward_mode in rewards.COMBINE_MODES, f"one of {rewards.COMBINE_MODES}"),
        ("diversity_floor", 0 <= self.diversity_floor <= 1, "in [0, 1]"),
        ("ngram_n", self.ngram_n >= 1, ">= 1"),
        ("ngram_unit", self.ngram_unit in NGRAM_UNITS, f"one of {NGRAM_UNITS}"),
    )
    for name, ok, requirement in checks:
      if not ok:
        raise ValueError(f"rl.{name} must be {requirement}, got {getattr(self, name)!r}")


@dataclasses.dataclass
class Rollouts:
  """One step's rollouts and their rewards, on host (for logging and evaluation).

  texts: B lists of G decoded responses. quality, diversity, rewards, advantages: f32 `[B, G]`.
  class_ids: int32 `[B, G]` the partition used for diversity (None for the "ngram" source).
  oracle_class_ids: int32 `[B, G]` the task's ground truth.
  """

  texts: list[list[str]]
  quality: np.ndarray
  diversity: np.ndarray
  rewards: np.ndarray
  advantages: np.ndarray
  class_ids: np.ndarray | None
  oracle_class_ids: np.ndarray


def rewards_and_advantages(quality: jax.Array, diversity: jax.Array, *, mode: str, add_bias: bool,
                           diversity_weight: float, normalize_std: bool) -> tuple[jax.Array, jax.Array]:
  """`(rewards, advantages)`, both f32 `[B, G]`: `rewards.combine` of quality and diversity `[B, G]`, then
  `grpo.group_advantages`. Jitted once per run by `TrainStep` (the keyword arguments are static)."""
  reward = rewards.combine(quality, diversity, mode=mode, add_bias=add_bias, diversity_weight=diversity_weight)
  return reward, group_advantages(reward, normalize_std=normalize_std)


def count_classes(class_ids: np.ndarray) -> np.ndarray:
  """int32 `[...]` number of distinct classes per group of `class_ids [..., G]`."""
  ordered = np.sort(class_ids, axis=-1)
  return 1 + np.sum(ordered[..., 1:] != ordered[..., :-1], axis=-1)


class TrainStep:
  """`step_fn(state, batch, step) -> (state, metrics, rollouts)`: one DARLING/GRPO step (see module doc).

  Args:
    graphdef: the policy's `nnx.GraphDef`.
    update: `grpo.make_update_fn(...)` (sharded, donates the state).
    task: a `Task`.
    equivalence: an `EquivalenceClassifier` (required for the "classifier" source), called on the groups.
    tokenizer: the policy's tokenizer (decodes responses).
    config: `StepConfig`.
    eos_ids: token ids that end a response.
    mesh: the update's mesh (the sampler's prompt rows are sharded over its data axes).
  """

  def __init__(self, graphdef: nnx.GraphDef, update: Callable, task: Task, equivalence, tokenizer,
               config: StepConfig, *, eos_ids: Sequence[int], mesh: jax.sharding.Mesh):
    if config.diversity_source == "classifier" and equivalence is None:
      raise ValueError("rl.diversity_source='classifier' needs an equivalence classifier")
    self.graphdef, self.update, self.task, self.equivalence = graphdef, update, task, equivalence
    self.tokenizer, self.config, self.eos_ids, self.mesh = tokenizer, config, tuple(eos_ids), mesh
    self._rewards_and_advantages = jax.jit(functools.partial(
        rewards_and_advantages, mode=config.reward_mode, add_bias=config.add_bias,
        diversity_weight=config.diversity_weight, normalize_std=config.normalize_std))

  def sample(self, params: nnx.State, batch: dict[str, Any], rng: jax.Array, *, num_samples: int,
             temperature: float):
    """`SampleOutput` of the policy with `params` for the batch's prompts."""
    model = nnx.merge(self.graphdef, params)
    rows_sharding = sharding.batch_sharding(self.mesh, 2)
    num_prompts = len(batch["prompt"])
    data_size = np.prod([self.mesh.shape[a] for a in sharding.BATCH_AXES])
    return generate(model, self.task.prompt_ids(batch), num_samples=num_samples,
                    max_new_tokens=self.config.max_new_tokens, eos_ids=self.eos_ids, rng=rng,
                    temperature=temperature,
                    batch_sharding=rows_sharding if num_prompts % data_size == 0 and data_size > 1 else None)

  def diversity(self, texts: list[list[str]], batch: dict[str, Any], oracle: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """(f32 `[B, G]` diversity, int32 `[B, G]` classes or None) from the configured source."""
    c = self.config
    if c.diversity_source == "ngram":
      return np.asarray(ngram_diversity(texts, n=c.ngram_n, unit=c.ngram_unit), np.float32), None
    if c.diversity_source == "oracle":
      class_ids = oracle
    else:
      equivalent, _ = self.equivalence(texts)
      class_ids = np.asarray(partition(equivalent))
    return np.asarray(diversity_scores(class_ids, floor=c.diversity_floor)), class_ids

  def __call__(self, state: TrainState, batch: dict[str, Any], step: int
               ) -> tuple[TrainState, dict[str, float], Rollouts]:
    c = self.config
    timings = {}
    started = time.perf_counter()
    sample = self.sample(state.params, batch, jax.random.fold_in(state.rng, step), num_samples=c.group_size,
                         temperature=c.temperature)
    tokens, mask = jax.device_get((sample.tokens, sample.mask))
    timings["sample"] = time.perf_counter() - started

    started = time.perf_counter()
    texts = decode_responses(self.tokenizer, tokens, mask, self.eos_ids, c.group_size)
    quality = np.asarray(self.task.quality(texts, batch), np.float32)
    oracle = np.asarray(self.task.oracle_classes(texts, batch), np.int32)
    timings["quality"] = time.perf_counter() - started

    started = time.perf_counter()
    diversity, class_ids = self.diversity(texts, batch, oracle)
    timings["diversity"] = time.perf_counter() - started

    started = time.perf_counter()
    reward, advantages = self._rewards_and_advantages(quality, diversity)
    rows = jax.device_get(rollout_batch(sample, advantages))
    state, update_metrics = self.update(state, global_rollout_batch(rows, self.mesh))
    update_metrics = {k: float(v) for k, v in jax.device_get(update_metrics).items()}
    timings["update"] = time.perf_counter() - started

    reward, advantages = np.asarray(reward), np.asarray(advantages)
    correct = quality > 0
    lengths = mask.sum(axis=1)
    metrics = {
        "reward": float(reward.mean()),
        "quality": float(quality.mean()),
        "pass_rate": float(correct.mean()),
        "diversity": float(diversity.mean()),
        "distinct_correct": float(np.mean([len(set(o[k])) for o, k in zip(oracle, correct)])),
        "oracle_classes": float(count_classes(oracle).mean()),
        "oracle_diversity": float(np.mean(diversity_scores(oracle, floor=c.diversity_floor))),
        "response_length": float(lengths.mean()),
        "advantage_abs": float(np.abs(advantages).mean()),
        **{f"update/{k}": v for k, v in update_metrics.items()},
        **{f"time/{k}": v for k, v in timings.items()},
    }
    if class_ids is not None:
      metrics["classes"] = float(count_classes(class_ids).mean())
    metrics["time/step"] = sum(timings.values())
    metrics["time/diversity_share"] = timings["diversity"] / metrics["time/step"]
    rollouts = Rollouts(texts, quality, diversity, reward, advantages, class_ids, oracle)
    return state, metrics, rollouts


def tree_size(tree) -> int:
  """Number of scalars in a pytree."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def finite_or_raise(metrics: dict[str, float], step: int) -> None:
  """Stops a run whose loss went NaN/inf, naming the metric and the step."""
  for name, value in metrics.items():
    if not np.isfinite(value):
      raise FloatingPointError(f"metric {name!r} is {value} at step {step}: stopping (no NaN is trained on)")

