"""One process of the multi-host train step test (`tests/test_train_step_multihost.py`).

  python -m tests.train_step_multihost_worker --process_id I --num_processes 2 --coordinator localhost:PORT \
      --out PREFIX

Every process sets up `8 / num_processes` CPU devices (4 each for 2 processes) with gloo CPU collectives, joins
`jax.distributed` (when there is more than one process), builds the same tiny policy (parameters drawn in numpy,
identical everywhere), task and `TrainStep` on a (data=2, fsdp=2, tensor=2) mesh over the 8 global devices, and
runs `NUM_STEPS` whole DARLING steps (sample -> quality -> oracle classes -> diversity -> reward -> reference
log-probs -> update), each on the same global batch of `PROMPTS_PER_STEP` prompts. The task records which prompts
it scored and the tokenizer how many responses it decoded, so the test can tell that each process handled only its
own prompts' groups. Then `TrainStep.sample_texts` (the evaluation path) samples the first batch once more.

Process I writes `PREFIX.I.npz` (the final parameters, gathered) and `PREFIX.I.json` (metrics, rollouts, records).
`run()` is importable: the test calls it in its own (single-process, 8-device) JAX for the reference run, so this
module configures nothing at import time.
"""

from __future__ import annotations

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from darling_jax import sharding
from darling_jax.diversity.sources import DiversityContext
from darling_jax.grpo import UpdateConfig, make_optimizer, make_reference_logprobs, make_update_fn, rollout_batch_shardings
from darling_jax.models import DecoderConfig
from darling_jax.quality import Quality
from darling_jax.tasks.base import Task
from darling_jax.tasks.countdown.tokenizer import countdown_tokenizer, countdown_vocab
from darling_jax.train_step import StepConfig, TrainStep
from tests.grpo.multihost_worker import flat_params
from tests import multihost
from tests.multihost import start_jax, worker_arguments

_START = time.monotonic()  # for the progress log
NUM_GLOBAL_DEVICES = 8
MESH_SHAPE = (2, 2, 2)  # (data, fsdp, tensor): prompts over data x fsdp, one per device
NUM_STEPS = 2
PROMPTS_PER_STEP = 4
PROMPTS = ["1+2=", "3*4-5=", "(6)=", "7-8=", "9+(0)=", "2*2*2=", "5-(3)=", "4+4="]  # step s: PROMPTS[4s:4s+4]
EOS_ID = countdown_vocab()["<eos>"]
MODEL_CONFIG = DecoderConfig(vocab_size=len(countdown_vocab()), hidden_size=32, intermediate_size=64, num_layers=1,
                             num_heads=2, num_kv_heads=2, head_dim=16, max_position_embeddings=32)
STEP_CONFIG = StepConfig(group_size=4, max_new_tokens=8, temperature=1.0, diversity_source="oracle",
                         reward_mode="multiplicative")
# KL on (the reference's log-probs of the global batch enter the update); an Adam eps far above the gradients'
# rounding noise, so that parameter comparisons are well conditioned (as tests/grpo/multihost_worker.py).
UPDATE_CONFIG = UpdateConfig(learning_rate=1e-2, eps=1e-4, weight_decay=0.0, num_minibatches=2, microbatch_size=4,
                             kl_coef=0.05, temperature=1.0)


class CountingTokenizer:
  """The Countdown character tokenizer, counting the responses it decodes."""

  def __init__(self):
    self.tokenizer = countdown_tokenizer()
    self.decoded = 0

  def batch_decode(self, sequences, **kwargs):
    self.decoded += len(sequences)
    return self.tokenizer.batch_decode(sequences, **kwargs)

  def __call__(self, *args, **kwargs):
    return self.tokenizer(*args, **kwargs)


class ArithmeticTask(Task):
  """A tiny task: the prompts are arithmetic stubs, quality rewards digits and short answers, the ground-truth
  class of a response is its first character. Records the batch indices of the prompts it scores."""

  name = "tiny_arithmetic"
  needs_chat_template = False

  def __init__(self):
    super().__init__()
    self.scored: list[list[int]] = []  # per scoring call, the prompt indices (the batch's `index` column)

  def prompt_ids(self, batch, tokenizer):
    return tokenizer(list(batch["prompt"]), add_special_tokens=True)["input_ids"]

  def digits(self, prompts, completions, index, **columns):
    """Share of digits (None for an empty response: a NaN in per-function quality)."""
    self.scored.append(sorted({int(i) for i in index}))
    return [sum(ch.isdigit() for ch in c) / len(c) if c else None for c in completions]

  @staticmethod
  def brevity(prompts, completions, **columns):
    return [1.0 / (1.0 + len(c)) for c in completions]

  def quality_functions(self):
    return [(self.digits, 1.0), (self.brevity, 0.5)]

  def oracle_classes(self, completions, batch):
    firsts = [[c[:1] for c in group] for group in completions]
    return np.asarray([[group.index(first) for first in group] for group in firsts], np.int32)

  def rollout_metrics(self, completions, quality, batch, oracle):
    return {"empty_share": float(np.mean([[not c for c in group] for group in completions])),
            "max_quality": float(np.mean(np.max(quality, axis=1)))}


