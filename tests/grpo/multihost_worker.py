"""One process of the multi-host GRPO update test (`tests/grpo/test_multihost.py`).

  python -m tests.grpo.multihost_worker --process_id I --num_processes 2 --coordinator localhost:PORT --out FILE

Every process sets up `8 / num_processes` CPU devices (4 each for 2 processes) with gloo CPU collectives, joins
`jax.distributed` (when there is more than one process), builds the same tiny model and the same rollout
batches from numpy seeds, and runs `NUM_STEPS` sharded updates (`make_update_fn`) on a (data=2, fsdp=2,
tensor=2) mesh over the 8 global devices. Each process feeds only its own consecutive block of rows through
`global_rollout_batch`. The final parameters are gathered to host and process 0 writes them, the metrics of
every step and the run's layout to `--out` (np.savez). The arguments can also come from the environment
(`MULTIHOST_PROCESS_ID`, `MULTIHOST_NUM_PROCESSES`, `MULTIHOST_COORDINATOR`, `MULTIHOST_OUT`).

`run()` is importable: the test calls it in its own (single-process, 8-device) JAX for the reference run, so
this module configures nothing at import time.
"""

from __future__ import annotations

import sys
import time

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from darling_jax import sharding
from darling_jax.grpo.batch import RolloutBatch, global_rollout_batch, rollout_batch_shardings
from darling_jax.grpo.update import METRICS, UpdateConfig, make_optimizer, make_update_fn
from darling_jax.models import DecoderConfig
from tests import multihost
from tests.multihost import start_jax, worker_arguments

_START = time.monotonic()  # for the progress log
NUM_GLOBAL_DEVICES = 8
MESH_SHAPE = (2, 2, 2)  # (data, fsdp, tensor)
NUM_STEPS = 2
ROWS, PROMPT_WIDTH, NUM_RESPONSE_TOKENS = 16, 6, 6
MODEL_CONFIG = DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                             num_kv_heads=2, head_dim=16, max_position_embeddings=32)
# As tests/grpo/test_update.py: KL on (ref_logp is sharded and fed too), 2 minibatches of 2 microbatches, and an
# Adam eps far above the gradients' rounding noise, so that parameter comparisons are well conditioned.
CONFIG = UpdateConfig(learning_rate=1e-2, eps=1e-4, weight_decay=0.1, num_minibatches=2, microbatch_size=4,
                      kl_coef=0.05, temperature=0.7)


def host_params() -> nnx.State:
  """The tiny model's parameters, identical in every process (`tests.multihost.host_params`)."""
  return multihost.host_params(MODEL_CONFIG)


def host_batch(step: int) -> RolloutBatch:
  """The whole rollout batch of `step` (numpy, identical in every process): left-padded prompts, ragged
  responses (row 5 fully masked), old / reference log-probs around the tiny model's ~-log(64)."""
  rng = np.random.default_rng(100 + step)
  vocab = MODEL_CONFIG.vocab_size
  prompt_lengths = rng.integers(1, PROMPT_WIDTH + 1, size=ROWS)
  prompt_mask = np.arange(PROMPT_WIDTH)[None, :] >= PROMPT_WIDTH - prompt_lengths[:, None]
  response_lengths = rng.integers(1, NUM_RESPONSE_TOKENS + 1, size=ROWS)
  response_lengths[5] = 0
  response_mask = np.arange(NUM_RESPONSE_TOKENS)[None, :] < response_lengths[:, None]
  input_ids = rng.integers(1, vocab, size=(ROWS, PROMPT_WIDTH + NUM_RESPONSE_TOKENS))
  input_ids[:, :PROMPT_WIDTH] *= prompt_mask  # pad id 0
  old_logp = -np.log(vocab) + rng.uniform(-1.0, 1.0, size=(ROWS, NUM_RESPONSE_TOKENS))
  return RolloutBatch(
      input_ids=input_ids.astype(np.int32),
      attention_mask=np.concatenate([prompt_mask, response_mask], axis=1).astype(np.int32),
      response_mask=response_mask.astype(np.int32),
      old_logp=old_logp.astype(np.float32),
      advantages=rng.normal(size=ROWS).astype(np.float32),
      ref_logp=(old_logp + rng.uniform(-0.3, 0.3, size=old_logp.shape)).astype(np.float32),
  )


