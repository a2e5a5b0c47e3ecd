"""Shared plumbing of the multi-process tests: N worker processes on localhost, joined by `jax.distributed` with
gloo CPU collectives, against a reference computed in the (8-device) test process.

Test side: `run_workers` starts the workers, runs the reference in this process meanwhile, and fails with their
logs if one fails or they outlast the timeout. Worker side: `worker_arguments` parses the common flags and
`start_jax` configures JAX (before any backend starts) and joins the others.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np
import pytest
from flax import nnx

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def host_params(config) -> nnx.State:
  """`init_model(config)`'s parameter structure and annotations, values drawn in numpy (identical in every
  process): norms ones, matrices N(0, 1/fan_in)."""
  from darling_jax.models import init_model
  _, params = nnx.split(nnx.eval_shape(lambda: init_model(config)), nnx.Param)
  rng = np.random.default_rng(0)
  draw = lambda x: (np.ones(x.shape) if len(x.shape) == 1 else  # noqa: E731  norms / matrices
                    rng.normal(size=x.shape) / np.sqrt(x.shape[0])).astype(np.float32)
  return jax.tree.map(draw, params)


def placed_train_state(config, optimizer, mesh):
  """`(graphdef, state, state shardings)`: `host_params(config)` placed on `mesh` (every process holds the same
  host values; each device takes its slice) and the train state built from them (rng key 1)."""
  from darling_jax.grpo.update import init_train_state, train_state_shardings
  from darling_jax.models import init_model
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: init_model(config)))
  params = host_params(config)
  init = lambda params: init_train_state(nnx.merge(graphdef, params), optimizer, jax.random.key(1))  # noqa: E731
  state_sharding = train_state_shardings(jax.eval_shape(init, params), optimizer, mesh)
  place = lambda x, s: jax.make_array_from_callback(x.shape, s, lambda index: x[index])  # noqa: E731
  params = jax.tree.map(lambda v, s: v.replace(place(v.get_value(), s)), params, state_sharding.params,
                        is_leaf=lambda x: isinstance(x, nnx.Variable))
  state = jax.jit(init, in_shardings=(state_sharding.params,), out_shardings=state_sharding)(params)
  return graphdef, state, state_sharding


def has_cpu_collectives() -> bool:
  """Whether this jaxlib has the gloo CPU collectives (`jax_cpu_collectives_implementation="gloo"`)."""
  try:
    from jax._src.lib import _jax
  except ImportError:  # private layout changed: let the run itself tell
    return True
  return hasattr(_jax, "make_gloo_tcp_collectives")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def log_tail(path, lines=60) -> str:
  with open(path, errors="replace") as f:
    text = [line for line in f.read().splitlines() if not line.startswith("[Gloo]")]  # connection chatter
  return "\n".join(text[-lines:])


def _wait(workers, logs, deadline, timeout_s):
  """Waits for every worker; on a failure or the deadline, kills the rest and fails with their logs."""
  failure = None
  while failure is None and any(w.poll() is None for w in workers):
    if any(w.returncode not in (None, 0) for w in workers):
      failure = "a worker failed"
    elif time.monotonic() > deadline:
      failure = f"the workers did not finish within {timeout_s} s"
    else:
      time.sleep(0.2)
  if failure is None and any(w.returncode != 0 for w in workers):
    failure = "a worker failed"
  if failure is not None:
    for w in workers:
      if w.poll() is None:
        w.kill()
        w.wait()
    report = "\n".join(f"--- process {i} (exit {w.returncode}) output:\n{log_tail(log)}"
                       for i, (w, log) in enumerate(zip(workers, logs, strict=True)))
    pytest.fail(f"{failure}\n{report}")


def run_workers(command: Callable[[int, str], Sequence[str]], num_processes: int, log_dir, *, timeout_s: float,
                reference: Callable[[], object]):
  """Starts `num_processes` workers (`command(process_id, coordinator)` each, from the repository root, logs in
  `log_dir`), computes `reference()` in this process while they run, waits for them, and returns the reference.
  Skips where jaxlib has no gloo CPU collectives."""
  if not has_cpu_collectives():
    pytest.skip("this jaxlib has no gloo CPU collectives (jax_cpu_collectives_implementation='gloo')")
  coordinator = f"localhost:{free_port()}"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
  env.pop("XLA_FLAGS", None)  # the workers set their own CPU device count
  deadline = time.monotonic() + timeout_s
  workers, logs = [], []
  try:
    for i in range(num_processes):
      logs.append(log_dir / f"worker{i}.log")
      with open(logs[-1], "w") as log:
        workers.append(subprocess.Popen([sys.executable, *command(i, coordinator)], cwd=REPO_ROOT, env=env,
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
    result = reference()
    _wait(workers, logs, deadline, timeout_s)
  finally:
    for w in workers:
      if w.poll() is None:
        w.kill()
        w.wait()
  return result


def worker_arguments(argv, *, description: str, num_global_devices: int, out_help: str, out_required: bool,
                     environment_prefix: str | None = None) -> argparse.Namespace:
  """`--process_id`, `--num_processes`, `--coordinator`, `--out`, `--initialization_timeout` (defaults from
  `<environment_prefix>_PROCESS_ID` etc. when given), checked against `num_global_devices`."""
  env = (lambda name, default: os.environ.get(f"{environment_prefix}_{name}", default)) if environment_prefix else (
      lambda name, default: default)
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument("--process_id", type=int, default=int(env("PROCESS_ID", "0")))
  parser.add_argument("--num_processes", type=int, default=int(env("NUM_PROCESSES", "1")))
  parser.add_argument("--coordinator", default=env("COORDINATOR", None), help="host:port of process 0")
  parser.add_argument("--out", default=env("OUT", None), required=out_required, help=out_help)
  parser.add_argument("--initialization_timeout", type=int, default=120, help="seconds to wait for the others")
  args = parser.parse_args(argv)
  if num_global_devices % args.num_processes:
    parser.error(f"--num_processes must divide {num_global_devices}")
  if args.num_processes > 1 and not args.coordinator:
    parser.error("--coordinator is required with more than one process")
  if not 0 <= args.process_id < args.num_processes:
    parser.error(f"--process_id must be in [0, {args.num_processes})")
  return args


def start_jax(args: argparse.Namespace, num_global_devices: int) -> None:
  """This process's share of the CPU devices, gloo collectives and the numerics of tests/conftest.py (the
  reference run's process), then `jax.distributed.initialize` when there is more than one process. Call before
  any JAX backend starts."""
  jax.config.update("jax_num_cpu_devices", num_global_devices // args.num_processes)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.config.update("jax_default_matmul_precision", "highest")
  jax.config.update("jax_disable_most_optimizations", True)
  if args.num_processes > 1:
    jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                               process_id=args.process_id, initialization_timeout=args.initialization_timeout)