def host_params() -> nnx.State:
  """The tiny model's parameters, identical in every process (`tests.multihost.host_params`)."""
  return multihost.host_params(MODEL_CONFIG)


def step_batch(step: int) -> dict:
  """The step's whole loader batch (identical in every process)."""
  start = step * PROMPTS_PER_STEP
  return {"prompt": PROMPTS[start:start + PROMPTS_PER_STEP], "index": np.arange(start, start + PROMPTS_PER_STEP)}


def _log(message: str):
  print(f"[process {jax.process_index()} t={time.monotonic() - _START:.1f}s] {message}", file=sys.stderr, flush=True)


def run() -> tuple[dict[str, np.ndarray], dict]:
  """The steps on this JAX runtime (already configured, and `jax.distributed` joined if multi-process).

  Returns `(params, record)`: `{"params/<path>": final parameter}` (on every process) and this process's record:
  `metrics` (per step, without `time/*`), `prompts` / `texts` / `scored` (per step, the prompts of its rollouts,
  their responses and the prompt indices its quality scored), `decoded` (responses decoded by the steps),
  `eval_texts` (`sample_texts` of the first batch), the process / device counts and `mesh_process_index` (the
  process of each mesh device).
  """
  if jax.device_count() != NUM_GLOBAL_DEVICES:
    raise RuntimeError(f"expected {NUM_GLOBAL_DEVICES} global devices, got {jax.device_count()}")
  mesh = sharding.make_mesh(*MESH_SHAPE)
  graphdef, state, state_sharding = multihost.placed_train_state(MODEL_CONFIG, make_optimizer(UPDATE_CONFIG), mesh)
  reference_params = jax.jit(lambda p: jax.tree.map(jnp.copy, p), out_shardings=state_sharding.params)(state.params)
  reference = make_reference_logprobs(graphdef, reference_params, mesh, temperature=UPDATE_CONFIG.temperature)
  update = make_update_fn(graphdef, state_sharding, rollout_batch_shardings(mesh, with_ref_logp=True), UPDATE_CONFIG)
  task, tokenizer = ArithmeticTask(), CountingTokenizer()
  step_fn = TrainStep(graphdef, update, task, Quality(task.quality_functions()),
                      DiversityContext(floor=STEP_CONFIG.diversity_floor, oracle_classes=task.oracle_classes),
                      tokenizer, STEP_CONFIG, eos_ids=[EOS_ID], mesh=mesh, reference_logprobs=reference)
  _log("train state placed")

  record = {"metrics": [], "prompts": [], "texts": [], "scored": []}
  for step in range(NUM_STEPS):
    task.scored.clear()
    state, metrics, rollouts = step_fn(state, step_batch(step), step)
    record["metrics"].append({k: v for k, v in metrics.items() if not k.startswith("time/")})
    record["prompts"].append(rollouts.prompts)
    record["texts"].append(rollouts.texts)
    record["scored"].append(task.scored[:])
    _log(f"step {step} done: reward {metrics['reward']:.4f}")
  record["decoded"] = tokenizer.decoded
  if int(state.step) != NUM_STEPS:
    raise RuntimeError(f"state.step={int(state.step)}, expected {NUM_STEPS}")
  record["eval_texts"] = step_fn.sample_texts(state.params, step_batch(0), jax.random.key(7),
                                              num_samples=STEP_CONFIG.group_size, temperature=1.0)
  # One program replicates every parameter on every device (a single all-gather step across the processes).
  replicated = jax.jit(lambda params: params, out_shardings=NamedSharding(mesh, P()))(state.params)
  gathered = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), replicated)
  _log("parameters gathered")
  record.update(process_count=jax.process_count(), device_count=jax.device_count(),
                local_device_count=jax.local_device_count(),
                mesh_process_index=np.vectorize(lambda d: d.process_index)(mesh.devices).tolist())
  return flat_params(gathered), record


def main(argv=None):
  args = worker_arguments(argv, description=__doc__.split("\n\n")[0], num_global_devices=NUM_GLOBAL_DEVICES,
                          out_help="prefix of this process's PREFIX.I.npz and PREFIX.I.json", out_required=True)
  start_jax(args, NUM_GLOBAL_DEVICES)
  _log(f"started: {jax.process_count()} process(es), {jax.device_count()} devices")
  params, record = run()
  np.savez(f"{args.out}.{args.process_id}.npz", **params)
  with open(f"{args.out}.{args.process_id}.json", "w") as f:
    json.dump(record, f)
  if args.num_processes > 1:
    jax.distributed.shutdown()
  _log("done")


if __name__ == "__main__":
  main()
