"""experiments/collapse_report.py: paired statistics, the rewrite analysis of claim (d), and a whole report written
from synthetic finished runs (the layout `experiments/diversity_collapse.py` leaves)."""

import json
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "experiments"))
import collapse_report  # noqa: E402


def test_paired_difference_counts_beyond_two_standard_errors():
  d = collapse_report.paired_difference(np.array([3.0, 4.0, 5.0]), np.array([2.0, 2.0, 2.0]))
  assert d["mean"] == pytest.approx(2.0)
  assert d["se"] == pytest.approx(1.0 / np.sqrt(3.0))
  assert d["counts"] and d["wins"] == 3 and d["seeds"] == 3
  noisy = collapse_report.paired_difference(np.array([1.0, -1.0, 2.0]), np.zeros(3))
  assert not noisy["counts"] and noisy["wins"] == 2
  single = collapse_report.paired_difference(np.array([1.0]), np.array([0.0]))
  assert np.isnan(single["se"]) and not single["counts"]


def _response(text, quality, diversity, oracle_class):
  return {"text": text, "quality": quality, "diversity": diversity, "reward": quality * diversity,
          "advantage": 0.0, "oracle_class": oracle_class}


def _rollout(step, paid=0.9, third_spelling=False):
  # Two correct spellings of one strategy (class 0), one other correct strategy (or a third spelling of the
  # first), one wrong response.
  third = _response("2+1+4+3", 1.0, paid, 0) if third_spelling else _response("(1+4)*2", 1.0, 1.0, 1)
  return {"step": step, "prompt": "Numbers: 1 2 3 4 Target: 10 Expression:",
          "responses": [_response("1+2+3+4", 1.0, paid, 0), _response("4+3+2+1", 1.0, paid, 0), third,
                        _response("1*2", 0.0, 1.0, 2)]}


def test_rewrite_statistics_measure_the_pay_for_a_respelling():
  stats = collapse_report.rewrite_statistics([_rollout(10), _rollout(20)])
  assert stats["rewrites"] == 4  # the two spellings of strategy 0 respell each other, in both groups
  # "1+2+3+4" shares no character 4-gram with the others (diversity 1); spelled as "4+3+2+1" it would share all
  # of them with its twin (diversity 0): the 4-gram reward pays 1.0 for the respelling.
  assert stats["surplus"] == pytest.approx(1.0)
  assert stats["spellings_first"] == pytest.approx(1.5) and stats["spellings_last"] == pytest.approx(1.5)
  [example] = collapse_report.rewrite_examples([_rollout(10)], count=3)
  assert example["texts"] == ["1+2+3+4", "4+3+2+1"] and example["strategy_size"] == 2
  assert example["as_copy"] == pytest.approx(0.0)  # spelled like its twin it shares every 4-gram
  same_spelling = _rollout(10)
  same_spelling["responses"][1]["text"] = "1+2+3+4"  # an exact copy is no rewrite
  assert collapse_report.rewrite_statistics([same_spelling])["rewrites"] == 0
  assert collapse_report.rewrite_examples([same_spelling]) == []


def _write_run(workdir: pathlib.Path, pass1: float, distinct: float, base: bool, paid: float,
               third_spelling: bool = False):
  workdir.mkdir(parents=True)
  evaluation = lambda p, d: {"pass@1": p, "pass@2": min(1.0, 1.5 * p), "pass@4": min(1.0, 2 * p), "problems": 4.0,
                             "distinct_correct@1": p, "distinct_correct@2": d / 2, "distinct_correct@4": d}
  summary = {"wall_seconds": 60.0, "eval_final_policy": evaluation(pass1, distinct)}
  if base:
    summary["eval_base_policy"] = evaluation(0.2, 2.0)
  (workdir / "summary.json").write_text(json.dumps(summary))
  (workdir / "metrics.jsonl").write_text("".join(
      json.dumps({"step": s, "pass_rate": 0.2 + s / 100, "distinct_correct": distinct}) + "\n" for s in range(1, 41)))
  (workdir / "rollouts.jsonl").write_text("".join(json.dumps(_rollout(s, paid, third_spelling and s > 20)) + "\n"
                                                  for s in (10, 20, 30, 40)))


def test_write_report_from_finished_runs(tmp_path):
  runs = tmp_path / "runs"
  for seed, jitter in enumerate((0.0, 0.01, -0.01)):
    _write_run(runs / f"seed{seed}" / "grpo", 0.5 + jitter, 1.0 + jitter, True, 0.5)
    _write_run(runs / f"seed{seed}" / "darling", 0.45 + jitter, 1.8 - jitter, False, 0.6)
    _write_run(runs / f"seed{seed}" / "ngram", 0.4, 1.5, False, 0.95 + jitter, third_spelling=True)
  report = collapse_report.write_report(runs, tmp_path / "out", [0, 1, 2], ["grpo", "darling", "ngram"],
                                        command="python experiments/diversity_collapse.py")
  text = report.read_text()
  assert "**(a) GRPO collapses: reproduced.**" in text  # pass@1 0.2 -> 0.5, strategies 2.0 -> 1.0 on every seed
  assert "**(b) DARLING, learned classifier vs GRPO: not reproduced.**" in text  # pass@4 is lower
  # The n-gram runs end with 3 spellings of one correct strategy per group, the others with 1.5.
  assert "**(d) the n-gram reward pays for surface rewrites that the semantic partition does not: reproduced.**" in text
  assert "`1+2+3+4` respells `4+3+2+1`" in text
  assert (tmp_path / "out" / "pass_at_k.png").stat().st_size > 0
  assert (tmp_path / "out" / "training.png").stat().st_size > 0
  assert json.loads((tmp_path / "out" / "results.json").read_text())["seeds"] == [0, 1, 2]
  with pytest.raises(FileNotFoundError, match="seed 3 / grpo"):
    collapse_report.write_report(runs, tmp_path / "out2", [3], ["grpo"], command="x")
