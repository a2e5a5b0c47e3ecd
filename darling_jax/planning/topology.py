"""Devices to compile for: a TPU topology's abstract devices (no TPU attached) or this host's CPU devices.

    devices = topology_devices("v5p:2x2x1")   # 4 abstract TPU v5p chips (needs `pip install -e '.[tpu-plan]'`)
    devices = topology_devices("cpu:8")       # 8 CPU devices of this process

TPU topologies come from `jax.experimental.topologies.get_topology_desc(platform="tpu", topology_name=...)`:
with `libtpu` installed, `jax.jit(...).lower(...).compile()` on those devices compiles for that chip on a CPU
host, and the executable's `memory_analysis()` / `cost_analysis()` are XLA's own for it (MaxText's
`train_compile.py` works this way).
"""

from __future__ import annotations

import os
import re

import jax

GIB = 2**30
# HBM per chip (bytes), by the abstract devices' `device_kind` (Cloud TPU's published per-chip memory).
HBM_BYTES = {"TPU v4": 32 * GIB, "TPU v5": 95 * GIB, "TPU v5p": 95 * GIB, "TPU v5 lite": 16 * GIB,
             "TPU v5e": 16 * GIB, "TPU v6 lite": 32 * GIB, "TPU v6e": 32 * GIB}
_CPU = re.compile(r"^cpu:(\d+)$")


def requested_cpu_devices(topology: str) -> int | None:
  """N of `"cpu:N"`, else None (call before JAX starts, to set `jax_num_cpu_devices`)."""
  match = _CPU.match(topology)
  return int(match.group(1)) if match else None


def quiet_libtpu_environment(topology: str) -> None:
  """Environment that keeps libtpu from probing for a TPU VM's metadata (and printing warnings about it) when
  compiling for an abstract topology on a host without one. Call before JAX starts."""
  if requested_cpu_devices(topology) is None:
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", topology.split(":")[0] + "-8")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # other JAX processes on this host may hold libtpu


def topology_devices(topology: str) -> list[jax.Device]:
  """The devices of `topology`: `"cpu:N"` (this process's first N CPU devices) or a TPU topology name
  (`"v5p:2x2x1"`, `"v5e:4x4"`, `"v6e:2x4"`, ...)."""
  cpus = requested_cpu_devices(topology)
  if cpus is not None:
    devices = jax.devices("cpu")
    if len(devices) < cpus:
      raise ValueError(f"--topology {topology!r}: this process has {len(devices)} CPU devices (set "
                       f"jax_num_cpu_devices before JAX starts)")
    return devices[:cpus]
  try:
    from jax.experimental import topologies
    return list(topologies.get_topology_desc(platform="tpu", topology_name=topology).devices)
  except Exception as e:  # libtpu missing, or a name it does not know
    raise ValueError(f"--topology {topology!r}: no TPU topology of that name could be built ({e}); TPU "
                     "topologies need libtpu: pip install -e '.[tpu-plan]'") from e


def hbm_bytes(device: jax.Device) -> int | None:
  """Memory of one chip of `device`'s kind, or None where unknown (CPU)."""
  return HBM_BYTES.get(device.device_kind)
