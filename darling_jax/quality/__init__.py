"""Quality: TRL-style reward functions (`fn(prompts, completions, **columns) -> list[float | None]`), their weighted
sum (`Quality`), the math-verify answer check, a decoder reward model, and the offline prompt-relevance quality
(`prompt_relevance`: MiniLM prompt-response cosine × a repetition penalty)."""

from darling_jax.quality.functions import REWARD_FUNCTIONS, Quality
from darling_jax.quality.math_verify import math_verify_reward
from darling_jax.quality.relevance import PromptRelevance, prompt_relevance
from darling_jax.quality.reward_model import RewardModel

__all__ = ["REWARD_FUNCTIONS", "PromptRelevance", "Quality", "RewardModel", "math_verify_reward", "prompt_relevance"]
