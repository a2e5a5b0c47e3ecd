"""Scoring a pair classifier: metrics at a threshold and the most accurate threshold, on hand examples."""

import numpy as np
import pytest

from darling_jax.equivalence.pair_metrics import best_threshold, classification_metrics


def test_best_threshold_and_metrics_on_hand_examples():
  probs = np.array([0.1, 0.2, 0.35, 0.4, 0.8, 0.9])
  labels = np.array([0, 0, 1, 0, 1, 1])
  # 0.275 (between 0.2 and 0.35) errs on 0.4 only, 0.6 (between 0.4 and 0.8) on 0.35 only: both 5/6, and 0.6
  # is closer to 0.5. 0.375 errs twice.
  assert best_threshold(probs, labels) == pytest.approx(0.6)
  metrics = classification_metrics(probs, labels, 0.3)
  # predicted similar: 0.35, 0.4, 0.8, 0.9 -> tp 3, fp 1, fn 0
  assert metrics["accuracy"] == pytest.approx(5 / 6)
  assert metrics["precision"] == pytest.approx(3 / 4) and metrics["recall"] == 1.0
  assert metrics["f1"] == pytest.approx(2 * 0.75 / 1.75)
  assert classification_metrics(probs, labels, 0.95)["f1"] == 0.0  # nothing predicted similar
  assert best_threshold([0.2, 0.9], [1, 1]) == pytest.approx(0.1)  # all similar: below the smallest
  assert best_threshold([0.2, 0.9], [0, 0]) == pytest.approx(0.95)  # all different: above the largest
  assert 0 <= best_threshold([1.0, 1.0], [0, 0]) < 1
