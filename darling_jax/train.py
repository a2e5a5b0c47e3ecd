"""The main job: DARLING (or GRPO) on a task's prompts with a policy, from an empty workdir to an evaluated policy.

    python -m darling_jax.train --config configs/default.py --workdir /tmp/darling
    python -m darling_jax.train --config configs/smollm2_math.py --workdir /tmp/math --config.rl.steps=100

or, from a notebook, `train_and_evaluate(config, workdir)`. The task (`config.task.name`: a registered task or a
plug-in, see `darling_jax.tasks`) supplies the prompts, quality, ground truth and evaluation; the policy is a
checkpoint (`config.policy.checkpoint`: HF directory or `.gguf`) or the task's own. Stages a run needs and does
not find in `workdir` are run and cached there, so a second run reuses them:

  workdir/data/           the task's prompt sets (tensorflow-datasets builders, array_record; never downloads)
  workdir/policy_sft/     the task's warm start, or its own initial policy (HF directory, `load_pretrained`)
  workdir/classifier/     the pair classifier, when trained here (HF directory + darling.json with its threshold)
  workdir/policy_final/   the policy after RL (HF directory with its tokenizer; transformers loads it)
  workdir/checkpoints/    orbax checkpoints of the RL run (params, optimizer, step, rng, data iterator, config)
  workdir/metrics.jsonl   one JSON line per RL step; workdir/tensorboard/ the same as TensorBoard events
  workdir/rollouts.jsonl  every `log.rollouts_every` steps, each prompt with its G responses and their rewards
  workdir/training_curves.png, workdir/summary.json

Every config error (an unknown key, task, reward function or diversity source, a missing checkpoint, a KL
term with nothing to reference, a tokenizer without the chat template the task needs) is raised before any
stage runs. An interrupted run (Ctrl-C saves a checkpoint and exits cleanly; a killed one loses at most the
steps since its last checkpoint) resumes from its last checkpoint with the same data order and rollout keys.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import app, flags, logging
from flax import nnx
from ml_collections import config_flags

from darling_jax import reporting, sharding
from darling_jax.checkpointing import Checkpointer, with_shardings
from darling_jax.config_sections import dataclass_from_section
from darling_jax.data import prompt_loader
from darling_jax.diversity.sources import DiversityContext
from darling_jax.grpo import (UpdateConfig, init_train_state, make_optimizer, make_reference_logprobs,
                              make_update_fn, rollout_batch_shardings, train_state_shardings)
from darling_jax.models import save_pretrained
from darling_jax.quality import Quality, RewardModel
from darling_jax.stages import ClassifierSettings, PolicySettings, classifier_stage, policy_stage
from darling_jax.tasks import EvalContext, Task, make_task
from darling_jax.train_step import StepConfig, TrainStep, finite_or_raise

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
  """

  functions: tuple[str, ...] = ()
  weights: tuple[float, ...] = ()
  reward_model: str = ""
  reward_model_max_length: int = 1024
  reward_model_batch_size: int = 8

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
  if update.kl_coef > 0 and not policy.checkpoint and not task.warm_start_enabled():
    raise ValueError(f"grpo.kl_coef={update.kl_coef} > 0 needs a reference policy, but the policy starts from a "
                     f"random initialisation: set policy.checkpoint, or use a task warm start")
  needs_classifier = step.diversity_source == "classifier"
  if needs_classifier and classifier.source(task) is None:
    raise ValueError(f"rl.diversity_source='classifier' needs a pair classifier: set classifier.path (an HF "
                     f"directory), or classifier.train_pairs and classifier.encoder (task {task.name!r} trains "
                     "none of its own)")
  if step.diversity_source == "oracle" and type(task).oracle_classes is Task.oracle_classes:
    raise ValueError(f"rl.diversity_source='oracle' needs ground-truth classes, which task {task.name!r} has not")
  quality_functions(task, quality, mesh=None, check_only=True)
  return RunSettings(task, policy, quality, classifier, step, update, evaluation, int(config.rl.steps),
                     int(config.rl.prompts_per_step))


