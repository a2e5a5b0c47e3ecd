"""GRPO pieces: group-relative advantages and the PPO-clip policy loss."""

from darling_jax.grpo.advantages import group_advantages, group_mean_std
from darling_jax.grpo.loss import (
    AGG_MODES,
    TOKEN_METRICS,
    PolicyLossTerms,
    policy_loss,
    policy_loss_from_terms,
    policy_loss_terms,
)

__all__ = [
    "AGG_MODES",
    "TOKEN_METRICS",
    "PolicyLossTerms",
    "group_advantages",
    "group_mean_std",
    "policy_loss",
    "policy_loss_from_terms",
    "policy_loss_terms",
]
