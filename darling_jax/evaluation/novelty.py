"""NoveltyBench metrics (Zhang et al., arXiv 2504.05228): greedy partition, distinct, utility, distinct-n.

Upstream reference: `novelty-bench/novelty-bench` @ 5b22b53, `src/partition.py` (`partition_responses`) and
`src/score.py`; DARLING evaluates with the same greedy rule and reports Distinct (#classes) and utility at
patience 1.0.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from darling_jax.array_utils import as_array

DEFAULT_PATIENCE = 0.8


def _check_square_bool(equivalent: jax.Array) -> None:
  if equivalent.ndim < 2 or equivalent.shape[-1] != equivalent.shape[-2]:
    raise ValueError(f"equivalent must have shape [..., G, G], got shape {equivalent.shape}")
  if equivalent.dtype != np.bool_:
    raise ValueError(f"equivalent must have dtype bool, got {equivalent.dtype}")
  if equivalent.shape[-1] == 0:
    raise ValueError("equivalent must describe a group of at least one response, got G = 0")


def _check_class_ids(class_ids: jax.Array) -> None:
  if class_ids.ndim < 1 or class_ids.shape[-1] == 0:
    raise ValueError(f"class_ids must have shape [..., G] with G >= 1, got shape {class_ids.shape}")
  if class_ids.dtype == np.bool_ or not np.issubdtype(class_ids.dtype, np.integer):
    raise ValueError(f"class_ids must have an integer dtype, got {class_ids.dtype}")


def greedy_partition(equivalent: jax.typing.ArrayLike) -> jax.Array:
  """NoveltyBench's evaluation partition: greedy, representative-based, not transitive.

  Responses are visited in order. An unassigned response r opens a new class and becomes its representative;
  every later unassigned response j with `equivalent[..., r, j]` joins it. Hence each response joins the
  earliest-created class whose *first member* it matches and is never compared with other members: for
  a ~ b, b ~ c, a !~ c the classes are {a, b}, {c}. Only the entries [r, j] with r < j are read (upstream
  calls `equivalence_alg(prompt, current_class[0], responses[j])`, representative first), so the input need
  not be symmetric. Jittable; a `fori_loop` over the static G, vectorised over leading dims.

  Args:
    equivalent: bool[..., G, G], `equivalent[..., r, j]` is the verdict for representative r and response j.

  Returns:
    int32[..., G]: the index of the first member (representative) of each response's class.

  Raises:
    ValueError: if `equivalent` is not a bool array of shape [..., G, G] with G >= 1.
  """
  equivalent = as_array(equivalent)
  _check_square_bool(equivalent)
  return _greedy_labels(equivalent)


@jax.jit
def _greedy_labels(equivalent: jax.Array) -> jax.Array:
  """Jitted core of `greedy_partition` for a validated bool[..., G, G] input."""
  group_size = equivalent.shape[-1]
  positions = jnp.arange(group_size, dtype=jnp.int32)
  unassigned = jnp.int32(-1)

  def visit(representative, labels: jax.Array) -> jax.Array:
    opens_class = labels[..., representative] == unassigned
    matches = jnp.take(equivalent, representative, axis=-2)
    # Every response before `representative` is already assigned, so only itself and later ones can join.
    joins = opens_class[..., None] & (labels == unassigned) & ((positions == representative) | matches)
    return jnp.where(joins, representative, labels)

  initial_labels = jnp.full(equivalent.shape[:-1], unassigned, jnp.int32)
  return lax.fori_loop(0, group_size, visit, initial_labels)


def _starts_new_class(class_ids: jax.Array) -> jax.Array:
  """bool[..., G]: response i's class differs from that of every earlier response j < i."""
  group_size = class_ids.shape[-1]
  earlier = jnp.tril(jnp.ones((group_size, group_size), jnp.bool_), k=-1)  # [i, j] = j < i
  same_as_earlier = (class_ids[..., :, None] == class_ids[..., None, :]) & earlier
  return ~jnp.any(same_as_earlier, axis=-1)


