"""Small helpers shared by the array-validating public functions."""

from __future__ import annotations

import jax
import numpy as np


def as_array(value: jax.typing.ArrayLike) -> jax.Array | np.ndarray:
  """Arrays (and tracers) pass through untouched; other array-likes become numpy arrays (no device work)."""
  return value if isinstance(value, (jax.Array, np.ndarray)) else np.asarray(value)
