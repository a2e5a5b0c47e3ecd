"""Multi-host DARLING steps: two processes on localhost, joined by `jax.distributed` with gloo CPU collectives (4
CPU devices each, one (data=2, fsdp=2, tensor=2) mesh over the 8), run whole `TrainStep` steps (sample, quality,
oracle diversity, reward, reference log-probs, update) of a tiny policy and task on the same global batches, each
process decoding and scoring only its own prompts' groups, and end with the same parameters and metrics as one
8-device process running every prompt.

The workers are `tests/train_step_multihost_worker.py` subprocesses; the single-process reference is the same
`train_step_multihost_worker.run()` in this (8-device) test process, computed while the workers run.
"""

import json

import numpy as np

from tests import train_step_multihost_worker as worker
from tests.multihost import run_workers

NUM_PROCESSES = 2
TIMEOUT_S = 360  # generous: on 2 loaded cores, imports + compiles + gloo steps of three processes


def test_two_processes_run_the_steps_of_one_process(tmp_path):
  prefix = tmp_path / "train_step"
  command = lambda i, coordinator: ["-m", "tests.train_step_multihost_worker", "--process_id", str(i),  # noqa: E731
                                    "--num_processes", str(NUM_PROCESSES), "--coordinator", coordinator,
                                    "--out", str(prefix)]
  # the reference: this process, 8 devices, every prompt, same mesh and steps
  ref_params, ref = run_workers(command, NUM_PROCESSES, tmp_path, timeout_s=TIMEOUT_S, reference=worker.run)

  got = [json.loads((tmp_path / f"train_step.{i}.json").read_text()) for i in range(NUM_PROCESSES)]
  got_params = [dict(np.load(tmp_path / f"train_step.{i}.npz")) for i in range(NUM_PROCESSES)]
  assert ref["process_count"] == 1 and ref["decoded"] == worker.NUM_STEPS * worker.PROMPTS_PER_STEP * 4
  half = worker.PROMPTS_PER_STEP // NUM_PROCESSES
  for i, record in enumerate(got):
    assert (record["process_count"], record["device_count"], record["local_device_count"]) == (2, 8, 4)
    # Data axis index i is process i's devices: its prompt rows are the i-th half of every batch.
    np.testing.assert_array_equal(np.asarray(record["mesh_process_index"])[i], i)
    # Each process decoded and scored only its own prompts' groups ...
    assert record["decoded"] == worker.NUM_STEPS * half * worker.STEP_CONFIG.group_size, record["decoded"]
    for step in range(worker.NUM_STEPS):
      mine = slice(i * half, (i + 1) * half)
      first = step * worker.PROMPTS_PER_STEP
      assert record["scored"][step] == [list(range(first + mine.start, first + mine.stop))]
      assert record["prompts"][step] == ref["prompts"][step][mine]
      # ... and sampled exactly what one process sampled for them (each prompt row keeps its random stream).
      assert record["texts"][step] == ref["texts"][step][mine]
    assert record["eval_texts"] == ref["eval_texts"]  # evaluation sampling gathers every response everywhere

  # The metrics are the whole batch's, on every process, as one process running every prompt logs them.
  reference_metrics = ref["metrics"]
  assert reference_metrics[0]["advantage_abs"] > 0 and {"classes", "quality/digits", "empty_share",
                                                        "update/loss"} <= set(reference_metrics[0])
  for record in got:
    assert [sorted(m) for m in record["metrics"]] == [sorted(m) for m in reference_metrics]
    for step, (metrics, expected) in enumerate(zip(record["metrics"], reference_metrics, strict=True)):
      for name, value in expected.items():
        np.testing.assert_allclose(metrics[name], value, rtol=1e-5, atol=1e-6, err_msg=f"step {step}: {name}")

  param_keys = sorted(ref_params)
  initial = worker.flat_params(worker.host_params())
  assert param_keys and param_keys == sorted(initial)
  for params in got_params:
    assert sorted(params) == param_keys
    diff = max(float(np.max(np.abs(params[k] - ref_params[k]))) for k in param_keys)
    assert diff <= 1e-5, diff
  assert max(float(np.max(np.abs(ref_params[k] - initial[k]))) for k in param_keys) > 1e-3  # the steps moved it