def novelty_distinct(class_ids: jax.typing.ArrayLike) -> jax.Array:
  """NoveltyBench distinct_k: the number of distinct classes among the k = G generations.

  This counts classes (`len(partition_scores)` after upstream commit db138f1), not `max(class_ids)`, which
  the pre-fix summary averaged and which is #classes - 1 for 0-based consecutive labels. Works for any
  integer labelling. Jittable.

  Args:
    class_ids: int[..., G] class labels.

  Returns:
    int32[...] number of distinct labels per group, in [1, G].

  Raises:
    ValueError: if `class_ids` is not an integer array with a non-empty last axis.
  """
  class_ids = as_array(class_ids)
  _check_class_ids(class_ids)
  return _count_classes(class_ids)


@jax.jit
def _count_classes(class_ids: jax.Array) -> jax.Array:
  """Jitted core of `novelty_distinct` for validated int[..., G] labels."""
  return jnp.sum(_starts_new_class(class_ids), axis=-1, dtype=jnp.int32)


def novelty_utility(class_ids: jax.typing.ArrayLike, quality: jax.typing.ArrayLike,
                    patience: float = DEFAULT_PATIENCE) -> jax.Array:
  """NoveltyBench utility_k (paper Eq. 2; upstream `src/score.py`).

    utility_k = ((1 - p) / (1 - p**k)) * sum_{i=1..k} p**(i-1) * 1[c_i != c_j for all j < i] * u_i,

  with k = G. Upstream keeps the quality only of the first member of each class (later members get 0) and
  takes `np.average(gen_scores, weights=p ** arange(k))`; the normaliser is computed the same way, as
  1 / sum_i p**(i-1), which equals (1 - p) / (1 - p**k) for p < 1 and is 1/k at p = 1 (DARLING's setting,
  where utility is the mean over the k generations of first-member quality). Jittable.

  Args:
    class_ids: int[..., G] class labels (any labelling; order of responses matters).
    quality: float[..., G] quality u_i of each response (NoveltyBench: 1..10 from the reward-model deciles).
    patience: the user's patience p, in (0, 1].

  Returns:
    float32[...] utility per group.

  Raises:
    ValueError: if `class_ids` is not an integer [..., G] array, `quality` has a different shape, or
      `patience` is outside (0, 1].
  """
  class_ids = as_array(class_ids)
  quality = as_array(quality)
  _check_class_ids(class_ids)
  if quality.shape != class_ids.shape:
    raise ValueError(f"quality must have the shape of class_ids {class_ids.shape}, got {quality.shape}")
  if isinstance(patience, numbers.Real) and not 0.0 < float(patience) <= 1.0:
    raise ValueError(f"patience must be in (0, 1], got {patience}")
  return _discounted_novel_quality(class_ids, quality, patience)


@jax.jit
def _discounted_novel_quality(class_ids: jax.Array, quality: jax.Array,
                              patience: jax.typing.ArrayLike) -> jax.Array:
  """Jitted core of `novelty_utility` for validated inputs and a scalar patience."""
  group_size = class_ids.shape[-1]
  weights = jnp.power(jnp.asarray(patience, jnp.float32), jnp.arange(group_size, dtype=jnp.float32))
  new_class_quality = jnp.where(_starts_new_class(class_ids), quality.astype(jnp.float32), 0.0)
  return jnp.sum(weights * new_class_quality, axis=-1) / jnp.sum(weights)


def distinct_n(texts: Sequence[str], n: int) -> float:
  """Lexical distinct-n: distinct whitespace n-grams over all texts / total n-gram positions over all texts.

  Args:
    texts: response strings (e.g. all generations for one prompt).
    n: n-gram length, a positive integer.

  Returns:
    The ratio in [0, 1]; 0.0 when no text has n words.

  Raises:
    ValueError: if `texts` is not a sequence of strings or `n` is not a positive integer.
  """
  if isinstance(n, bool) or not isinstance(n, int) or n < 1:
    raise ValueError(f"n must be a positive integer, got {n!r}")
  if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
    raise ValueError("texts must be a sequence of strings")
  distinct_ngrams = set()
  num_positions = 0
  for text in texts:
    words = text.split()
    for start in range(len(words) - n + 1):
      distinct_ngrams.add(tuple(words[start:start + n]))
      num_positions += 1
  return len(distinct_ngrams) / num_positions if num_positions else 0.0
