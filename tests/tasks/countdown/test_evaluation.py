"""The end-of-run Countdown evaluation on fixed responses (the sampler is an argument: here a table of texts)."""

import numpy as np
import pytest

from darling_jax.tasks.countdown.evaluation import evaluate_countdown, pair_agreement, report_ks


def test_metrics_of_fixed_responses():
  batch = {"numbers": [[3, 5, 7, 2], [1, 2, 3, 4]], "target": [26, 10], "num_strategies": [4, 6]}
  texts = {26: ["3*7+5", "5+7*3", "(5+7)*2+2", "3*7+2"], 10: ["1+2+3+4", "1+2+3+4+4", "(1+", "4*3-2"]}
  metrics = evaluate_countdown(lambda b: [texts[t] for t in b["target"]], [batch], num_samples=4)
  assert report_ks(4) == [1, 2, 4]
  assert metrics["problems"] == 2 and metrics["oracle_strategies"] == 5
  # 26: two spellings of one strategy, a 2 used twice, 23; 10: correct, a 4 used twice, unparseable, correct
  assert metrics["pass@4"] == 1.0 and metrics["pass@1"] == pytest.approx(0.5)
  assert metrics["distinct_correct@1"] == 1 and metrics["distinct_correct@2"] == 1
  assert metrics["distinct_correct@4"] == pytest.approx((1 + 2) / 2)
  assert {k: metrics[f"responses/{k}"] for k in ("correct", "wrong_value", "wrong_numbers", "unparseable")} == {
      "correct": 4 / 8, "wrong_value": 1 / 8, "wrong_numbers": 2 / 8, "unparseable": 1 / 8}


def test_pair_agreement_counts_unordered_pairs():
  classes = np.asarray([[0, 0, 2]])
  predicted = np.eye(3, dtype=bool)[None] | np.asarray([[[0, 0, 1], [0, 0, 0], [1, 0, 0]]], bool)
  got = pair_agreement(predicted, classes)  # pairs (0,1) true/missed, (0,2) false/predicted, (1,2) both no
  assert got == {"accuracy": 1 / 3, "precision": 0.0, "recall": 0.0, "equivalent_share": 1 / 3, "pairs": 3}
