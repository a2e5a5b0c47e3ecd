"""Semantic and lexical diversity of a group of rollouts (DARLING arXiv 2509.02534, Sec. 3 / Eq. 4)."""

from __future__ import annotations

from darling_jax.diversity.ngram import ngram_diversity
from darling_jax.diversity.partition import partition
from darling_jax.diversity.scores import DEFAULT_DIVERSITY_FLOOR, diversity_scores
from darling_jax.diversity.short_answer import DEFAULT_MAX_WORDS, short_answer_equivalent, short_answer_matrix

__all__ = [
    "DEFAULT_DIVERSITY_FLOOR",
    "DEFAULT_MAX_WORDS",
    "diversity_scores",
    "ngram_diversity",
    "partition",
    "short_answer_equivalent",
    "short_answer_matrix",
]
