"""The bi-encoder `EquivalenceClassifier`: each response encoded once, pairs scored from their similarities.

A cross-encoder reads every pair jointly: B·G(G−1)/2 encoder passes per batch (28 per group at G = 8). Here a
sentence encoder (a BERT `BertModel` such as all-MiniLM-L6-v2, mean-pooled as sentence-transformers does)
encodes each distinct response once, `similarity_features.pair_features` turns two responses into a few
similarity scores, and a `SimilarityHead` (logistic regression, fitted on labelled pairs) into P(similar).
On NoveltyBench's human pairs this generalises better than fine-tuned cross-encoders of the same size, which
memorise 1,000 pairs (experiments/README.md).

    classifier, _ = train_bi_encoder(encoder_dir, examples)      # examples: equivalence.pair_data.PairExample
    save_bi_encoder(classifier, "nb_bi_encoder")                 # encoder + tokenizer + darling.json (the head)
    classifier = load_bi_encoder("nb_bi_encoder")
    equivalent, probs = classifier(groups)                       # bool / float32 [B, G, G]
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import shutil
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from darling_jax.diversity.short_answer import DEFAULT_MAX_WORDS
from darling_jax.equivalence.base import EquivalenceClassifier
from darling_jax.equivalence.pairwise import padded_row_chunks, width_buckets
from darling_jax.equivalence.similarity_features import FEATURE_NAMES, LexicalProfile, pair_features

KIND = "bi_encoder"
INFO_FILE = "darling.json"
DEFAULT_MAX_TOKENS = 256  # all-MiniLM-L6-v2's sentence-transformers max_seq_length


@functools.partial(jax.jit, static_argnames=("graphdef", "head_tokens"))
def mean_pooled_embeddings(graphdef, state, input_ids, attention_mask, *, head_tokens: int):
  """Unit-norm mean-pooled last hidden states (sentence-transformers' pooling, [CLS]/[SEP] included).

  input_ids, attention_mask: int32 `[R, W]` -> float32 `[R, 2, E]`: pooled over every real token, and over
  the real tokens among the first `head_tokens`.
  """
  encoder = nnx.merge(graphdef, state)
  hidden = encoder(input_ids, attention_mask, jnp.zeros_like(input_ids)).astype(jnp.float32)  # [R, W, E]
  real = attention_mask > 0
  masks = jnp.stack([real, real & (jnp.arange(input_ids.shape[1]) < head_tokens)[None]], axis=1)  # [R, 2, W]
  weights = masks.astype(jnp.float32)
  pooled = jnp.einsum("rvw,rwe->rve", weights, hidden) / jnp.maximum(weights.sum(-1, keepdims=True), 1.0)
  return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


@dataclasses.dataclass(frozen=True)
class SimilarityHead:
  """Logistic regression on standardised pair features: `P = σ(w · (x − mean) / scale + bias)`.

  Attributes:
    feature_names: which `FEATURE_NAMES`, in order (a saved head names its features; a mismatch is an error).
    mean, scale, weights: float lists, one per feature. bias: float.
  """

  feature_names: tuple[str, ...]
  mean: tuple[float, ...]
  scale: tuple[float, ...]
  weights: tuple[float, ...]
  bias: float

  def __post_init__(self):
    if tuple(self.feature_names) != FEATURE_NAMES:
      raise ValueError(f"head features {tuple(self.feature_names)} are not this version's {FEATURE_NAMES}")
    for name in ("mean", "scale", "weights"):
      values = getattr(self, name)
      if len(values) != len(FEATURE_NAMES) or not all(np.isfinite(values)):
        raise ValueError(f"head {name} must be {len(FEATURE_NAMES)} finite numbers, got {values}")

  def probabilities(self, features: np.ndarray) -> np.ndarray:
    """float32 `[P, F]` features -> float32 `[P]` P(similar)."""
    z = (features - np.asarray(self.mean)) / np.asarray(self.scale)
    logits = z @ np.asarray(self.weights) + self.bias
    return (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)  # σ without exp overflow

  @classmethod
  def fit(cls, features: np.ndarray, labels: np.ndarray, *, l2: float = 1.0, iterations: int = 50) -> SimilarityHead:
    """Class-balanced, L2-regularised logistic regression by Newton's method (a convex problem with
    `len(FEATURE_NAMES) + 1` parameters: exact to float64 in a few iterations).

    Args:
      features: float `[N, F]`. labels: int `[N]`, 1 = similar; both classes must occur.
      l2: penalty on the weights (not the bias) of the standardised features.
    """
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels, np.float64)
    if features.ndim != 2 or features.shape != (len(labels), len(FEATURE_NAMES)):
      raise ValueError(f"features must be [N, {len(FEATURE_NAMES)}] for N = {len(labels)} labels, got "
                       f"{features.shape}")
    positive = labels.mean()
    if not 0.0 < positive < 1.0:
      raise ValueError(f"labels must contain both classes, got a positive rate of {positive}")
    mean, scale = features.mean(0), features.std(0) + 1e-9
    z = np.c_[(features - mean) / scale, np.ones(len(labels))]
    sample_weight = np.where(labels == 1, 0.5 / positive, 0.5 / (1.0 - positive))
    penalty = np.diag(np.r_[np.full(z.shape[1] - 1, l2), 0.0])
    w = np.zeros(z.shape[1])
    for _ in range(iterations):
      p = 1.0 / (1.0 + np.exp(-z @ w))
      gradient = z.T @ (sample_weight * (p - labels)) + penalty @ w
      hessian = (z * (sample_weight * p * (1.0 - p))[:, None]).T @ z + penalty
      step = np.linalg.solve(hessian, gradient)
      w -= step
      if np.abs(step).max() < 1e-10:
        break
    return cls(FEATURE_NAMES, tuple(mean.tolist()), tuple(scale.tolist()), tuple(w[:-1].tolist()), float(w[-1]))

  def to_json(self) -> dict[str, Any]:
    return {"feature_names": list(self.feature_names), "mean": list(self.mean), "scale": list(self.scale),
            "weights": list(self.weights), "bias": self.bias}

  @classmethod
  def from_json(cls, data: dict[str, Any]) -> SimilarityHead:
    return cls(tuple(data["feature_names"]), tuple(data["mean"]), tuple(data["scale"]), tuple(data["weights"]),
               float(data["bias"]))


class BiEncoderClassifier(EquivalenceClassifier):
  """An `EquivalenceClassifier` that encodes each distinct response once (see the module docstring).

  Args:
    encoder: a `darling_jax.classifiers.bert.BertModel` (e.g. `classifier_from_encoder(path).bert`).
    tokenizer: its transformers tokenizer (adds [CLS] / [SEP]).
    head: the fitted `SimilarityHead`; None gives an unfitted classifier whose `pair_features` still work
      (what `train_bi_encoder` fits the head on).
    max_tokens: tokens per response, [CLS] and [SEP] included (None: 256 or the encoder's positions if fewer).
      head_tokens: the `cosine_head` prefix (None: half of `max_tokens`).
    threshold, short_answer_max_words: see `EquivalenceClassifier`.
    rows_per_call: responses per jitted encoder call.
    sharding: optional sharding of the `[R, W]` token arrays (rows over the data axes).
  """

  kind = "bi_encoder"

  def __init__(self, encoder, tokenizer, head: SimilarityHead | None, *, max_tokens: int | None = None,
               head_tokens: int | None = None, threshold: float = 0.5,
               short_answer_max_words: int | None = DEFAULT_MAX_WORDS, rows_per_call: int = 32,
               sharding: jax.sharding.Sharding | None = None):
    super().__init__(threshold=threshold, short_answer_max_words=short_answer_max_words)
    max_positions = encoder.embeddings.position_embeddings.weight.shape[0]
    max_tokens = min(DEFAULT_MAX_TOKENS, max_positions) if max_tokens is None else max_tokens
    if not 3 <= max_tokens <= max_positions:
      raise ValueError(f"max_tokens must be in [3, {max_positions}] (the encoder's positions), got {max_tokens}")
    head_tokens = max_tokens // 2 if head_tokens is None else head_tokens
    if not 1 <= head_tokens <= max_tokens:
      raise ValueError(f"head_tokens must be in [1, max_tokens={max_tokens}], got {head_tokens}")
    if rows_per_call < 1:
      raise ValueError(f"rows_per_call must be >= 1, got {rows_per_call}")
    self.graphdef, self.state = nnx.split(encoder)
    self.tokenizer = tokenizer
    self.head = head
    self.max_tokens, self.head_tokens = int(max_tokens), int(head_tokens)
    self.rows_per_call = rows_per_call
    self.sharding = sharding
    self.pad_id = tokenizer.pad_token_id or 0
    self.widths = width_buckets(self.max_tokens)

  def embed(self, texts: Sequence[str]) -> np.ndarray:
    """float32 `[N, 2, E]` unit vectors of each text (whole, first `head_tokens`), texts sorted into width
    buckets and run `rows_per_call` at a time."""
    if not texts:
      return np.zeros((0, 2, 0), np.float32)
    token_ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens)["input_ids"]
    out = None
    for chunk, ids, mask in padded_row_chunks(token_ids, self.widths, self.rows_per_call, self.pad_id,
                                              self.sharding):
      pooled = np.asarray(mean_pooled_embeddings(self.graphdef, self.state, ids, mask,
                                                 head_tokens=self.head_tokens))
      if out is None:
        out = np.zeros((len(texts),) + pooled.shape[1:], np.float32)
      out[chunk] = pooled[:len(chunk)]
    return out

  def pair_features(self, texts: Sequence[str], pairs: list[tuple[int, int]]) -> np.ndarray:
    """float32 `[P, len(FEATURE_NAMES)]` of `(texts[i], texts[j])` for each pair (each text embedded once)."""
    return pair_features(self.embed(texts), [LexicalProfile.of(t) for t in texts], pairs)

  def _pair_probabilities(self, texts: list[str], pairs: list[tuple[int, int]]) -> np.ndarray:
    if self.head is None:
      raise ValueError("this BiEncoderClassifier has no SimilarityHead yet: fit one (train_bi_encoder)")
    return self.head.probabilities(self.pair_features(texts, pairs))


def examples_features(classifier: BiEncoderClassifier, examples) -> np.ndarray:
  """float32 `[N, F]` pair features of labelled `PairExample`s (each distinct text embedded once)."""
  index: dict[str, int] = {}
  for e in examples:
    for text in (e.text_a, e.text_b):
      index.setdefault(text, len(index))
  return classifier.pair_features(list(index), [(index[e.text_a], index[e.text_b]) for e in examples])


def load_encoder(path: str | os.PathLike):
  """`(BertModel, tokenizer)` of a BERT encoder directory (a `BertModel` or `Bert*` checkpoint)."""
  from darling_jax.classifiers.from_encoder import classifier_from_encoder
  from darling_jax.models.tokenizer import load_tokenizer
  return classifier_from_encoder(path).bert, load_tokenizer(path)


def train_bi_encoder(encoder_path: str | os.PathLike, examples, *, l2: float = 1.0,
                     max_tokens: int | None = None, head_tokens: int | None = None,
                     threshold: float | None = None,
                     **classifier_kwargs) -> tuple[BiEncoderClassifier, np.ndarray]:
  """A `BiEncoderClassifier` over the encoder at `encoder_path`, its head fitted on labelled `examples`
  (`PairExample`s), and the examples' pair features float32 `[N, F]`.

  `threshold` None picks the one that maximises balanced accuracy on `examples` (the paper's held-out pairs
  are 50/50; NoveltyBench's training pairs are a third "similar").
  """
  from darling_jax.equivalence.pair_data import labels_of
  from darling_jax.equivalence.pair_metrics import best_threshold
  encoder, tokenizer = load_encoder(encoder_path)
  classifier = BiEncoderClassifier(encoder, tokenizer, None, max_tokens=max_tokens, head_tokens=head_tokens,
                                   **classifier_kwargs)
  labels = labels_of(examples)
  features = examples_features(classifier, examples)
  classifier.head = SimilarityHead.fit(features, labels, l2=l2)
  if threshold is None:
    threshold = best_threshold(classifier.head.probabilities(features), labels, balanced=True)
  classifier.threshold = float(threshold)
  return classifier, features


def save_bi_encoder(classifier: BiEncoderClassifier, path: str | os.PathLike, *,
                    info: dict[str, Any] | None = None) -> None:
  """Writes the encoder (config.json + model.safetensors), its tokenizer and `darling.json` (kind, head,
  threshold, token budgets, `info`) to `path`, atomically (a staging directory renamed into place)."""
  from darling_jax.models.hf_checkpoint import module_tensor_name, write_hf_directory
  if classifier.head is None:
    raise ValueError("save_bi_encoder: the classifier has no fitted head")
  encoder = nnx.merge(classifier.graphdef, classifier.state)
  hf = {**encoder.config.to_hf(), "architectures": ["BertModel"]}
  for key in ("id2label", "label2id", "num_labels"):
    hf.pop(key, None)
  data = {"kind": KIND, "head": classifier.head.to_json(), "threshold": classifier.threshold,
          "max_tokens": classifier.max_tokens, "head_tokens": classifier.head_tokens, **(info or {})}
  path = pathlib.Path(path)
  staging = path.parent / f".{path.name}.staging"
  write_hf_directory(encoder, staging, hf, module_tensor_name, tokenizer=classifier.tokenizer)
  (staging / INFO_FILE).write_text(json.dumps(data, indent=2))
  if path.exists():
    shutil.rmtree(path)
  staging.rename(path)


def is_bi_encoder(path: str | os.PathLike) -> bool:
  info = pathlib.Path(path) / INFO_FILE
  return info.exists() and json.loads(info.read_text()).get("kind") == KIND


def load_bi_encoder(path: str | os.PathLike, **overrides) -> BiEncoderClassifier:
  """The `BiEncoderClassifier` saved by `save_bi_encoder` at `path`; `overrides` replace its constructor
  arguments (threshold, max_tokens, head_tokens, short_answer_max_words, rows_per_call, sharding)."""
  path = pathlib.Path(path)
  if not is_bi_encoder(path):
    raise ValueError(f"{path}: not a bi-encoder classifier directory ({INFO_FILE} with kind {KIND!r} missing)")
  data = json.loads((path / INFO_FILE).read_text())
  encoder, tokenizer = load_encoder(path)
  kwargs = dict(max_tokens=data["max_tokens"], head_tokens=data["head_tokens"], threshold=data["threshold"])
  kwargs.update(overrides)
  return BiEncoderClassifier(encoder, tokenizer, SimilarityHead.from_json(data["head"]), **kwargs)
