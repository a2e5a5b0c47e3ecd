"""GRPO pieces: group-relative advantages, the PPO-clip policy loss and the (sharded) policy update."""

from darling_jax.grpo.advantages import group_advantages, group_mean_std
from darling_jax.grpo.batch import RolloutBatch, global_rollout_batch, rollout_batch, rollout_batch_shardings
from darling_jax.grpo.loss import (
    AGG_MODES,
    TOKEN_METRICS,
    PolicyLossTerms,
    policy_loss,
    policy_loss_from_terms,
    policy_loss_terms,
)
from darling_jax.grpo.reference import make_reference_logprobs
from darling_jax.grpo.update import (
    METRICS,
    SCHEDULES,
    TrainState,
    UpdateConfig,
    grpo_update,
    init_train_state,
    make_optimizer,
    make_schedule,
    make_update_fn,
    minibatch_gradients,
    response_logprobs,
    train_state_shardings,
)

__all__ = [
    "AGG_MODES",
    "METRICS",
    "SCHEDULES",
    "TOKEN_METRICS",
    "PolicyLossTerms",
    "RolloutBatch",
    "TrainState",
    "UpdateConfig",
    "global_rollout_batch",
    "group_advantages",
    "group_mean_std",
    "grpo_update",
    "init_train_state",
    "make_optimizer",
    "make_reference_logprobs",
    "make_schedule",
    "make_update_fn",
    "minibatch_gradients",
    "policy_loss",
    "policy_loss_from_terms",
    "policy_loss_terms",
    "response_logprobs",
    "rollout_batch",
    "rollout_batch_shardings",
    "train_state_shardings",
]
