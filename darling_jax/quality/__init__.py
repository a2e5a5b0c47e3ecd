"""Quality: TRL-style reward functions (`fn(prompts, completions, **columns) -> list[float | None]`), their weighted
sum (`Quality`), the math-verify answer check and a decoder reward model."""

from darling_jax.quality.functions import REWARD_FUNCTIONS, Quality
from darling_jax.quality.math_verify import math_verify_reward
from darling_jax.quality.reward_model import RewardModel

__all__ = ["REWARD_FUNCTIONS", "Quality", "RewardModel", "math_verify_reward"]
