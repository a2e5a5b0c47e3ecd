"""darling_jax: DARLING (diversity-aware GRPO, arXiv 2509.02534) as functional JAX / Flax NNX building blocks.

Data flow of one RL step: `sampling` (G samples per prompt) → `classifiers` (pairwise equivalence) →
`diversity` (partition, per-response diversity) → `rewards` (quality × diversity) → `grpo` (advantages, loss).
"""

__version__ = "0.1.0"
