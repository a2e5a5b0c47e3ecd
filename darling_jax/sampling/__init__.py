"""Rollouts: G samples per prompt from the policy, with per-token log-probabilities."""

from darling_jax.sampling.decoding import decode_responses
from darling_jax.sampling.sampler import SampleOutput, generate, pad_prompts, prompt_bucket
from darling_jax.sampling.truncation import truncate_logits

__all__ = ["SampleOutput", "decode_responses", "generate", "pad_prompts", "prompt_bucket", "truncate_logits"]
