"""Semantic partition of a rollout group: connected components of the pairwise equivalence graph.

DARLING (official `partition_reward_vllm_serve*.py`) tests every pair (i, j) of a prompt's group and merges
equivalent pairs with union-find, so the partition is the transitive closure of the symmetric equivalence
relation: a ~ b and b ~ c put a, b and c in one class even when a and c were judged different. NoveltyBench's
evaluation-time greedy rule is different and lives in `darling_jax.evaluation.greedy_partition`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from darling_jax.array_utils import as_array


@jax.jit
def _connected_component_labels(equivalent: jax.Array) -> jax.Array:
  """Jitted core of `partition` for a validated bool[..., G, G] input (one compilation per shape)."""
  group_size = equivalent.shape[-1]
  reachable = equivalent | jnp.swapaxes(equivalent, -1, -2) | jnp.eye(group_size, dtype=jnp.bool_)
  # ceil(log2(G - 1)) for G >= 2; zero for G in {1, 2}, where one step (the matrix itself) already suffices.
  num_squarings = (group_size - 2).bit_length() if group_size > 2 else 0

  def square(_, reach: jax.Array) -> jax.Array:
    # The product counts paths i -> k -> j; the counts are small integers (<= G), exact even in bfloat16.
    as_float = reach.astype(jnp.float32)
    return jnp.matmul(as_float, as_float) > 0.5

  reachable = lax.fori_loop(0, num_squarings, square, reachable)
  # The first true entry of a reflexive row is the smallest member of the component.
  return jnp.argmax(reachable, axis=-1).astype(jnp.int32)


def partition(equivalent: jax.typing.ArrayLike) -> jax.Array:
  """Labels each response of a group with its connected component of the equivalence graph.

  The graph has an edge i -- j when `equivalent[..., i, j]` or `equivalent[..., j, i]` is true (the input is
  symmetrised, so a strict upper-triangular matrix of pair verdicts is enough); the diagonal is always treated
  as true. Components are found by repeated squaring of the boolean reachability matrix: after k squarings it
  holds every path of length <= 2**k, and ceil(log2(G - 1)) squarings cover the longest simple path (G - 1
  edges). Pure, jittable, and vectorised over leading batch dimensions; the loop count depends only on the
  static group size.

  Args:
    equivalent: bool[..., G, G], pairwise equivalence verdicts of one or more groups of G >= 1 responses.

  Returns:
    int32[..., G]: for each response, the smallest index of a response in its component, so two responses
    share a label exactly when they are in the same class, and every class is labelled by its first member.

  Raises:
    ValueError: if `equivalent` is not a bool array of shape [..., G, G] with G >= 1.
  """
  equivalent = as_array(equivalent)
  if equivalent.ndim < 2 or equivalent.shape[-1] != equivalent.shape[-2]:
    raise ValueError(f"equivalent must have shape [..., G, G], got shape {equivalent.shape}")
  if equivalent.dtype != np.bool_:
    raise ValueError(f"equivalent must have dtype bool, got {equivalent.dtype}")
  group_size = equivalent.shape[-1]
  if group_size == 0:
    raise ValueError("equivalent must describe a group of at least one response, got G = 0")
  return _connected_component_labels(equivalent)
