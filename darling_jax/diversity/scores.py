"""Per-response semantic diversity from a partition (DARLING paper Eq. 4 with the official code's floor)."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from darling_jax.array_utils import as_array

DEFAULT_DIVERSITY_FLOOR = 0.1


def diversity_scores(class_ids: jax.typing.ArrayLike, floor: float = DEFAULT_DIVERSITY_FLOOR) -> jax.Array:
  """Fraction of the other responses of the group that fall in a different class, floored.

  Div(y_i) = max(floor, (G - |C(i)|) / (G - 1)), where |C(i)| counts the responses j (including i) with
  `class_ids[j] == class_ids[i]`. A singleton scores 1; a group whose responses are all equivalent would score
  0 and is floored (0.1 in the official code, `partition()` in `partition_reward_vllm_serve*.py`). For G = 8
  the possible values are {0.1, 1/7, 2/7, ..., 6/7, 1}. A group of one response (G = 1) scores 1.0.

  Args:
    class_ids: int[..., G], class labels of each group (any labelling, e.g. the output of `partition`).
    floor: lower bound on the score, in [0, 1].

  Returns:
    float32[..., G] diversity scores in [floor, 1].

  Raises:
    ValueError: if `class_ids` is not an integer array with a non-empty last axis, or `floor` is outside [0, 1].
  """
  class_ids = as_array(class_ids)
  if class_ids.ndim < 1 or class_ids.shape[-1] == 0:
    raise ValueError(f"class_ids must have shape [..., G] with G >= 1, got shape {class_ids.shape}")
  if class_ids.dtype == np.bool_ or not np.issubdtype(class_ids.dtype, np.integer):
    raise ValueError(f"class_ids must have an integer dtype, got {class_ids.dtype}")
  if isinstance(floor, numbers.Real) and not 0.0 <= float(floor) <= 1.0:
    raise ValueError(f"floor must be in [0, 1], got {floor}")
  return _floored_diversity(class_ids, floor)


@jax.jit
def _floored_diversity(class_ids: jax.Array, floor: jax.typing.ArrayLike) -> jax.Array:
  """Jitted core of `diversity_scores` for validated int[..., G] labels and a scalar floor."""
  group_size = class_ids.shape[-1]
  if group_size == 1:
    return jnp.ones(class_ids.shape, jnp.float32)
  class_sizes = jnp.sum(class_ids[..., :, None] == class_ids[..., None, :], axis=-1)
  raw_scores = (group_size - class_sizes).astype(jnp.float32) / (group_size - 1)
  return jnp.maximum(raw_scores, jnp.asarray(floor, jnp.float32))
