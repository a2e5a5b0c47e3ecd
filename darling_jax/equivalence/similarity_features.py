"""What a bi-encoder equivalence classifier knows about a pair of responses: a few similarity scores.

Each response is read once: a sentence encoder gives two unit vectors (mean-pooled over its first
`max_tokens` tokens, and over the first `head_tokens` of them), and a `LexicalProfile` its words, bigrams,
opening, capitalised names and numbers. A pair is then the `FEATURE_NAMES` vector below, computed from the two
profiles alone, so G responses cost G encoder passes, not G(G−1)/2 pair passes. `SimilarityHead` (logistic
regression on these features, `darling_jax.equivalence.bi_encoder`) turns them into P(similar).

Why these: on NoveltyBench's 1,000 human-labelled pairs (arXiv 2509.02534 §3.2 trains its classifier on them),
each of cosine and word overlap alone separates "similar" from "different" with AUC ≈ 0.75; together with the
others the 5-fold cross-validated AUC is ≈ 0.81 (experiments/README.md, "A NoveltyBench equivalence classifier").
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

FEATURE_NAMES = (
    "cosine",           # mean-pooled embeddings of the whole response (first max_tokens tokens)
    "cosine_head",      # mean-pooled over the first head_tokens tokens only: the opening's content
    "word_jaccard",     # |A ∩ B| / |A ∪ B| of lowercase word sets
    "bigram_jaccard",   # the same for word bigrams
    "opening_jaccard",  # the same for the first OPENING_WORDS words
    "length_ratio",     # log((min words + 1) / (max words + 1)) ≤ 0
    "name_jaccard",     # capitalised words not opening a sentence (names, titles, places), lowercased
    "number_jaccard",   # digit strings
)
OPENING_WORDS = 20
_WORD = re.compile(r"[a-z0-9']+")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-zA-Z]+")
_NUMBER = re.compile(r"\d+")


@dataclasses.dataclass(frozen=True)
class LexicalProfile:
  """The word-level facts of one response that the pair features use."""

  words: frozenset[str]
  bigrams: frozenset[tuple[str, str]]
  opening: frozenset[str]
  num_words: int
  names: frozenset[str]
  numbers: frozenset[str]

  @classmethod
  def of(cls, text: str) -> LexicalProfile:
    words = _WORD.findall(text.lower())
    return cls(words=frozenset(words), bigrams=frozenset(zip(words, words[1:])),
               opening=frozenset(words[:OPENING_WORDS]), num_words=len(words),
               names=frozenset(name.lower() for name in _NAME.findall(text)),
               numbers=frozenset(_NUMBER.findall(text)))


def jaccard(a: frozenset, b: frozenset) -> float:
  """|a ∩ b| / |a ∪ b|, 0 for two empty sets."""
  union = len(a | b)
  return len(a & b) / union if union else 0.0


def pair_features(embeddings: np.ndarray, profiles: list[LexicalProfile],
                  pairs: list[tuple[int, int]]) -> np.ndarray:
  """float32 `[P, len(FEATURE_NAMES)]`, one row per `(i, j)` of `pairs`.

  Args:
    embeddings: float32 `[N, 2, E]` unit vectors of each text (whole, head), from `BiEncoderClassifier.embed`.
    profiles: the N texts' `LexicalProfile`s.
    pairs: `(i, j)` indices into both.
  """
  if not pairs:
    return np.zeros((0, len(FEATURE_NAMES)), np.float32)
  left, right = np.asarray(pairs).T
  cosines = np.einsum("pve,pve->pv", embeddings[left], embeddings[right])  # [P, 2]
  rows = []
  for (i, j), cosine in zip(pairs, cosines):
    a, b = profiles[i], profiles[j]
    rows.append((cosine[0], cosine[1], jaccard(a.words, b.words), jaccard(a.bigrams, b.bigrams),
                 jaccard(a.opening, b.opening),
                 math.log((min(a.num_words, b.num_words) + 1) / (max(a.num_words, b.num_words) + 1)),
                 jaccard(a.names, b.names), jaccard(a.numbers, b.numbers)))
  return np.asarray(rows, np.float32)
