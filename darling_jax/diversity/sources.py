"""Diversity sources: where a step's per-response diversity comes from (`config.rl.diversity_source`).

A source is `fn(completions, batch, context) -> (diversity f32 [B, G], class_ids int32 [B, G] or None)`:

* `classifier` (DARLING, arXiv 2509.02534 §3): the learned pair classifier decides which responses are
  equivalent (`EquivalenceClassifier`), the group is partitioned into connected components (`partition`) and
  each response scores the share of the others outside its class (`diversity_scores`, Eq. 4, floored at 0.1);
* `oracle`: the task's ground-truth classes (`Task.oracle_classes`), same scores (an ablation);
* `ngram`: the paper's lexical baseline, the share of a response's n-grams no other response has (no partition).

    DIVERSITY_SOURCES.register("my_source", my_source)   # a plug-in
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from darling_jax.diversity.ngram import ngram_diversity
from darling_jax.diversity.partition import partition
from darling_jax.diversity.scores import diversity_scores
from darling_jax.registry import Registry

DIVERSITY_SOURCES = Registry("diversity source")


@dataclasses.dataclass(frozen=True)
class DiversityContext:
  """What a diversity source may use.

  Attributes:
    floor: the floor of `diversity_scores` (0.1 in the paper).
    equivalence: the run's pair classifier (`EquivalenceClassifier`), or None.
    oracle_classes: `(completions, batch) -> int32 [B, G]` ground-truth classes, or None (task without one).
    ngram_n, ngram_unit: the `ngram` source's n and units ("word" or "char").
  """

  floor: float = 0.1
  equivalence: Any = None
  oracle_classes: Callable[[Sequence[Sequence[str]], dict], np.ndarray | None] | None = None
  ngram_n: int = 4
  ngram_unit: str = "word"


@DIVERSITY_SOURCES.register("classifier")
def classifier_diversity(completions, batch, context: DiversityContext):
  if context.equivalence is None:
    raise ValueError("rl.diversity_source='classifier' needs an equivalence classifier")
  equivalent, _ = context.equivalence(completions)
  class_ids = np.asarray(partition(equivalent))
  return np.asarray(diversity_scores(class_ids, floor=context.floor)), class_ids


@DIVERSITY_SOURCES.register("oracle")
def oracle_diversity(completions, batch, context: DiversityContext):
  class_ids = None if context.oracle_classes is None else context.oracle_classes(completions, batch)
  if class_ids is None:
    raise ValueError("rl.diversity_source='oracle' needs a task with ground-truth classes (Task.oracle_classes)")
  class_ids = np.asarray(class_ids, np.int32)
  return np.asarray(diversity_scores(class_ids, floor=context.floor)), class_ids


@DIVERSITY_SOURCES.register("ngram")
def ngram_source(completions, batch, context: DiversityContext):
  del batch
  return np.asarray(ngram_diversity(completions, n=context.ngram_n, unit=context.ngram_unit), np.float32), None