def quality_functions(task: Task, settings: QualitySettings, *, mesh, check_only: bool = False) -> Quality | None:
  """The run's `Quality`: `quality.functions` (with `quality.weights`), or the task's default."""
  if not settings.functions:
    return None if check_only else Quality(task.quality_functions())
  weights = settings.weights or (1.0,) * len(settings.functions)
  entries = []
  for name, weight in zip(settings.functions, weights):
    if name == "reward_model":
      entries.append((None if check_only else RewardModel(
          settings.reward_model, mesh=mesh, max_length=settings.reward_model_max_length,
          batch_size=settings.reward_model_batch_size), weight))
    else:
      from darling_jax.quality import REWARD_FUNCTIONS
      entries.append((REWARD_FUNCTIONS.get(name), weight))  # unknown names raise here
  return None if check_only else Quality(entries)


def check_workdir(workdir: str | os.PathLike) -> pathlib.Path:
  """The workdir, created if missing; one clear error if it cannot be written."""
  workdir = pathlib.Path(workdir).expanduser().resolve()
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    probe = workdir / ".write_probe"
    probe.write_text("ok")
    probe.unlink()
  except OSError as error:
    raise PermissionError(f"workdir {str(workdir)!r} is not writable: {error.strerror or error}") from None
  return workdir