def _process_rows(process_id: int, num_processes: int) -> slice:
  rows = ROWS // num_processes
  return slice(process_id * rows, (process_id + 1) * rows)


def flat_params(params: nnx.State) -> dict[str, np.ndarray]:
  """`{"params/<path>": host array}` of a (gathered or host) parameter state."""
  return {f"params/{jax.tree_util.keystr(path, simple=True, separator='/')}": np.asarray(x)
          for path, x in jax.tree_util.tree_leaves_with_path(params)}


def _log(message: str):
  print(f"[process {jax.process_index()} t={time.monotonic() - _START:.1f}s] {message}", file=sys.stderr, flush=True)


def run() -> dict[str, np.ndarray]:
  """The updates on this JAX runtime (already configured, and `jax.distributed` joined if multi-process).

  Returns (on every process) `{"params/<path>": final parameter, "metrics": f32 [NUM_STEPS, len(METRICS)],
  "process_count", "device_count", "local_device_count", "mesh_process_index": int32 MESH_SHAPE (the process of
  each mesh device)}`.
  """
  process_id, num_processes = jax.process_index(), jax.process_count()
  if jax.device_count() != NUM_GLOBAL_DEVICES:
    raise RuntimeError(f"expected {NUM_GLOBAL_DEVICES} global devices, got {jax.device_count()}")
  mesh = sharding.make_mesh(*MESH_SHAPE)
  graphdef, state, state_sharding = multihost.placed_train_state(MODEL_CONFIG, make_optimizer(CONFIG), mesh)
  _log("train state placed")
  update = make_update_fn(graphdef, state_sharding, rollout_batch_shardings(mesh, with_ref_logp=True), CONFIG)

  rows = _process_rows(process_id, num_processes)
  metrics = []
  for step in range(NUM_STEPS):
    local_rows = jax.tree.map(lambda x: x[rows], host_batch(step))  # this process loads only its own rows
    batch = global_rollout_batch(local_rows, mesh)
    if batch.input_ids.shape[0] != ROWS:
      raise RuntimeError(f"global batch has {batch.input_ids.shape[0]} rows, expected {ROWS}")
    for shard in batch.input_ids.addressable_shards:  # ... and its devices hold exactly those rows
      start, stop, _ = shard.index[0].indices(ROWS)
      if not rows.start <= start < stop <= rows.stop:
        raise RuntimeError(f"process {process_id} holds rows {start}:{stop} outside its block {rows}")
      np.testing.assert_array_equal(np.asarray(shard.data), host_batch(step).input_ids[start:stop])
    state, step_metrics = update(state, batch)
    metrics.append([float(step_metrics[name]) for name in METRICS])  # replicated: readable everywhere
    _log(f"update {step} done")

  if int(state.step) != NUM_STEPS:
    raise RuntimeError(f"state.step={int(state.step)}, expected {NUM_STEPS}")
  # One program replicates every parameter on every device (a single all-gather step across the processes).
  replicated = jax.jit(lambda params: params, out_shardings=NamedSharding(mesh, P()))(state.params)
  gathered = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), replicated)
  _log("parameters gathered")
  return dict(flat_params(gathered), metrics=np.asarray(metrics, np.float32), process_count=np.int32(num_processes),
              device_count=np.int32(jax.device_count()), local_device_count=np.int32(jax.local_device_count()),
              mesh_process_index=np.vectorize(lambda d: d.process_index)(mesh.devices).astype(np.int32))


def main(argv=None):
  args = worker_arguments(argv, description=__doc__.split("\n\n")[0], num_global_devices=NUM_GLOBAL_DEVICES,
                          out_help="np.savez file written by process 0", out_required=False,
                          environment_prefix="MULTIHOST")
  start_jax(args, NUM_GLOBAL_DEVICES)
  _log(f"started: {jax.process_count()} process(es), {jax.device_count()} devices")
  result = run()
  if args.process_id == 0 and args.out:
    np.savez(args.out, **result)
  if args.num_processes > 1:
    jax.distributed.shutdown()
  _log(f"done, metrics {result['metrics'].tolist()}")


if __name__ == "__main__":
  main()
