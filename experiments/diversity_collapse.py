"""DARLING against GRPO where GRPO collapses strategy diversity: five variants over seeds, paired by seed, judged with
many samples per test problem. The claims tested are arXiv 2509.02534's on verifiable tasks (§5.1, pass@k in
Tables 9/10) and its ablations (multiplicative vs additive, §6.1 / Table 2; lexical vs semantic, §6.2 / Tables 3-4).

    python experiments/diversity_collapse.py --jobs=2       # 5 seeds × 5 variants: ~50 min on 2 cores
    python experiments/diversity_collapse.py --quick        # 1 seed, 400 RL steps, 32 samples: ~7 min

The regime is configs/default.py's (its siblings share it): easy Countdown problems (4 numbers in 1-9, targets
10-20, at least 6 correct strategies each, 700 training problems), a 3,000-step supervised warm start of the
0.34M-parameter tiny policy and 800 RL steps. The study evaluates with 64 samples per test problem at T = 1
(100 problems; `EVALUATION`).

Variants (each seed's `grpo` run builds the cached stages, dataset, warm start, classifier and warm-start
evaluation; every other variant of that seed runs from copies of them, so the variants of a seed differ only in
their RL):
  grpo            configs/countdown_grpo.py: quality only, std-normalised advantages (the paper's baseline)
  darling         configs/default.py: quality × learned-classifier diversity (Eq. 3)
  darling_oracle  configs/default.py with rl.diversity_source=oracle: the ground-truth strategy partition
  additive        configs/countdown_additive.py: z(quality) + z(diversity) (§6.1 ablation)
  ngram           configs/countdown_ngram.py: quality × character-4-gram novelty (the lexical ablation)

Writes, in `--out_dir`: `results.md` (tables, the paired differences with their standard errors, the claims and
the n-gram rollout examples), `results.json` (every seed's numbers), `pass_at_k.png` (pass@k and distinct correct
strategies among k samples, k = 1 … 64) and `training.png` (pass rate and distinct correct strategies per group
on the training prompts over RL). A finished run is read back, not rerun; `--jobs=2` runs two seeds at once.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ml_collections
from absl import app, flags

from darling_jax.config_files import load_config
from stage_copies import SHARED_STAGES, run_with_stages  # experiments/stage_copies.py

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"
RESULTS = pathlib.Path(__file__).resolve().parent / "results"

# What the study changes in the configs: many samples per test problem, and every 10th step's rollouts logged
# (configs/default.py's own setting, which claim (d) reads).
EVALUATION: dict[str, Any] = {"eval.num_samples": 64, "log.rollouts_every": 10}
QUICK: dict[str, Any] = {"rl.steps": 400, "eval.num_samples": 32}
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "grpo": ("countdown_grpo.py", {}),  # first: builds the seed's stages
    "darling": ("default.py", {}),
    "darling_oracle": ("default.py", {"rl.diversity_source": "oracle"}),
    "additive": ("countdown_additive.py", {}),
    "ngram": ("countdown_ngram.py", {}),
}

_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "config.seed of each run (--quick: the first)")
_VARIANTS = flags.DEFINE_list("variants", list(VARIANTS), "which runs per seed; grpo first (it builds the stages)")
_QUICK = flags.DEFINE_bool("quick", False, f"one seed and {QUICK}")
_RUNS_DIR = flags.DEFINE_string("runs_dir", None, "one subdirectory per seed and variant "
                                "(default /tmp/diversity_collapse, or /tmp/diversity_collapse_quick)")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "results.md, results.json and the PNGs (default "
                               "experiments/results/diversity_collapse; --quick: RUNS_DIR/report)")
_JOBS = flags.DEFINE_integer("jobs", 1, "seeds run at once, each in its own process")
_RUN_ONLY = flags.DEFINE_bool("run_only", False, "run the seeds' variants and stop (no report)")


def suffix() -> str:
  return "_quick" if _QUICK.value else ""


def runs_dir() -> pathlib.Path:
  return pathlib.Path(_RUNS_DIR.value or f"/tmp/diversity_collapse{suffix()}")


def seeds() -> list[int]:
  values = [int(s) for s in _SEEDS.value]
  return values[:1] if _QUICK.value else values


def run_config(variant: str, seed: int) -> ml_collections.ConfigDict:
  """`variant`'s config at `seed` with `EVALUATION` (and `QUICK` with --quick), progress bar off."""
  file, overrides = VARIANTS[variant]
  config = load_config(CONFIGS / file)
  config.seed = seed
  config.update_from_flattened_dict({**EVALUATION, **(QUICK if _QUICK.value else {}), **overrides,
                                     "log.progress_bar": False})
  return config


def run_seed(seed: int) -> None:
  """Every variant of `seed` in RUNS_DIR/seed{seed}/{variant} (finished runs are skipped)."""
  from darling_jax.train import train_and_evaluate
  first = runs_dir() / f"seed{seed}" / _VARIANTS.value[0]
  for variant in _VARIANTS.value:
    workdir = runs_dir() / f"seed{seed}" / variant
    summary = run_with_stages(workdir, None if variant == _VARIANTS.value[0] else first, SHARED_STAGES,
                              lambda w, v=variant: train_and_evaluate(run_config(v, seed), w))
    print(json.dumps({"seed": seed, "variant": variant, "wall_seconds": round(summary["wall_seconds"], 1),
                      "pass@1": summary["eval_final_policy"]["pass@1"]}), flush=True)


def run_seeds_in_processes(all_seeds: list[int]) -> None:
  """Each seed in its own `--run_only` process, `--jobs` at a time; raises if one fails."""
  def one(seed: int) -> None:
    argv = [sys.executable, __file__, f"--seeds={seed}", f"--variants={','.join(_VARIANTS.value)}",
            f"--runs_dir={runs_dir()}", "--run_only", *(["--quick"] if _QUICK.value else [])]
    log = runs_dir() / f"seed{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
      code = subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT)
    if code:
      raise RuntimeError(f"seed {seed} failed (exit {code}); see {log}")

  with ThreadPoolExecutor(_JOBS.value) as pool:
    for future in [pool.submit(one, seed) for seed in all_seeds]:
      future.result()


def main(argv):
  del argv
  unknown = sorted(set(_VARIANTS.value) - set(VARIANTS))
  if unknown:
    raise ValueError(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
  if _VARIANTS.value[0] != "grpo":
    raise ValueError(f"--variants must start with grpo (it builds each seed's stages), got {_VARIANTS.value}")
  if _JOBS.value > 1 and len(seeds()) > 1 and not _RUN_ONLY.value:
    run_seeds_in_processes(seeds())
  else:
    for seed in seeds():
      run_seed(seed)
  if _RUN_ONLY.value:
    return
  from collapse_report import write_report  # experiments/collapse_report.py
  out_dir = pathlib.Path(_OUT_DIR.value or (runs_dir() / "report" if _QUICK.value else RESULTS / "diversity_collapse"))
  command = "python experiments/diversity_collapse.py" + (" --quick" if _QUICK.value else "")
  write_report(runs_dir(), out_dir, seeds(), _VARIANTS.value, command=command)
  print(f"wrote {out_dir}/results.md")


if __name__ == "__main__":
  app.run(main)
