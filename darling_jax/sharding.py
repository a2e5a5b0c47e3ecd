"""Device mesh and the one table that maps the model's logical axis names to mesh axes.

Every parameter is annotated with logical names (`("embed", "mlp")`, …; see `darling_jax.models.layers`).
`LOGICAL_AXIS_RULES` maps each name to a mesh axis of the `("data", "fsdp", "tensor")` mesh: weights are
sharded over `fsdp` (ZeRO-3 style) and `tensor` (Megatron style); the batch over `data` × `fsdp`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx
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
