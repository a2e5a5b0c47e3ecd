"""Device mesh and the one table that maps the model's logical axis names to mesh axes.

Every parameter is annotated with logical names (`("embed", "mlp")`, …; see `darling_jax.models.layers`).
`LOGICAL_AXIS_RULES` maps each name to a mesh axis of the `("data", "fsdp", "tensor")` mesh: weights are
sharded over `fsdp` (ZeRO-3 style) and `tensor` (Megatron style); the batch over `data` × `fsdp`.

Multi-controller JAX (a mesh over several processes): `process_rows` reads the rows of a batch-sharded global array
that this process's devices hold, `jax.make_array_from_process_local_data` (e.g. `grpo.global_rollout_batch`) puts
such rows back, and `gather_rows` gives every process the whole batch's rows of small per-row arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

LOGICAL_AXIS_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", BATCH_AXES),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("head_dim", None),
    ("norm", None),
)


def make_mesh(data: int = 1, fsdp: int = 1, tensor: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A `("data", "fsdp", "tensor")` mesh with `AxisType.Auto` axes (GSPMD propagation inside `jax.jit`)."""
  devices = list(devices if devices is not None else jax.devices())
  size = data * fsdp * tensor
  if size != len(devices):
    raise ValueError(f"mesh shape (data={data}, fsdp={fsdp}, tensor={tensor}) needs {size} devices, "
                     f"{len(devices)} available")
  return jax.make_mesh((data, fsdp, tensor), MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


def logical_to_mesh(logical_axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh,
                    rules=LOGICAL_AXIS_RULES) -> P:
  """PartitionSpec for an array of `shape` annotated with `logical_axes`.

  A dimension whose size is not divisible by its mesh axes' size is replicated instead (e.g. a 2-head
  tensor on a 4-way `tensor` axis), so any model loads on any mesh.
  """
  table = dict(rules)
  spec = []
  used: set[str] = set()
  for name, dim in zip(logical_axes, shape, strict=True):
    if name is not None and name not in table:
      raise ValueError(f"logical axis {name!r} has no rule in the sharding table; known: {sorted(table)}")
    target = table.get(name) if name is not None else None
    axes = (target,) if isinstance(target, str) else tuple(target or ())
    axes = tuple(a for a in axes if a not in used and mesh.shape[a] > 1)
    if axes and dim % int(np.prod([mesh.shape[a] for a in axes])) == 0:
      used.update(axes)
      spec.append(axes[0] if len(axes) == 1 else axes)
    else:
      spec.append(None)
  return P(*spec)


def state_shardings(state: nnx.State, mesh: Mesh, rules=LOGICAL_AXIS_RULES) -> nnx.State:
  """`NamedSharding` for every variable of an (abstract) NNX state, from its `out_sharding` annotation."""

  def sharding_for(variable):
    value = variable.get_value()
    axes = variable.get_metadata().get("out_sharding") or (None,) * len(value.shape)
    return NamedSharding(mesh, logical_to_mesh(axes, value.shape, mesh, rules))

  return jax.tree.map(sharding_for, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  """Leading (batch) dimension over `data` × `fsdp`, the rest replicated."""
  return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def data_parallel_size(mesh: Mesh) -> int:
  """How many ways the batch axes (`data` × `fsdp`) split a batch's rows."""
  return int(np.prod([mesh.shape[a] for a in BATCH_AXES]))


def constrain_rows(tree):
  """Inside `jax.jit` under a mesh (`jax.set_mesh`): the leading (row) dim of each leaf constrained to
  `data` × `fsdp` of the ambient mesh, where it divides; unchanged without a mesh."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return tree
  axes = tuple(a for a in BATCH_AXES if a in mesh.axis_names)
  size = math.prod(mesh.shape[a] for a in axes)

  def constrain(x):
    if size <= 1 or x.shape[0] % size:
      return x
    return jax.lax.with_sharding_constraint(x, P(axes, *([None] * (x.ndim - 1))))

  return jax.tree.map(constrain, tree)


def split_rows(tree, num_parts: int):
  """Leaves `[R, ...]` -> `[num_parts, R / num_parts, ...]` (consecutive rows per part)."""
  return jax.tree.map(lambda x: x.reshape(num_parts, x.shape[0] // num_parts, *x.shape[1:]), tree)


def process_rows(array: jax.Array) -> tuple[np.ndarray, np.ndarray]:
  """`(indices, rows)`: the rows (leading dimension) of a global `array` that this process's devices hold,
  ascending, and their values as one host array: the process-local block `jax.make_array_from_process_local_data`
  takes back for the same sharding. With one process (a fully addressable array), every row.

  The array may be sharded along its leading dimension only (e.g. `batch_sharding`).
  """
  num_rows = array.shape[0]
  if array.is_fully_addressable:
    return np.arange(num_rows), np.asarray(jax.device_get(array))
  blocks = {}  # start -> (stop, shard); devices holding replicas of a block hold the same rows
  for shard in array.addressable_shards:
    if tuple(shard.data.shape[1:]) != tuple(array.shape[1:]):
      raise ValueError(f"process_rows needs an array sharded along its rows only, got {array.sharding}")
    start, stop, _ = shard.index[0].indices(num_rows)
    blocks.setdefault(start, (stop, shard))
  ordered = sorted(blocks.items())
  indices = np.concatenate([np.arange(start, stop) for start, (stop, _) in ordered])
  return indices, np.concatenate([np.asarray(shard.data) for _, (_, shard) in ordered])


def gather_rows(local_rows, mesh: Mesh):
  """The whole batch's rows on every process, from each process's own rows: a pytree of host arrays whose leading
  dimension is this process's rows of a batch sharded as `batch_sharding(mesh, ...)` (the rows `process_rows`
  reads), in the same pytree of host arrays with every row, in batch order. With a mesh of one process,
  `local_rows` itself. For small per-row values (rewards, lengths), not for token arrays."""
  if not mesh.is_multi_process:
    return local_rows
  global_rows = jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(batch_sharding(mesh, np.ndim(x)), np.asarray(x)), local_rows)
  return multihost_utils.process_allgather(global_rows, tiled=True)  # each global array comes back whole
