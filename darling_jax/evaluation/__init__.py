"""Evaluation metrics: NoveltyBench (greedy partition, distinct, utility, distinct-n), unbiased pass@k, and a pair
classifier's agreement with ground-truth classes."""

from __future__ import annotations

from darling_jax.evaluation.novelty import (DEFAULT_PATIENCE, distinct_n, greedy_partition, novelty_distinct,
                                            novelty_utility)
from darling_jax.evaluation.classifier_agreement import pair_agreement
from darling_jax.evaluation.pass_at_k import pass_at_k, report_ks

__all__ = [
    "DEFAULT_PATIENCE",
    "distinct_n",
    "greedy_partition",
    "novelty_distinct",
    "novelty_utility",
    "pair_agreement",
    "pass_at_k",
    "report_ks",
]
