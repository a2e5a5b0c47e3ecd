"""End-of-run Countdown evaluation: pass@k, distinct correct strategies vs the oracle, classifier accuracy.

    metrics = evaluate_countdown(sample_texts, batches, num_samples=8, equivalence=classifier)

`sample_texts(batch) -> B lists of n texts` draws the policy's responses (e.g. `TrainStep.sample` + decode);
`batches` are loader batches of the test split (`prompt`, `numbers`, `target`, `num_strategies`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from darling_jax.evaluation.classifier_agreement import pair_agreement
from darling_jax.evaluation.pass_at_k import pass_at_k, report_ks
from darling_jax.tasks.countdown.oracle import first_member_classes, response_key
from darling_jax.tasks.countdown.problems import RESPONSE_VERDICTS, response_verdict


def evaluate_countdown(sample_texts: Callable[[dict[str, Any]], Sequence[Sequence[str]]],
                       batches: Iterable[dict[str, Any]], *, num_samples: int, equivalence=None
                       ) -> dict[str, float]:
  """Samples `num_samples` responses per test problem and scores them.

  Returns a flat dict: `pass@k` (unbiased estimator, mean over problems) for k in `report_ks(num_samples)`;
  `distinct_correct@k` (distinct correct strategies among the first k samples, mean) and `oracle_strategies`
  (the problems' number of correct strategies, mean); `problems`; `responses/<verdict>`, the share of all
  samples with each `tasks.countdown.response_verdict` (correct, wrong_value, wrong_numbers, unparseable),
  which says why the others fail; and, with `equivalence` (an
  `EquivalenceClassifier`), `classifier/accuracy|precision|recall` against the oracle on these rollouts' pairs.
  """
  ks = report_ks(num_samples)
  correct_counts, distinct, oracle_counts, texts_all, classes_all = [], {k: [] for k in ks}, [], [], []
  verdicts = dict.fromkeys(RESPONSE_VERDICTS, 0)
  for batch in batches:
    texts = [list(group) for group in sample_texts(batch)]
    for group, numbers, target, strategies in zip(texts, batch["numbers"], batch["target"],
                                                  batch["num_strategies"]):
      numbers, target = [int(x) for x in numbers], int(target)
      if len(group) != num_samples:
        raise ValueError(f"sample_texts returned {len(group)} responses per problem, expected {num_samples}")
      judged = [response_verdict(text, numbers, target) for text in group]
      for verdict, _ in judged:
        verdicts[verdict] += 1
      found = [strategy for _, strategy in judged]
      correct_counts.append(sum(s is not None for s in found))
      for k in ks:
        distinct[k].append(len({s for s in found[:k] if s is not None}))
      oracle_counts.append(int(strategies))
      texts_all.append(group)
      classes_all.append(first_member_classes([response_key(text, numbers, target) for text in group]))
  if not correct_counts:
    raise ValueError("evaluate_countdown got no problems")
  correct = np.asarray(correct_counts)
  metrics: dict[str, float] = {"problems": float(len(correct))}
  for k in ks:
    metrics[f"pass@{k}"] = float(np.mean(pass_at_k(num_samples, correct, k)))
  for k in ks:
    metrics[f"distinct_correct@{k}"] = float(np.mean(distinct[k]))
  metrics["oracle_strategies"] = float(np.mean(oracle_counts))
  for verdict, count in verdicts.items():
    metrics[f"responses/{verdict}"] = count / (len(correct) * num_samples)
  if equivalence is not None:
    equivalent, _ = equivalence(texts_all)
    for name, value in pair_agreement(equivalent, np.stack(classes_all)).items():
      metrics[f"classifier/{name}"] = float(value)
  return metrics
