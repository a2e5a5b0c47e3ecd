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

if __name__ == "__main__":  # huge-page malloc for XLA's per-call temporaries (darling_jax.runtime), before imports
  from darling_jax import runtime
  runtime.reexec_with_huge_pages()

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
from darling_jax.data import prompt_loader
from darling_jax.diversity.sources import DiversityContext
from darling_jax.grpo import (init_train_state, make_optimizer, make_reference_logprobs, make_update_fn,
                              rollout_batch_shardings, train_state_shardings)
from darling_jax.models import save_pretrained
from darling_jax.run_settings import EvalSettings, parse_config, quality_functions
from darling_jax.stages import classifier_stage, policy_stage
from darling_jax.tasks import EvalContext
from darling_jax.train_step import TrainStep, finite_or_raise

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
  """Loader batches of the task's evaluation split, `num_problems` prompts in all (fewer if it has fewer); the
  same batches on every process (the sampler runs over each whole batch)."""
  loader = prompt_loader(data.eval, data.eval_split, batch_size=settings.prompts_per_batch, seed=0, shuffle=False,
                         num_epochs=1, shard_index=0, shard_count=1)
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
  quality = quality_functions(task, run.quality, mesh=mesh)
  check_quality_on_a_prompt(task, quality, data)
  policy = policy_stage(workdir / "policy_sft", run.policy, task, data, seed=config.seed, mesh=mesh)
  task.check_tokenizer(policy.tokenizer, policy.source)
  equivalence, classifier_info = None, {}
  if run.step.diversity_source == "classifier" or run.eval.classifier_accuracy:
    equivalence, classifier_info = classifier_stage(workdir / "classifier", run.classifier, task, data,
                                                    seed=config.seed)

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
    reference_logprobs = make_reference_logprobs(graphdef, reference_params, mesh, temperature=run.step.temperature,
                                                 chunk_size=run.update.logprob_chunk_size,
                                                 microbatch_size=run.update.microbatch_size)
  update = make_update_fn(graphdef, state_sharding, rollout_batch_shardings(mesh, with_ref_logp=with_reference),
                          run.update)
  diversity = DiversityContext(floor=run.step.diversity_floor, equivalence=equivalence,
                               oracle_classes=task.oracle_classes, ngram_n=run.step.ngram_n,
                               ngram_unit=run.step.ngram_unit)
  step_fn = TrainStep(graphdef, update, task, quality, diversity, policy.tokenizer, run.step,
                      eos_ids=policy.eos_ids, mesh=mesh, reference_logprobs=reference_logprobs)
  base_eval = None
  if run.eval.base_policy:
    base_eval = _cached_json(workdir / "base_eval.json", lambda: evaluate_policy(
        step_fn, state.params, data, run.eval, equivalence, seed=config.seed, seed_offset=1))

  # Every process reads each step's whole batch (one shard: the same prompts and iterator position everywhere, so
  # process 0's saved position resumes them all); `TrainStep` samples it as one SPMD computation and each process
  # scores only its own prompts' groups.
  loader = prompt_loader(data.train, data.train_split, batch_size=run.prompts_per_step, seed=config.seed,
                         shard_index=0, shard_count=1)
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


def check_quality_on_a_prompt(task, quality, data) -> None:
  """Runs the reward functions once on the first training prompt (an empty and a one-word completion), so a
  function that raises, or returns the wrong number of values or a non-number, fails before any training."""
  loader = prompt_loader(data.train, data.train_split, batch_size=1, seed=0, shuffle=False, num_epochs=1,
                         prefetch_batches=0)
  batch = next(iter(loader))
  quality(task.prompts(batch), [["", "answer"]], task.reward_columns(batch))


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
