"""The main job: DARLING (or GRPO) on Countdown, from an empty workdir to an evaluated policy.

    python -m darling_jax.train --config configs/default.py --workdir /tmp/darling
    python -m darling_jax.train --config configs/default.py --workdir /tmp/darling --config.rl.group_size=16

or, from a notebook, `train_and_evaluate(config, workdir)`. Stages a run needs and does not find in `workdir`
are run and cached there, so a second run reuses them:

  workdir/data/           the Countdown dataset (tensorflow-datasets builder, array_record; never downloads)
  workdir/policy_sft/     the supervised warm start of the tiny policy (HF directory, `load_pretrained`)
  workdir/classifier/     the task's pair classifier (HF directory + darling.json with its threshold)
  workdir/policy_final/   the policy after RL (HF directory)
  workdir/checkpoints/    orbax checkpoints of the RL run (params, optimizer, step, rng, data iterator, config)
  workdir/metrics.jsonl   one JSON line per RL step; workdir/tensorboard/ the same as TensorBoard events
  workdir/training_curves.png, workdir/summary.json

An interrupted run (Ctrl-C saves a checkpoint and exits cleanly; a killed one loses at most the steps since
its last checkpoint) resumes from its last checkpoint with the same data order and rollout keys.
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
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import app, flags, logging
from flax import nnx
from ml_collections import config_flags

from darling_jax import reporting, sharding
from darling_jax.checkpointing import Checkpointer, with_shardings
from darling_jax.data import prepare_countdown, prompt_loader
from darling_jax.data.loader import decode_record
from darling_jax.equivalence.pairwise import EquivalenceClassifier
from darling_jax.evaluation.countdown import evaluate_countdown
from darling_jax.models import save_pretrained
from darling_jax.grpo import (UpdateConfig, init_train_state, make_optimizer, make_update_fn,
                              rollout_batch_shardings, train_state_shardings)
from darling_jax.sampling import decode_responses
from darling_jax.train_step import StepConfig, TrainStep, finite_or_raise
from darling_jax.train_stages import countdown_classifier_stage, policy_stage
from darling_jax.tasks.char_tokenizer import countdown_tokenizer
from darling_jax.tasks.countdown_task import CountdownTask

def section(config: ml_collections.ConfigDict, name: str, cls, **extra):
  """`cls(**config[name])` minus the keys in `extra`'s place; an unknown key raises naming it."""
  values = dict(config[name])
  fields = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - fields - set(extra))
  if unknown:
    raise ValueError(f"unknown config key(s) {[f'{name}.{k}' for k in unknown]}; {name} takes {sorted(fields)}")
  return cls(**{k: v for k, v in values.items() if k in fields})


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


def _eval_batches(builder, config, *, split: str = "test"):
  batch_size = config.eval.prompts_per_batch
  loader = prompt_loader(builder, split, batch_size=batch_size, seed=0, shuffle=False, num_epochs=1)
  remaining = config.eval.num_problems
  for batch in loader:
    if remaining <= 0:
      break
    if len(batch["prompt"]) > remaining:
      batch = {k: v[:remaining] for k, v in batch.items()}
    remaining -= len(batch["prompt"])
    yield batch


