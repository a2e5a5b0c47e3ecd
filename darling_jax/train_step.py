"""The one DARLING train step: sample → quality → classify pairs → partition → diversity → reward → GRPO update.

    step_fn = TrainStep(graphdef, update, task, quality, diversity_context, tokenizer, config, eos_ids=..., mesh=...)
    state, metrics, rollouts = step_fn(state, batch, step)

Every stage is a building block of its own module; this file only composes them, and names no task:

1. `darling_jax.sampling.generate`: G samples per prompt with the current policy, keys `fold_in(rng, step)`.
2. `quality` (`darling_jax.quality.Quality`: the task's or the config's TRL-style reward functions) → quality
   `f32[B, G]`.
3. The diversity source (`config.diversity_source`, a name in `darling_jax.diversity.DIVERSITY_SOURCES`:
   `classifier` = the learned pair classifier + partition (arXiv 2509.02534 §3), `oracle` = the task's
   ground-truth classes, `ngram` = the lexical baseline) → diversity `f32[B, G]`.
4. The reward mode (`config.reward_mode`, a name in `darling_jax.rewards.REWARD_MODES`; DARLING: quality ×
   diversity, Eq. 5) → `darling_jax.grpo.group_advantages` (`r − mean_group(r)`, no std-normalisation).
5. With a reference policy (`grpo.kl_coef > 0`), its log-probs of the rollouts (`darling_jax.grpo.reference`);
   then `darling_jax.grpo.rollout_batch` → the sharded, donated `grpo_update` (`make_update_fn`).

Host work (text decoding, reward functions, pair packing) runs between the jitted stages; each stage's wall time
is reported (`time/*` metrics), so the classifier's share of a step is measured in every run.

Several processes (multi-controller JAX, a mesh over every process's devices): every process calls the step with
the same whole batch. Sampling is one SPMD computation over all prompts, their rows sharded over the mesh's
`data` × `fsdp` axes; each process then reads only the rows its devices hold (`sharding.process_rows`: its own
prompts and their G samples, whole groups) and decodes, scores, classifies and rewards those alone (stages 2-4 are
per process: no host sees every response). The update's batch is assembled from every process's rows
(`grpo.global_rollout_batch`), and the metrics are the whole batch's, the same on every process as one process
running all prompts would log.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from darling_jax import rewards, sharding
from darling_jax.config_sections import check_fields
from darling_jax.diversity.ngram import UNITS as NGRAM_UNITS
from darling_jax.diversity.sources import DIVERSITY_SOURCES, DiversityContext
from darling_jax.grpo import TrainState, global_rollout_batch, group_advantages, rollout_batch
from darling_jax.sampling import SampleOutput, decode_responses, generate


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Settings of one RL step (the `rl` section of a run config).

  Attributes:
    group_size: G samples per prompt (>= 2: advantages are relative to the group).
    max_new_tokens: N, the response width.
    temperature: sampling temperature (> 0), also used by the update's log-probs.
    top_p: nucleus sampling of the rollouts (1.0: off; the paper samples with top-p 1).
    diversity_source: a name in `DIVERSITY_SOURCES` ("classifier", "oracle", "ngram", or a plug-in).
    reward_mode: a name in `rewards.REWARD_MODES`: "multiplicative" (DARLING), "additive" or "quality_only"
      (GRPO).
    add_bias: `rewards.combine`'s per-group min-shift of quality (multiplicative only).
    diversity_weight: weight of diversity in "additive" mode.
    diversity_floor: the floor of `diversity_scores` (0.1 in the paper).
    normalize_std: divide advantages by the group std (GRPO: True; DARLING: False).
    ngram_n: n of the "ngram" source.
    ngram_unit: units of the "ngram" source's n-grams, "word" or "char" (`ngram_diversity`).
    prompts_per_sample_call: prompts per sampler call (0: the whole step's prompts in one call). Sampling holds
      a KV cache for every row of a call: at the paper's 256 prompts × 8 samples × 8,192 tokens of a 4B model
      that is 2.4 TB, so long responses are sampled in calls of fewer prompts (`python -m darling_jax.plan`
      shows what fits). Must divide the prompts per step.
  """

  group_size: int = 8
  max_new_tokens: int = 24
  temperature: float = 1.0
  top_p: float = 1.0
  diversity_source: str = "classifier"
  reward_mode: str = "multiplicative"
  add_bias: bool = False
  diversity_weight: float = 1.0
  diversity_floor: float = 0.1
  normalize_std: bool = False
  ngram_n: int = 4
  ngram_unit: str = "word"
  prompts_per_sample_call: int = 0

  def __post_init__(self):
    check_fields(self, "rl", (
        ("group_size", self.group_size >= 2, ">= 2"),
        ("max_new_tokens", self.max_new_tokens >= 1, ">= 1"),
        ("temperature", self.temperature > 0, "> 0"),
        ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
        ("diversity_source", self.diversity_source in DIVERSITY_SOURCES,
         f"one of {DIVERSITY_SOURCES.names()} (or a registered plug-in)"),
        ("reward_mode", self.reward_mode in rewards.REWARD_MODES,
         f"one of {rewards.REWARD_MODES.names()} (or a registered plug-in)"),
        ("diversity_floor", 0 <= self.diversity_floor <= 1, "in [0, 1]"),
        ("ngram_n", self.ngram_n >= 1, ">= 1"),
        ("ngram_unit", self.ngram_unit in NGRAM_UNITS, f"one of {NGRAM_UNITS}"),
        ("prompts_per_sample_call", self.prompts_per_sample_call >= 0, ">= 0 (0: all prompts in one call)"),
    ))


