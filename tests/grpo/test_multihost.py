"""Multi-host GRPO update: two processes on localhost, joined by `jax.distributed` with gloo CPU collectives
(4 CPU devices each, one (data=2, fsdp=2, tensor=2) mesh over the 8), run the same sharded updates as one
8-device process, each feeding only its own half of every rollout batch, and end with the same parameters.

The workers are `tests/grpo/multihost_worker.py` subprocesses; the single-process reference is the same
`multihost_worker.run()` in this (8-device) test process, computed while the workers run.
"""

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from darling_jax.grpo.update import METRICS
from tests.grpo import multihost_worker

NUM_PROCESSES = 2
TIMEOUT_S = 360  # generous: on 2 loaded cores, imports + 3 compiles + gloo steps took up to ~4 min
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multihost_worker.py")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(WORKER)))


def _has_cpu_collectives() -> bool:
  """Whether this jaxlib has the gloo CPU collectives (`jax_cpu_collectives_implementation="gloo"`)."""
  try:
    from jax._src.lib import _jax
  except ImportError:  # private layout changed: let the run itself tell
    return True
  return hasattr(_jax, "make_gloo_tcp_collectives")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _log_tail(path, lines=60) -> str:
  with open(path, errors="replace") as f:
    text = [line for line in f.read().splitlines() if not line.startswith("[Gloo]")]  # connection chatter
  return "\n".join(text[-lines:])


def _wait(workers, logs, deadline):
  """Waits for every worker; on a failure or the deadline, kills the rest and fails with their logs."""
  failure = None
  while failure is None and any(w.poll() is None for w in workers):
    if any(w.returncode not in (None, 0) for w in workers):
      failure = "a worker failed"
    elif time.monotonic() > deadline:
      failure = f"the workers did not finish within {TIMEOUT_S} s"
    else:
      time.sleep(0.2)
  if failure is None and any(w.returncode != 0 for w in workers):
    failure = "a worker failed"
  if failure is not None:
    for w in workers:
      if w.poll() is None:
        w.kill()
        w.wait()
    report = "\n".join(f"--- process {i} (exit {w.returncode}) output:\n{_log_tail(log)}"
                       for i, (w, log) in enumerate(zip(workers, logs, strict=True)))
    pytest.fail(f"{failure}\n{report}")


def test_two_processes_equal_one_process(tmp_path):
  if not _has_cpu_collectives():
    pytest.skip("this jaxlib has no gloo CPU collectives (jax_cpu_collectives_implementation='gloo')")
  out = tmp_path / "multihost.npz"
  coordinator = f"localhost:{_free_port()}"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
  env.pop("XLA_FLAGS", None)  # the worker sets its own CPU device count
  deadline = time.monotonic() + TIMEOUT_S
  workers, logs = [], []
  try:
    for i in range(NUM_PROCESSES):
      logs.append(tmp_path / f"worker{i}.log")
      with open(logs[-1], "w") as log:
        workers.append(subprocess.Popen(
            [sys.executable, WORKER, "--process_id", str(i), "--num_processes", str(NUM_PROCESSES),
             "--coordinator", coordinator, "--out", str(out)],
            cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
    reference = multihost_worker.run()  # this process: 8 devices, the whole batch, same mesh and steps
    _wait(workers, logs, deadline)
  finally:
    for w in workers:
      if w.poll() is None:
        w.kill()
        w.wait()

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
