"""DARLING against GRPO on Countdown over several seeds, each pair of runs from the same warm start.

For every seed, the first variant (`darling`, configs/default.py with `seed=S`) runs from an empty workdir and
builds the cached stages (dataset, supervised warm start, classifier, warm-start evaluation). Every other
variant then runs in its own workdir holding copies of those stages, so all variants of a seed start from the
same policy and are judged by the same classifier. A seed changes the warm start, the classifier, the rollouts
and the evaluation samples; the dataset (config.task.data.seed) is the same for every seed.

Variants:
  darling         configs/default.py: multiplicative reward, learned-classifier diversity
  darling_oracle  configs/default.py with rl.diversity_source=oracle (ground-truth partition)
  grpo            configs/countdown_grpo.py: quality only, std-normalised advantages (the paper's baseline)
  additive        configs/countdown_additive.py
  ngram           configs/countdown_ngram.py

    python experiments/countdown_seeds.py --seeds=0,1,2 --runs_dir=/tmp/countdown_seeds

It prints one JSON line per finished run, then a table of the test-split metrics (100 problems × 8 samples at
T=1) as mean ± sample std over the seeds, then each variant's difference from grpo paired by seed (nan where a
config does not measure a metric: countdown_ngram.py loads no classifier). A finished run is not rerun (its
summary.json is read back). Results: experiments/README.md.
"""

from __future__ import annotations

import json
import pathlib

import ml_collections
import numpy as np
from absl import app, flags

from darling_jax.config_files import load_config
from darling_jax.train import train_and_evaluate
from stage_copies import SHARED_STAGES, run_with_stages  # experiments/stage_copies.py

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"
VARIANTS = {
    "darling": ("default.py", {}),
    "darling_oracle": ("default.py", {"rl.diversity_source": "oracle"}),
    "grpo": ("countdown_grpo.py", {}),
    "additive": ("countdown_additive.py", {}),
    "ngram": ("countdown_ngram.py", {}),
}
METRICS = ("pass@1", "pass@8", "distinct_correct@8", "classifier/accuracy")

_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "config.seed of each run")
_VARIANTS = flags.DEFINE_list("variants", ["darling", "grpo", "darling_oracle"],
                              f"which runs per seed, the first builds the stages; any of {sorted(VARIANTS)}")
_RUNS_DIR = flags.DEFINE_string("runs_dir", "/tmp/countdown_seeds", "one subdirectory per seed and variant")
_RL_STEPS = flags.DEFINE_integer("rl_steps", None, "override config.rl.steps (default: the config's)")


def percent_scale(metric: str) -> float:
  """100 for the metrics printed in % (pass@k, classifier accuracy), 1 for counts."""
  return 100.0 if metric.startswith(("pass@", "classifier/")) else 1.0


def run_config(variant: str, seed: int) -> ml_collections.ConfigDict:
  """The config of `variant` with `seed` (and `--rl_steps`), progress bar off."""
  file, overrides = VARIANTS[variant]
  config = load_config(CONFIGS / file)
  config.seed = seed
  for key, value in overrides.items():
    section, name = key.split(".")
    config[section][name] = value
  if _RL_STEPS.value is not None:
    config.rl.steps = _RL_STEPS.value
  config.log.progress_bar = False
  return config


def run(variant: str, seed: int, stages_from: pathlib.Path | None) -> dict:
  """The summary of `variant` at `seed`, run in RUNS_DIR/seed{seed}/{variant} unless it has finished there."""
  workdir = pathlib.Path(_RUNS_DIR.value) / f"seed{seed}" / variant
  return run_with_stages(workdir, stages_from, SHARED_STAGES,
                         lambda w: train_and_evaluate(run_config(variant, seed), w))


def main(argv):
  del argv
  variants = _VARIANTS.value
  unknown = sorted(set(variants) - set(VARIANTS))
  if unknown:
    raise ValueError(f"--variants: unknown {unknown}; choose from {sorted(VARIANTS)}")
  seeds = [int(s) for s in _SEEDS.value]
  results: dict[str, list[dict]] = {"warm start": [], **{v: [] for v in variants}}
  for seed in seeds:
    first = pathlib.Path(_RUNS_DIR.value) / f"seed{seed}" / variants[0]
    for variant in variants:
      summary = run(variant, seed, None if variant == variants[0] else first)
      if variant == variants[0]:
        results["warm start"].append(summary["eval_base_policy"])
      results[variant].append(summary["eval_final_policy"])
      print(json.dumps({"seed": seed, "variant": variant, "wall_seconds": round(summary["wall_seconds"], 1),
                        **{m: summary["eval_final_policy"].get(m) for m in METRICS}}), flush=True)
  print(f"\n{len(seeds)} seeds ({', '.join(map(str, seeds))}); mean ± std over seeds\n")
  print("| policy | " + " | ".join(METRICS) + " |")
  print("|---" * (len(METRICS) + 1) + "|")
  for name, evals in results.items():
    cells = []
    for metric in METRICS:
      values = np.array([e.get(metric, np.nan) for e in evals], dtype=np.float64)
      scale = percent_scale(metric)
      std = values.std(ddof=1) * scale if len(values) > 1 else float("nan")
      cells.append(f"{values.mean() * scale:.2f} ± {std:.2f}")
    print(f"| {name} | " + " | ".join(cells) + " |")
  print("\n(pass@k and classifier accuracy in %; distinct_correct@8 is a count, the oracle's is ~4.7)")
  if "grpo" in variants and len(seeds) > 1:
    print("\nPaired with grpo on the same seed (same warm start): mean difference ± its standard error "
          "(std / sqrt(seeds)), and the seeds on which the variant is ahead\n")
    print("| variant − grpo | " + " | ".join(METRICS[:3]) + " |")
    print("|---" * 4 + "|")
    for name in variants:
      if name == "grpo":
        continue
      cells = []
      for metric in METRICS[:3]:
        pairs = zip(results[name], results["grpo"])
        diff = percent_scale(metric) * np.array([a[metric] - b[metric] for a, b in pairs])
        cells.append(f"{diff.mean():+.2f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.2f} "
                     f"({int((diff > 0).sum())}/{len(diff)})")
      print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  app.run(main)
