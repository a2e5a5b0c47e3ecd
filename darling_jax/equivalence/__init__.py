"""Classify pairs: which of a group's responses are equivalent (pair encoding, batched pairwise kernel).

Public API:
  PairFormat, pair_ids, tokenize_responses         # [CLS] a [SEP] b [SEP] inputs
  EquivalenceClassifier(model, tokenizer)(groups)  # -> (equivalent bool [B, G, G], P(similar) f32 [B, G, G])
"""

from darling_jax.equivalence.encoding import PairFormat, pad_pairs, pair_ids, tokenize_responses
from darling_jax.equivalence.pairwise import DEFAULT_THRESHOLD, EquivalenceClassifier, similar_probability

__all__ = [
    "DEFAULT_THRESHOLD", "EquivalenceClassifier", "PairFormat", "pad_pairs", "pair_ids", "similar_probability",
    "tokenize_responses",
]