def make_run_mesh(config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
  """The `("data", "fsdp", "tensor")` mesh of `config.mesh`; `data = -1` takes every remaining device."""
  data, fsdp, tensor = (int(config.mesh[k]) for k in ("data", "fsdp", "tensor"))
  if data == -1:
    data = max(1, jax.device_count() // (fsdp * tensor))
  return sharding.make_mesh(data, fsdp, tensor)


class _StopRequest:
  """SIGINT (Ctrl-C) sets a flag the loop checks between steps: the step in flight finishes, a checkpoint is
  saved and the run exits cleanly. A second Ctrl-C interrupts at once."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    def handler(signum, frame):
      if self.requested:
        raise KeyboardInterrupt
      self.requested = True
      print("\nCtrl-C: finishing this step, saving a checkpoint, then stopping (Ctrl-C again to abort)",
            file=sys.stderr, flush=True)
    try:
      self._previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (e.g. some notebook runners): no handler
      self._previous = None
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGINT, self._previous)


def eval_batches(data, settings: EvalSettings):
  """Loader batches of the task's evaluation split, `num_problems` prompts in all (fewer if it has fewer)."""
  loader = prompt_loader(data.eval, data.eval_split, batch_size=settings.prompts_per_batch, seed=0, shuffle=False,
                         num_epochs=1)
  remaining = settings.num_problems
  for batch in loader:
    if remaining <= 0:
      break
    if len(batch["prompt"]) > remaining:
      batch = {k: v[:remaining] for k, v in batch.items()}
    remaining -= len(batch["prompt"])
    yield batch


def evaluate_policy(step_fn: TrainStep, params, data, settings: EvalSettings, equivalence, *, seed: int,
                    seed_offset: int) -> dict[str, float]:
  """The task's evaluation of the policy with `params` (`Task.evaluate`)."""
  rng = jax.random.fold_in(jax.random.key(seed), seed_offset)
  calls = iter(range(1 << 30))

  def sample(batch, num_samples):
    key = jax.random.fold_in(rng, next(calls))
    return step_fn.sample_texts(params, batch, key, num_samples=num_samples, temperature=settings.temperature,
                                top_p=settings.top_p)

  context = EvalContext(sample=sample, quality=lambda batch, texts: step_fn.score(batch, texts)[0],
                        batches=lambda: eval_batches(data, settings), num_samples=settings.num_samples,
                        equivalence=equivalence if settings.classifier_accuracy else None)
  return step_fn.task.evaluate(context)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
  """Runs every stage of `config` in `workdir` (see the module docstring) and returns the summary dict."""
  started = time.perf_counter()
  run = parse_config(config)
  task = run.task
  workdir = check_workdir(workdir)
  tfds.disable_progress_bar()
  mesh = make_run_mesh(config)

  # ---- stages (cached in workdir)
  data = task.prepare_data(workdir / "data")
  policy = policy_stage(workdir / "policy_sft", run.policy, task, data, seed=config.seed, mesh=mesh)
  task.check_tokenizer(policy.tokenizer, policy.source)
  equivalence, classifier_info = None, {}
  if run.step.diversity_source == "classifier" or run.eval.classifier_accuracy:
    equivalence, classifier_info = classifier_stage(workdir / "classifier", run.classifier, task, data,
                                                    seed=config.seed)
  quality = quality_functions(task, run.quality, mesh=mesh)

  # ---- RL state, sharded update, reference policy, checkpoints
  model = policy.model
  optimizer = make_optimizer(run.update)
  graphdef = nnx.graphdef(model)
  state = init_train_state(model, optimizer, jax.random.key(config.seed))
  state_sharding = train_state_shardings(state, optimizer, mesh)
  state = jax.device_put(state, state_sharding)
  with_reference = run.update.kl_coef > 0
  reference_logprobs = None
  if with_reference:  # a copy of the starting parameters, in the policy's shardings; never updated
    reference_params = jax.jit(lambda params: jax.tree.map(jnp.copy, params),
                               out_shardings=state_sharding.params)(state.params)
    reference_logprobs = make_reference_logprobs(graphdef, reference_params, mesh, temperature=run.step.temperature)
  update = make_update_fn(graphdef, state_sharding, rollout_batch_shardings(mesh, with_ref_logp=with_reference),
                          run.update)
  diversity = DiversityContext(floor=run.step.diversity_floor, equivalence=equivalence,
                               oracle_classes=task.oracle_classes, ngram_n=run.step.ngram_n,
                               ngram_unit=run.step.ngram_unit)
  step_fn = TrainStep(graphdef, update, task, quality, diversity, policy.tokenizer, run.step,
                      eos_ids=policy.eos_ids, mesh=mesh, reference_logprobs=reference_logprobs)
  _check_quality_on_a_batch(step_fn, data)
  base_eval = None
  if run.eval.base_policy:
    base_eval = _cached_json(workdir / "base_eval.json", lambda: evaluate_policy(
        step_fn, state.params, data, run.eval, equivalence, seed=config.seed, seed_offset=1))

  loader = prompt_loader(data.train, data.train_split, batch_size=run.prompts_per_step, seed=config.seed)
  iterator = iter(loader)
  checkpoints = Checkpointer(workdir / "checkpoints", max_to_keep=config.checkpoint.keep,
                             save_interval_steps=config.checkpoint.every)
  start_step = 0
  if checkpoints.latest_step() is not None:
    state, data_state, _ = checkpoints.restore(with_shardings(state, state_sharding))
    iterator.set_state(data_state)
    start_step = int(state.step)
    print(f"resumed from {checkpoints.directory} at step {start_step}", flush=True)
  resume_step = start_step if start_step else None
  log = reporting.MetricsLog(workdir, resume_step=resume_step, tensorboard=config.log.tensorboard)
  rollout_log = reporting.RolloutLog(workdir, every=int(config.log.get("rollouts_every", 0)),
                                     resume_step=resume_step)

  # ---- the RL loop
  num_steps = run.steps
  stopped_early = False
  from tqdm import tqdm
  bar = tqdm(total=num_steps, initial=start_step, desc="RL", unit="step", disable=not config.log.progress_bar,
             dynamic_ncols=True)
  try:
    with _StopRequest() as stop:
      for step in range(start_step, num_steps):
        batch = next(iterator)
        state, metrics, rollouts = step_fn(state, batch, step)
        finite_or_raise(metrics, step)
        log.write(step + 1, metrics)
        rollout_log.write(step + 1, rollouts)
        bar.set_postfix(reporting.progress_postfix(metrics), refresh=False)
        bar.update(1)
        checkpoints.save(step + 1, state, data_state=iterator.get_state(), config=config.to_dict(),
                         force=stop.requested or step + 1 == num_steps)
        if stop.requested:
          stopped_early = True
          break
  finally:
    bar.close()
    checkpoints.wait()
    log.close()
    rollout_log.close()
  checkpoints.close()
  if stopped_early:
    print(f"stopped at step {int(state.step)}; checkpoint saved in {checkpoints.directory}; run again to resume")
    return {"stopped_at_step": int(state.step)}

  # ---- the trained policy, evaluation, plots, summary
  save_pretrained(nnx.merge(graphdef, state.params), str(workdir / "policy_final"), tokenizer=policy.tokenizer)
  final_eval = evaluate_policy(step_fn, state.params, data, run.eval, equivalence, seed=config.seed, seed_offset=2)
  rows = reporting.read_metrics(workdir / reporting.METRICS_FILE)
  last = rows[-min(len(rows), 5):]
  train_tail = {k: float(np.mean([r[k] for r in last if k in r])) for k in _summary_keys(last)} if last else {}
  plot = reporting.plot_training_curves(workdir / reporting.METRICS_FILE, workdir / "training_curves.png",
                                        title=f"{config.name}: {run.step.reward_mode}, {run.step.diversity_source}",
                                        curves=task.curves)
  summary = {"config": config.name, "task": task.name, "steps": num_steps, "train_last_5_steps": train_tail,
             "eval_base_policy": base_eval, "eval_final_policy": final_eval,
             "stages": {"policy": policy.info, "classifier": classifier_info},
             "wall_seconds": time.perf_counter() - started, "plot": str(plot)}
  (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
  sections = {f"train (mean of last {len(last)} steps)": train_tail}
  if base_eval:
    sections["eval: starting policy (before RL)"] = base_eval
  sections["eval: final policy"] = final_eval
  print("\n" + reporting.summary_table(sections))
  print(f"\nplots: {plot}\nmetrics: {workdir / reporting.METRICS_FILE} (TensorBoard: {workdir / 'tensorboard'})"
        f"\nwall time {summary['wall_seconds']:.0f}s")
  return summary


def _summary_keys(rows: list[dict[str, float]]) -> list[str]:
  """The metrics of the summary's train block: all but the step, the per-stage times and most update terms."""
  keep = ("time/step", "time/diversity_share", "update/kl", "update/entropy")
  return [k for k in rows[-1] if k != "step" and (k in keep or not k.startswith(("time/", "update/")))]


def _check_quality_on_a_batch(step_fn: TrainStep, data) -> None:
  """Runs the reward functions once on a training prompt (an empty and a one-word completion), so a function
  that returns the wrong number of values or a non-number fails before training starts."""
  loader = prompt_loader(data.train, data.train_split, batch_size=1, seed=0, shuffle=False, num_epochs=1,
                         prefetch_batches=0)
  batch = next(iter(loader))
  step_fn.score(batch, [["", "answer"]])


def _cached_json(path: pathlib.Path, compute):
  if path.exists():
    return json.loads(path.read_text())
  value = compute()
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(value, indent=2))
  os.replace(tmp, path)
  return value


_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (created; stages and checkpoints are cached there).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if _CONFIG.value is None:
    raise app.UsageError("--config is required, e.g. --config configs/default.py")
  if not flags.FLAGS.workdir:
    raise app.UsageError("--workdir is required")
  logging.set_verbosity(logging.WARNING)
  train_and_evaluate(_CONFIG.value, flags.FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
