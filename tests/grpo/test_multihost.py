"""Multi-host GRPO update: two processes on localhost, joined by `jax.distributed` with gloo CPU collectives
(4 CPU devices each, one (data=2, fsdp=2, tensor=2) mesh over the 8), run the same sharded updates as one
8-device process, each feeding only its own half of every rollout batch, and end with the same parameters.

The workers are `tests.grpo.multihost_worker` subprocesses; the single-process reference is the same
`multihost_worker.run()` in this (8-device) test process, computed while the workers run.
"""

import numpy as np

from darling_jax.grpo.update import METRICS
from tests.grpo import multihost_worker
from tests.multihost import run_workers

NUM_PROCESSES = 2
TIMEOUT_S = 360  # generous: on 2 loaded cores, imports + 3 compiles + gloo steps took up to ~4 min


def test_two_processes_equal_one_process(tmp_path):
  out = tmp_path / "multihost.npz"
  command = lambda i, coordinator: ["-m", "tests.grpo.multihost_worker", "--process_id", str(i), "--num_processes", str(NUM_PROCESSES),  # noqa: E731
                                    "--coordinator", coordinator, "--out", str(out)]
  # the reference: this process, 8 devices, the whole batch, same mesh and steps
  reference = run_workers(command, NUM_PROCESSES, tmp_path, timeout_s=TIMEOUT_S, reference=multihost_worker.run)

  got = dict(np.load(out))
  assert int(reference["process_count"]) == 1
  assert (int(got["process_count"]), int(got["device_count"]), int(got["local_device_count"])) == (2, 8, 4)
  # The batch's data axis spans the processes: each holds half the rows, and gradients are reduced across them.
  np.testing.assert_array_equal(got["mesh_process_index"][0], 0)
  np.testing.assert_array_equal(got["mesh_process_index"][1], 1)

  param_keys = sorted(k for k in reference if k.startswith("params/"))
  assert param_keys and param_keys == sorted(k for k in got if k.startswith("params/"))
  diff = max(float(np.max(np.abs(got[k] - reference[k]))) for k in param_keys)
  assert diff <= 1e-5, diff
  initial = multihost_worker.flat_params(multihost_worker.host_params())
  assert max(float(np.max(np.abs(reference[k] - initial[k]))) for k in param_keys) > 1e-3  # the updates moved it
  assert got["metrics"].shape == (multihost_worker.NUM_STEPS, len(METRICS))
  for j, name in enumerate(METRICS):
    np.testing.assert_allclose(got["metrics"][:, j], reference["metrics"][:, j], rtol=1e-5, atol=1e-6, err_msg=name)