@dataclasses.dataclass
class Rollouts:
  """One step's rollouts and their rewards, on host (for logging and evaluation): this process's prompts (with
  several processes, those it sampled and scored; with one, the whole batch).

  prompts: B prompt texts. texts: B lists of G decoded responses. quality, diversity, rewards, advantages: f32
  `[B, G]`. class_ids: int32 `[B, G]` the partition used for diversity (None for a source without one).
  oracle_class_ids: int32 `[B, G]` the task's ground truth (None for a task without one).
  """

  prompts: list[str]
  texts: list[list[str]]
  quality: np.ndarray
  diversity: np.ndarray
  rewards: np.ndarray
  advantages: np.ndarray
  class_ids: np.ndarray | None
  oracle_class_ids: np.ndarray | None


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


def select_prompts(batch: dict[str, Any], indices: np.ndarray) -> dict[str, Any]:
  """The loader batch of the prompts at `indices` (every column: numpy arrays and lists alike)."""
  return {key: value[indices] if isinstance(value, np.ndarray) else [value[i] for i in indices]
          for key, value in batch.items()}


def process_mean(values: dict[str, float]) -> dict[str, float]:
  """Each value's mean over the JAX processes (each passes the same keys; float32 on the way); with one process,
  `values` itself."""
  if jax.process_count() == 1:
    return values
  gathered = multihost_utils.process_allgather(np.asarray(list(values.values()), np.float32))  # [processes, K]
  return dict(zip(values, map(float, gathered.mean(axis=0)), strict=True))


