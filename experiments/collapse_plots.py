"""The plots of experiments/diversity_collapse.py (written by `collapse_report.write_report`): pass@k and distinct
correct strategies against k on the test split, and the training-prompt curves over RL."""

from __future__ import annotations

import pathlib

import numpy as np

from collapse_report import LABELS, SMOOTH, WARM, mean_se, metric_values  # experiments/collapse_report.py

COLORS = {WARM: "black", "grpo": "tab:blue", "darling": "tab:orange", "darling_oracle": "tab:green",
          "additive": "tab:red", "ngram": "tab:purple"}  # the same in every plot

def plot_pass_at_k(evals: dict[str, list[dict]], n: int, path: pathlib.Path) -> None:
  from matplotlib.figure import Figure  # no pyplot: the process's backend (e.g. a notebook's) is left alone
  from darling_jax.evaluation.pass_at_k import report_ks
  ks = report_ks(n)
  figure = Figure(figsize=(11, 4))
  axes = figure.subplots(1, 2)
  for name, per_seed in evals.items():
    for axis, prefix, s in ((axes[0], "pass@", 100.0), (axes[1], "distinct_correct@", 1.0)):
      stats = [mean_se(metric_values(per_seed, f"{prefix}{k}")) for k in ks]
      means, ses = np.array([m for m, _ in stats]) * s, np.nan_to_num(np.array([e for _, e in stats])) * s
      axis.errorbar(ks, means, yerr=ses, marker="o", markersize=3, capsize=2, label=LABELS.get(name, name),
                    linestyle="--" if name == WARM else "-", color=COLORS.get(name))
  for axis, title in ((axes[0], "pass@k (%)"), (axes[1], "distinct correct strategies among k samples")):
    axis.set_xscale("log", base=2)
    axis.set_xticks(ks, [str(k) for k in ks])
    axis.set_xlabel("k")
    axis.set_title(title)
    axis.grid(alpha=0.3)
  seeds = len(next(iter(evals.values())))
  _save(figure, axes[1], f"Test split, 100 problems × {n} samples at T=1; mean ± s.e. over {seeds} seed(s)", path)


def smoothed_curve(rows_per_seed: list[list[dict]], key: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps, mean over seeds of the `SMOOTH`-step moving average of `key`)."""
  curves = []
  for rows in rows_per_seed:
    values = np.array([row[key] for row in rows], np.float64)
    window = min(SMOOTH, len(values))
    curves.append(np.convolve(values, np.ones(window) / window, mode="valid"))
  length = min(len(c) for c in curves)
  steps = np.array([row["step"] for row in rows_per_seed[0]])[-length:]
  return steps, np.mean([c[:length] for c in curves], axis=0)


def plot_training(train: dict[str, list[list[dict]]], path: pathlib.Path) -> None:
  from matplotlib.figure import Figure  # no pyplot: the process's backend (e.g. a notebook's) is left alone
  figure = Figure(figsize=(16, 4))
  axes = figure.subplots(1, 3)
  for name, rows_per_seed in train.items():
    curves = {key: smoothed_curve(rows_per_seed, key) for key in ("pass_rate", "distinct_correct")}
    style = {"label": LABELS.get(name, name), "color": COLORS.get(name)}
    for axis, (steps, curve) in zip(axes, curves.values()):
      axis.plot(steps, curve, **style)
    axes[2].plot(curves["pass_rate"][1], curves["distinct_correct"][1], **style)
  axes[0].set_title("pass rate on the training prompts")
  axes[1].set_title("distinct correct strategies per group of 8")
  axes[2].set_title("strategies against pass rate (start: lower left)")
  for axis in axes[:2]:
    axis.set_xlabel("RL step")
  axes[2].set_xlabel("pass rate")
  axes[2].set_ylabel("distinct correct strategies per group")
  for axis in axes:
    axis.grid(alpha=0.3)
  seeds = len(next(iter(train.values())))
  _save(figure, axes[1], f"Over RL: {SMOOTH}-step moving average, mean over {seeds} seed(s)", path)


def _save(figure, legend_axis, title: str, path: pathlib.Path) -> None:
  legend_axis.legend(fontsize=8)
  figure.suptitle(title)
  figure.tight_layout()
  figure.savefig(path, dpi=100)


