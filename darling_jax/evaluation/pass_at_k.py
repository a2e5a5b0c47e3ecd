"""Unbiased pass@k estimator (Chen et al. 2021), as used by DARLING's math evaluation."""

from __future__ import annotations

import numpy as np


def _as_integer_array(value, name: str) -> np.ndarray:
  array = np.asarray(value)
  if array.dtype == np.bool_ or array.dtype.kind not in "iu":
    raise ValueError(f"{name} must be an integer or an integer array, got dtype {array.dtype}")
  return array.astype(np.int64)


def pass_at_k(n, c, k) -> np.ndarray | np.float64:
  """Probability that at least one of k samples drawn without replacement from n is correct.

    pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n - c + 1}^{n} (1 - k / i),

  evaluated in the product form as 1 - exp(sum log1p(-k / i)) (via expm1), which is stable for large n where
  the binomial coefficients overflow. Equals 1.0 when n - c < k (every k-subset holds a correct sample).

  Args:
    n: int or int array, number of samples (>= 1).
    c: int or int array, number of correct samples, 0 <= c <= n.
    k: int or int array, 1 <= k <= n.
    (n, c and k broadcast against each other.)

  Returns:
    float64 array of the broadcast shape; a numpy float64 scalar when all inputs are scalars.

  Raises:
    ValueError: if an argument is not integer-valued, or n < 1, c outside [0, n], or k outside [1, n].
  """
  n = _as_integer_array(n, "n")
  c = _as_integer_array(c, "c")
  k = _as_integer_array(k, "k")
  try:
    n, c, k = np.broadcast_arrays(n, c, k)
  except ValueError as error:
    raise ValueError(f"n, c and k must broadcast together, got shapes {n.shape}, {c.shape}, {k.shape}") from error
  if np.any(n < 1):
    raise ValueError(f"n must be >= 1, got min {n.min()}")
  if np.any((c < 0) | (c > n)):
    raise ValueError("c must satisfy 0 <= c <= n")
  if np.any((k < 1) | (k > n)):
    raise ValueError("k must satisfy 1 <= k <= n")

  always_passes = n - c < k
  max_correct = int(c.max()) if c.size else 0
  # Term t covers i = n - c + 1 + t for t < c; masked terms (and always-passing entries) contribute log(1) = 0.
  offsets = np.arange(max_correct, dtype=np.int64)
  sample_index = (n - c + 1)[..., None] + offsets
  in_range = (offsets < c[..., None]) & ~always_passes[..., None]
  safe_index = np.where(in_range, sample_index, 1).astype(np.float64)
  ratio = np.where(in_range, k[..., None] / safe_index, 0.0)
  log_prob_all_fail = np.sum(np.log1p(-ratio), axis=-1)
  result = np.where(always_passes, 1.0, -np.expm1(log_prob_all_fail))
  return result[()] if result.ndim == 0 else result


def report_ks(num_samples: int) -> list[int]:
  """1, 2, 4, ... up to and including `num_samples`."""
  ks = [1 << i for i in range(num_samples.bit_length()) if 1 << i < num_samples]
  return ks + [num_samples]