def evaluate_policy(step_fn: TrainStep, params, builder, config, equivalence, *, seed_offset: int) -> dict:
  """pass@k, distinct correct strategies and the classifier's agreement with the oracle on the test split."""
  rng = jax.random.fold_in(jax.random.key(config.seed), seed_offset)

  def sample_texts(batch):
    nonlocal rng
    rng, key = jax.random.split(rng)
    sample = step_fn.sample(params, batch, key, num_samples=config.eval.num_samples,
                            temperature=config.eval.temperature)
    tokens, mask = jax.device_get((sample.tokens, sample.mask))
    return decode_responses(step_fn.tokenizer, tokens, mask, step_fn.eos_ids, config.eval.num_samples)

  return evaluate_countdown(sample_texts, _eval_batches(builder, config), num_samples=config.eval.num_samples,
                            equivalence=equivalence)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
  """Runs every stage of `config` in `workdir` (see the module docstring) and returns the summary dict."""
  started = time.perf_counter()
  workdir = check_workdir(workdir)
  tfds.disable_progress_bar()
  step_config = section(config, "rl", StepConfig, prompts_per_step=None, steps=None)
  if "temperature" in config.grpo:
    raise ValueError("config key 'grpo.temperature' is not used: the update's log-probs use rl.temperature")
  update_config = dataclasses.replace(section(config, "grpo", UpdateConfig), temperature=step_config.temperature)
  if config.task != "countdown":
    raise ValueError(f"config.task={config.task!r}: only 'countdown' is supported by this trainer")
  tokenizer = countdown_tokenizer()
  eos_ids = (tokenizer.eos_token_id,)

  # ---- stages (cached in workdir)
  builder = prepare_countdown(workdir / "data", **dict(config.data))
  problems = [decode_record(record) for record in builder.as_data_source("train")]
  model, stage_info = policy_stage(workdir / "policy_sft", tokenizer, problems, config)
  equivalence, classifier_info = None, {}
  if step_config.diversity_source == "classifier" or config.eval.classifier_accuracy:
    classifier, threshold, classifier_info = countdown_classifier_stage(workdir / "classifier", tokenizer, problems, config)
    equivalence = EquivalenceClassifier(classifier, tokenizer, max_length=config.classifier.max_length,
                                        threshold=threshold, short_answer_max_words=None,
                                        both_orders=config.classifier.both_orders,
                                        rows_per_call=config.classifier.rows_per_call)

  # ---- RL state, sharded update, checkpoints
  mesh = make_run_mesh(config)
  optimizer = make_optimizer(update_config)
  graphdef = nnx.graphdef(model)
  state = init_train_state(model, optimizer, jax.random.key(config.seed))
  state_sharding = train_state_shardings(state, optimizer, mesh)
  state = jax.device_put(state, state_sharding)
  update = make_update_fn(graphdef, state_sharding, rollout_batch_shardings(mesh), update_config)
  step_fn = TrainStep(graphdef, update, CountdownTask(tokenizer), equivalence, tokenizer, step_config,
                      eos_ids=eos_ids, mesh=mesh)
  base_params = state.params if config.eval.base_policy else None
  base_eval = None
  if base_params is not None:
    base_eval = _cached_json(workdir / "base_eval.json", lambda: evaluate_policy(
        step_fn, base_params, builder, config, equivalence, seed_offset=1))

  loader = prompt_loader(builder, "train", batch_size=config.rl.prompts_per_step, seed=config.seed)
  iterator = iter(loader)
  checkpoints = Checkpointer(workdir / "checkpoints", max_to_keep=config.checkpoint.keep,
                             save_interval_steps=config.checkpoint.every)
  start_step = 0
  if checkpoints.latest_step() is not None:
    state, data_state, _ = checkpoints.restore(with_shardings(state, state_sharding))
    iterator.set_state(data_state)
    start_step = int(state.step)
    print(f"resumed from {checkpoints.directory} at step {start_step}", flush=True)
  log = reporting.MetricsLog(workdir, resume_step=start_step if start_step else None,
                             tensorboard=config.log.tensorboard)

  # ---- the RL loop
  num_steps = config.rl.steps
  stopped_early = False
  from tqdm import tqdm
  bar = tqdm(total=num_steps, initial=start_step, desc="RL", unit="step", disable=not config.log.progress_bar,
             dynamic_ncols=True)
  try:
    with _StopRequest() as stop:
      for step in range(start_step, num_steps):
        batch = next(iterator)
        state, metrics, _ = step_fn(state, batch, step)
        finite_or_raise(metrics, step)
        log.write(step + 1, metrics)
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
  checkpoints.close()
  if stopped_early:
    print(f"stopped at step {int(state.step)}; checkpoint saved in {checkpoints.directory}; run again to resume")
    return {"stopped_at_step": int(state.step)}

  # ---- the trained policy, evaluation, plots, summary
  save_pretrained(nnx.merge(graphdef, state.params), str(workdir / "policy_final"), tokenizer=tokenizer)
  final_eval = evaluate_policy(step_fn, state.params, builder, config, equivalence, seed_offset=2)
  rows = reporting.read_metrics(workdir / reporting.METRICS_FILE)
  last = rows[-min(len(rows), 5):]
  train_tail = {k: float(np.mean([r[k] for r in last])) for k in ("reward", "pass_rate", "diversity",
                                                                   "distinct_correct", "time/step",
                                                                   "time/diversity_share")} if last else {}
  plot = reporting.plot_training_curves(workdir / reporting.METRICS_FILE, workdir / "training_curves.png",
                                        title=f"{config.name}: {step_config.reward_mode}, "
                                              f"{step_config.diversity_source}")
  summary = {"config": config.name, "steps": num_steps, "train_last_5_steps": train_tail,
             "eval_base_policy": base_eval, "eval_final_policy": final_eval, "stages": {**stage_info,
             **classifier_info}, "wall_seconds": time.perf_counter() - started, "plot": str(plot)}
  (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
  sections = {f"train (mean of last {len(last)} steps)": train_tail}
  if base_eval:
    sections["eval: SFT policy (before RL)"] = base_eval
  sections["eval: final policy"] = final_eval
  print("\n" + reporting.summary_table(sections))
  print(f"\nplots: {plot}\nmetrics: {workdir / reporting.METRICS_FILE} (TensorBoard: {workdir / 'tensorboard'})"
        f"\nwall time {summary['wall_seconds']:.0f}s")
  return summary


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
