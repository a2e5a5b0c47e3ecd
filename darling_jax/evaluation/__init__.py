"""Evaluation metrics: NoveltyBench (greedy partition, distinct, utility, distinct-n) and unbiased pass@k."""

from __future__ import annotations

from darling_jax.evaluation.novelty import (DEFAULT_PATIENCE, distinct_n, greedy_partition, novelty_distinct,
                                            novelty_utility)
from darling_jax.evaluation.pass_at_k import pass_at_k

__all__ = [
    "DEFAULT_PATIENCE",
    "distinct_n",
    "greedy_partition",
    "novelty_distinct",
    "novelty_utility",
    "pass_at_k",
]
