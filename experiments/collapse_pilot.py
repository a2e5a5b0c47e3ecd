"""Pilot for issue 21: a Countdown regime where GRPO collapses strategy diversity, and DARLING on the same warm start.

GRPO (configs/countdown_grpo.py) runs first from an empty workdir and builds the cached stages (dataset,
supervised warm start, classifier, warm-start evaluation). DARLING (configs/default.py) then runs with copies of
those stages, so both start from the same policy. Every run gets the same `--override`s (ml_collections paths
relative to the config, e.g. `task.sft.steps=3000`). A finished run is not rerun (its summary.json is read back).

    python experiments/collapse_pilot.py --runs_dir=/tmp/collapse_pilot/easy_sft3k \
        --override='task.data.num_train=700' --override='task.data.min_strategies=6' \
        --override='task.data.target_range=(10,20)' --override='task.sft.steps=3000' \
        --override='rl.steps=400' --override='eval.num_samples=16'

It prints, for the warm start and each method's final policy on the test split (100 problems × n samples at
T=1): pass@1, pass@8, pass@n, distinct correct strategies among 8 and among n samples, and distinct correct
strategies per solved problem (distinct_correct@n / pass@n: with k = n, pass@n is the share of problems with at
least one correct sample). Results: experiments/README.md, "Towards a regime where GRPO collapses".
"""

from __future__ import annotations

import ast
import pathlib

import ml_collections
from absl import app, flags

from darling_jax.config_files import load_config
from darling_jax.train import train_and_evaluate
from stage_copies import SHARED_STAGES, run_with_stages  # experiments/stage_copies.py

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"
METHODS = {"grpo": "countdown_grpo.py", "darling": "default.py"}  # the first builds the stages

_RUNS_DIR = flags.DEFINE_string("runs_dir", "/tmp/collapse_pilot/run", "one subdirectory per method")
_SEED = flags.DEFINE_integer("seed", 0, "config.seed of both runs")
_OVERRIDES = flags.DEFINE_multi_string("override", [], "PATH=VALUE config overrides, applied to both runs")
_METHODS = flags.DEFINE_list("methods", list(METHODS), f"which runs, the first builds the stages; of {list(METHODS)}")


def _parse(value: str):
  try:
    return ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return value


def run_config(method: str) -> ml_collections.ConfigDict:
  config = load_config(CONFIGS / METHODS[method])
  config.seed = _SEED.value
  for item in _OVERRIDES.value:
    path, value = item.split("=", 1)
    *parents, leaf = path.split(".")
    node = config
    for name in parents:
      node = node[name]
    node[leaf] = _parse(value)
  config.log.progress_bar = False
  return config


def run(method: str, stages_from: pathlib.Path | None) -> dict:
  workdir = pathlib.Path(_RUNS_DIR.value) / method
  return run_with_stages(workdir, stages_from, SHARED_STAGES, lambda w: train_and_evaluate(run_config(method), w))


def row(name: str, metrics: dict, n: int, wall: str) -> str:
  solved = metrics[f"pass@{n}"]
  per_solved = metrics[f"distinct_correct@{n}"] / solved if solved else float("nan")
  return (f"| {name} | {100 * metrics['pass@1']:.1f} | {100 * metrics['pass@8']:.1f} | {100 * solved:.1f} | "
          f"{metrics['distinct_correct@8']:.2f} | {metrics[f'distinct_correct@{n}']:.2f} | {per_solved:.2f} | "
          f"{wall} |")


def main(argv):
  del argv
  methods = _METHODS.value
  first = pathlib.Path(_RUNS_DIR.value) / methods[0]
  summaries = {m: run(m, None if m == methods[0] else first) for m in methods}
  base = summaries[methods[0]]["eval_base_policy"]
  n = max(int(key.split("@")[1]) for key in base if key.startswith("pass@"))
  print(f"\nseed {_SEED.value}; overrides {_OVERRIDES.value}; test split, {int(base['problems'])} problems × {n} "
        f"samples; oracle strategies per problem {base['oracle_strategies']:.2f}\n")
  print(f"| policy | pass@1 | pass@8 | pass@{n} | distinct_correct@8 | distinct_correct@{n} | "
        f"distinct correct per solved problem | wall s |")
  print("|---" * 8 + "|")
  print(row("warm start", base, n, "-"))
  for method, summary in summaries.items():
    print(row(method, summary["eval_final_policy"], n, f"{summary['wall_seconds']:.0f}"))


if __name__ == "__main__":
  app.run(main)
