"""How a pair classifier's verdicts on rollouts agree with ground-truth classes."""

from __future__ import annotations

import numpy as np


def pair_agreement(equivalent: np.ndarray, class_ids: np.ndarray) -> dict[str, float]:
  """How a predicted equivalence `bool[B, G, G]` agrees with ground-truth classes `int[B, G]`, over the
  unordered pairs i < j of every group: accuracy, and precision / recall of "equivalent"."""
  equivalent = np.asarray(equivalent, bool)
  truth = class_ids[:, :, None] == class_ids[:, None, :]
  upper = np.triu(np.ones(truth.shape[1:], bool), k=1)[None]
  predicted, actual = equivalent[np.broadcast_to(upper, truth.shape)], truth[np.broadcast_to(upper, truth.shape)]
  true_positive = np.sum(predicted & actual)
  return {"accuracy": float(np.mean(predicted == actual)),
          "precision": float(true_positive / max(1, predicted.sum())),
          "recall": float(true_positive / max(1, actual.sum())),
          "equivalent_share": float(actual.mean()), "pairs": int(actual.size)}
