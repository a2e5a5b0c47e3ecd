"""Scoring a pair classifier on labelled pairs: P(similar) per pair, accuracy / precision / recall / F1 at a
threshold, and the most accurate threshold on training pairs.

    probs = pair_probabilities(model, tokenizer, examples, max_length=128, both_orders=True)
    metrics = classification_metrics(probs, labels_of(examples), best_threshold(probs, labels_of(examples)))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from darling_jax.equivalence.pair_data import PairExample
from darling_jax.equivalence.pairwise import CrossEncoderClassifier


def pair_probabilities(model, tokenizer, examples: Sequence[PairExample], *, max_length: int,
                       both_orders: bool = True, rows_per_call: int = 64) -> np.ndarray:
  """float32 `[N]` P(similar) of each pair (mean over both orders when `both_orders`), by
  `CrossEncoderClassifier` with the short-answer rule off: every pair goes through the model, except identical
  texts (P = 1)."""
  if not examples:
    return np.zeros(0, np.float32)
  classifier = CrossEncoderClassifier(model, tokenizer, max_length=max_length, both_orders=both_orders,
                                      short_answer_max_words=None, rows_per_call=rows_per_call)
  groups = [[e.text_a, e.text_b] for e in examples]
  return classifier.probabilities(groups)[:, 0, 1].astype(np.float32)


def _check_scores(probs, labels) -> tuple[np.ndarray, np.ndarray]:
  probs = np.asarray(probs, np.float64).reshape(-1)
  labels = np.asarray(labels).reshape(-1)
  if probs.shape != labels.shape or not len(probs):
    raise ValueError(f"probs {probs.shape} and labels {labels.shape} must be equally long and non-empty")
  if not np.isin(labels, (0, 1)).all():
    raise ValueError("labels must be 0/1 (or bool)")
  return probs, labels.astype(bool)


def classification_metrics(probs, labels, threshold: float) -> dict[str, float]:
  """Accuracy, precision, recall and F1 of `similar = probs > threshold` (similar is the positive class;
  precision / recall / F1 are 0 when undefined).

  Args:
    probs: float `[N]` P(similar). labels: `[N]` 0/1. threshold: decision threshold.

  Returns:
    dict: accuracy, precision, recall, f1, threshold, count, positives (labelled similar),
    predicted_positives.
  """
  probs, labels = _check_scores(probs, labels)
  predicted = probs > threshold
  tp = int(np.sum(predicted & labels))
  fp = int(np.sum(predicted & ~labels))
  fn = int(np.sum(~predicted & labels))
  precision = tp / (tp + fp) if tp + fp else 0.0
  recall = tp / (tp + fn) if tp + fn else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  specificity = float(np.mean(~predicted[~labels])) if (~labels).any() else 0.0
  return {"accuracy": float(np.mean(predicted == labels)), "balanced_accuracy": (recall + specificity) / 2,
          "precision": precision, "recall": recall, "f1": f1, "auc": roc_auc(probs, labels),
          "threshold": float(threshold), "count": len(labels), "positives": int(labels.sum()),
          "predicted_positives": int(predicted.sum())}


def roc_auc(scores, labels) -> float:
  """Area under the ROC curve of `scores` for 0/1 `labels` (the Mann-Whitney statistic, ties counted half);
  NaN when only one class occurs."""
  scores, labels = _check_scores(scores, labels)
  positives, negatives = int(labels.sum()), int((~labels).sum())
  if not positives or not negatives:
    return float("nan")
  order = np.argsort(scores, kind="mergesort")
  ranks = np.empty(len(scores))
  sorted_scores = scores[order]
  starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
  ends = np.r_[starts[1:], len(scores)]
  for start, end in zip(starts, ends):  # average rank of each tie block (1-based)
    ranks[order[start:end]] = (start + end + 1) / 2
  return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def best_threshold(probs, labels, *, balanced: bool = False) -> float:
  """The threshold in [0, 1) whose `probs > threshold` is most accurate on these (training) pairs; with
  `balanced`, the one of highest balanced accuracy (mean of the recalls of both classes).

  Candidates are the midpoints between consecutive distinct probabilities and one point below the smallest
  and above the largest; among equally accurate ones the candidate closest to 0.5 wins.
  """
  probs, labels = _check_scores(probs, labels)
  values = np.unique(probs)
  candidates = np.concatenate([[values[0] / 2], (values[:-1] + values[1:]) / 2, [(values[-1] + 1) / 2]])
  candidates = np.clip(candidates, 0.0, np.nextafter(1.0, 0.0))
  order = np.argsort(probs)
  sorted_probs, sorted_labels = probs[order], labels[order]
  negatives_below = np.concatenate([[0], np.cumsum(~sorted_labels)])  # among the first i rows
  positives_below = np.concatenate([[0], np.cumsum(sorted_labels)])
  cut = np.searchsorted(sorted_probs, candidates, side="right")  # rows with prob <= t: predicted different
  correct = negatives_below[cut] + (positives_below[-1] - positives_below[cut])
  if balanced:
    positives, negatives = max(1, positives_below[-1]), max(1, negatives_below[-1])
    correct = negatives_below[cut] / negatives + (positives_below[-1] - positives_below[cut]) / positives
  best = np.flatnonzero(correct == correct.max())
  return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])
