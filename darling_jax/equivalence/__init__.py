"""Classify pairs: which of a group's responses are equivalent.

Public API:
  EquivalenceClassifier                            # the interface: (groups) -> (equivalent bool [B, G, G],
                                                   #   P(similar) f32 [B, G, G]); identical / short answers
                                                   #   decided without a model
  CrossEncoderClassifier(model, tokenizer)         # [CLS] a [SEP] b [SEP] through a sequence classifier
  BiEncoderClassifier(encoder, tokenizer, head)    # each response encoded once; SimilarityHead on features
  load_equivalence_classifier(path)                # either kind, from a saved directory
  PairFormat, pair_ids, tokenize_responses         # the cross-encoder's pair inputs
"""

from darling_jax.equivalence.base import DEFAULT_THRESHOLD, EquivalenceClassifier
from darling_jax.equivalence.bi_encoder import (BiEncoderClassifier, SimilarityHead, load_bi_encoder,
                                                save_bi_encoder, train_bi_encoder)
from darling_jax.equivalence.encoding import PairFormat, pad_pairs, pair_ids, tokenize_responses
from darling_jax.equivalence.loading import load_equivalence_classifier
from darling_jax.equivalence.pairwise import CrossEncoderClassifier, similar_probability

__all__ = [
    "BiEncoderClassifier", "CrossEncoderClassifier", "DEFAULT_THRESHOLD", "EquivalenceClassifier", "PairFormat",
    "SimilarityHead", "load_bi_encoder", "load_equivalence_classifier", "pad_pairs", "pair_ids", "save_bi_encoder",
    "similar_probability", "tokenize_responses", "train_bi_encoder",
]