class TrainStep:
  """`step_fn(state, batch, step) -> (state, metrics, rollouts)`: one DARLING/GRPO step (see module doc).

  Args:
    graphdef: the policy's `nnx.GraphDef`.
    update: `grpo.make_update_fn(...)` (sharded, donates the state).
    task: a `darling_jax.tasks.Task` (prompts, reward columns, ground truth, task metrics).
    quality: `darling_jax.quality.Quality`, the run's reward functions.
    diversity: the `DiversityContext` of the configured source (its classifier, the task's oracle, ...).
    tokenizer: the policy's tokenizer (encodes prompts through the task, decodes responses).
    config: `StepConfig`.
    eos_ids: token ids that end a response.
    mesh: the update's mesh (the sampler's prompt rows are sharded over its data axes). It may span several
      processes (see the module doc): then every process calls the step, and the prompts per step must be a
      multiple of the data × fsdp size, so that each device, and each process, samples whole groups.
    reference_logprobs: `(input_ids, attention_mask, N) -> f32 [R, N]` log-probs of the rollouts' response tokens
      under the frozen reference policy (`darling_jax.grpo.make_reference_logprobs`), or None (no KL term).
  """

  def __init__(self, graphdef: nnx.GraphDef, update: Callable, task, quality, diversity: DiversityContext,
               tokenizer, config: StepConfig, *, eos_ids: Sequence[int], mesh: jax.sharding.Mesh,
               reference_logprobs: Callable | None = None):
    self.graphdef, self.update, self.task, self.quality = graphdef, update, task, quality
    self.diversity_context, self.tokenizer, self.config = diversity, tokenizer, config
    self.eos_ids, self.mesh, self.reference_logprobs = tuple(eos_ids), mesh, reference_logprobs
    self.diversity_source = DIVERSITY_SOURCES.get(config.diversity_source)
    self._rewards_and_advantages = jax.jit(functools.partial(
        rewards_and_advantages, mode=config.reward_mode, add_bias=config.add_bias,
        diversity_weight=config.diversity_weight, normalize_std=config.normalize_std))

  def prompt_sharding(self, num_prompts: int) -> jax.sharding.Sharding | None:
    """The sampler's sharding of `num_prompts` prompt rows: over the mesh's data axes when they divide evenly,
    else (one process only) None, unsharded."""
    data_size = sharding.data_parallel_size(self.mesh)
    if num_prompts % data_size == 0 and (data_size > 1 or self.mesh.is_multi_process):
      return sharding.batch_sharding(self.mesh, 2)
    if self.mesh.is_multi_process:
      raise ValueError(f"{num_prompts} prompts do not split evenly over the mesh's {data_size} data x fsdp shards: "
                       "with several processes each process samples whole groups of its own prompts, so the "
                       f"prompts per step must be a multiple of {data_size}")
    return None

  def sample(self, params: nnx.State, batch: dict[str, Any], rng: jax.Array, *, num_samples: int,
             temperature: float, top_p: float = 1.0) -> SampleOutput:
    """`SampleOutput` of the policy with `params` for the batch's prompts (global arrays, rows sharded by
    `prompt_sharding`; with several processes every process passes the same batch and key)."""
    model = nnx.merge(self.graphdef, params)
    return generate(model, self.task.prompt_ids(batch, self.tokenizer), num_samples=num_samples,
                    max_new_tokens=self.config.max_new_tokens, eos_ids=self.eos_ids, rng=rng,
                    temperature=temperature, top_p=top_p, batch_sharding=self.prompt_sharding(len(batch["prompt"])))

  def sample_texts(self, params: nnx.State, batch: dict[str, Any], rng: jax.Array, *, num_samples: int,
                   temperature: float, top_p: float = 1.0) -> list[list[str]]:
    """B lists of `num_samples` decoded responses (for evaluation: with several processes, every process
    gathers and decodes all of them)."""
    sample = self.sample(params, batch, rng, num_samples=num_samples, temperature=temperature, top_p=top_p)
    tokens, mask = multihost_utils.process_allgather((sample.tokens, sample.mask), tiled=True)  # global arrays: whole
    return decode_responses(self.tokenizer, tokens, mask, self.eos_ids, num_samples)

  def process_sample(self, sample: SampleOutput) -> tuple[SampleOutput, np.ndarray]:
    """`(local sample, prompt indices)`: this process's part of a global `sample`, as host arrays: the batch
    indices of the prompts its devices hold (ascending), their prompt rows and their G sampled rows each. With one
    process, the whole sample."""
    rows = {field.name: sharding.process_rows(getattr(sample, field.name))
            for field in dataclasses.fields(SampleOutput)}
    prompts = rows["prompt_tokens"][0]
    groups = (prompts[:, None] * sample.num_samples + np.arange(sample.num_samples)).reshape(-1)
    for name, (indices, _) in rows.items():
      if not np.array_equal(indices, prompts if name.startswith("prompt") else groups):
        raise RuntimeError(f"process {jax.process_index()} holds sample rows of {name} that are not the groups of "
                           f"its prompts {prompts.tolist()}: the sample is not sharded like its prompts")
    return SampleOutput(**{name: values for name, (_, values) in rows.items()}), prompts

  def sample_own_groups(self, params: nnx.State, batch: dict[str, Any], rng: jax.Array
                        ) -> tuple[SampleOutput, np.ndarray]:
    """`process_sample` of the step's rollouts: this process's groups (host arrays) and their prompts' batch
    indices, sampled in calls of `prompts_per_sample_call` prompts (call c with key `fold_in(rng, c)`; a single
    call uses `rng` itself). Prompts of different calls are left-padded to the widest call's width."""
    c = self.config
    num_prompts = len(batch["prompt"])
    per_call = c.prompts_per_sample_call or num_prompts
    if num_prompts % per_call:
      raise ValueError(f"rl.prompts_per_sample_call={per_call} does not divide the step's {num_prompts} prompts")
    parts = []
    for call, start in enumerate(range(0, num_prompts, per_call)):
      chunk = batch if per_call == num_prompts else select_prompts(batch, np.arange(start, start + per_call))
      key = rng if per_call == num_prompts else jax.random.fold_in(rng, call)
      local, prompts = self.process_sample(self.sample(params, chunk, key, num_samples=c.group_size,
                                                       temperature=c.temperature, top_p=c.top_p))
      parts.append((local, prompts + start))
    if len(parts) == 1:
      return parts[0]
    width = max(part.prompt_tokens.shape[1] for part, _ in parts)
    left_pad = lambda x: np.pad(x, ((0, 0), (width - x.shape[1], 0)))  # noqa: E731  prompts are left-padded
    merged = {field.name: np.concatenate([
        left_pad(getattr(part, field.name)) if field.name.startswith("prompt") else getattr(part, field.name)
        for part, _ in parts]) for field in dataclasses.fields(SampleOutput)}
    return SampleOutput(**merged), np.concatenate([prompts for _, prompts in parts])

  def score(self, batch: dict[str, Any], texts: Sequence[Sequence[str]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`(quality f32 [B, G], per-function values)` of responses to `batch` (the run's reward functions)."""
    return self.quality(self.task.prompts(batch), texts, self.task.reward_columns(batch))

  def __call__(self, state: TrainState, batch: dict[str, Any], step: int
               ) -> tuple[TrainState, dict[str, float], Rollouts]:
    """One step on the loader `batch` (the step's whole batch, the same on every process): the new state, the
    whole batch's metrics (the same on every process) and this process's rollouts.

    Per process: decoding, quality, oracle classes, diversity, rewards and advantages of its own prompts' groups
    (`process_sample`), and its rows of the update's batch. Global (SPMD over the mesh): sampling, the reference
    log-probs and the update. Metrics: the whole batch's rewards, lengths and classes are gathered (`gather_rows`,
    a few numbers per response) and reduced as one process would; the task's `rollout_metrics` (means over
    prompts) and the stage times are each process's, averaged over processes (`process_mean`).
    """
    c = self.config
    timings = {}
    started = time.perf_counter()
    sample, prompts = self.sample_own_groups(state.params, batch, jax.random.fold_in(state.rng, step))
    timings["sample"] = time.perf_counter() - started

    started = time.perf_counter()
    if len(prompts) != len(batch["prompt"]):
      batch = select_prompts(batch, prompts)  # from here on, this process's prompts only
    texts = decode_responses(self.tokenizer, sample.tokens, sample.mask, self.eos_ids, c.group_size)
    quality, per_function = self.score(batch, texts)
    oracle = self.task.oracle_classes(texts, batch)
    timings["quality"] = time.perf_counter() - started

    started = time.perf_counter()
    diversity, class_ids = self.diversity_source(texts, batch, self.diversity_context)
    diversity = np.asarray(diversity, np.float32)
    timings["diversity"] = time.perf_counter() - started

    started = time.perf_counter()
    reward, advantages = self._rewards_and_advantages(quality, diversity)
    rows = global_rollout_batch(jax.device_get(rollout_batch(sample, advantages)), self.mesh)
    timings["reward"] = time.perf_counter() - started
    if self.reference_logprobs is not None:
      started = time.perf_counter()
      rows = rows.replace(ref_logp=self.reference_logprobs(rows.input_ids, rows.attention_mask,
                                                            rows.num_response_tokens))
      timings["reference"] = time.perf_counter() - started

    started = time.perf_counter()
    state, update_metrics = self.update(state, rows)
    update_metrics = {k: float(v) for k, v in jax.device_get(update_metrics).items()}
    timings["update"] = time.perf_counter() - started

    reward, advantages = np.asarray(reward), np.asarray(advantages)
    rollouts = Rollouts(self.task.prompts(batch), texts, quality, diversity, reward, advantages, class_ids, oracle)
    timings["step"] = sum(timings.values())
    timings["diversity_share"] = timings["diversity"] / timings["step"]
    task_metrics = self.task.rollout_metrics(texts, quality, batch, oracle)
    per_process = process_mean({**task_metrics, **{f"time/{k}": v for k, v in timings.items()}})
    every = sharding.gather_rows(  # the whole batch's per-response values (one process: its own)
        {"reward": reward, "quality": quality, "diversity": diversity, "advantages": advantages,
         "lengths": sample.mask.sum(axis=1, dtype=np.int32), "per_function": per_function,
         **({"class_ids": class_ids} if class_ids is not None else {})}, self.mesh)
    metrics = {
        "reward": float(every["reward"].mean()),
        "quality": float(every["quality"].mean()),
        "diversity": float(every["diversity"].mean()),
        "response_length": float(every["lengths"].mean()),
        "advantage_abs": float(np.abs(every["advantages"]).mean()),
        **{k: per_process[k] for k in task_metrics},
        **{f"update/{k}": v for k, v in update_metrics.items()},
    }
    if len(per_function) > 1:
      metrics.update({f"quality/{name}": float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
                      for name, values in every["per_function"].items()})
    if class_ids is not None:
      metrics["classes"] = float(count_classes(every["class_ids"]).mean())
    metrics.update({k: v for k, v in per_process.items() if k not in task_metrics})  # time/*
    return state, metrics, rollouts


def tree_size(tree) -> int:
  """Number of scalars in a pytree."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def finite_or_raise(metrics: dict[str, float], step: int) -> None:
  """Stops a run whose loss went NaN/inf, naming the metric and the step."""
  for name, value in metrics.items():
    if not np.isfinite(value):
      raise FloatingPointError(f"metric {name!r} is {value} at step {step}: stopping (no NaN is trained on)")
