"""What a training run writes for people: per-step metrics (JSONL + TensorBoard), the rollouts themselves every
few steps, a progress bar, PNG plots of quality and diversity over steps, and a final summary table.

    log = MetricsLog(workdir, resume_step=restored_step)   # drops rows of steps after the checkpoint
    log.write(step, metrics); log.close()
    rollout_log = RolloutLog(workdir, every=10, resume_step=restored_step)
    rollout_log.write(step, rollouts)                       # one JSON line per prompt on every 10th step
    plot_training_curves(workdir / "metrics.jsonl", workdir / "training_curves.png")
    print(summary_table({"pass@1": 0.31, ...}))
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Mapping

import numpy as np

METRICS_FILE = "metrics.jsonl"
ROLLOUTS_FILE = "rollouts.jsonl"
TENSORBOARD_DIR = "tensorboard"
# Curves of every run (those a run logs); a task adds its own (`Task.curves`).
CURVES = (("quality", "quality"), ("diversity", "diversity"), ("reward", "reward"),
          ("update/entropy", "token entropy"), ("update/kl", "KL to the reference"))


def _keep_rows_up_to(path: pathlib.Path, resume_step: int | None) -> None:
  """Rewrites a JSONL log with only the rows of steps <= `resume_step` (none for a fresh run), atomically."""
  rows = read_metrics(path) if path.exists() else []
  kept = [row for row in rows if resume_step is not None and row["step"] <= resume_step]
  tmp = path.with_suffix(".tmp")
  with open(tmp, "w") as f:
    f.writelines(json.dumps(row) + "\n" for row in kept)
  os.replace(tmp, path)


class MetricsLog:
  """Appends one JSON line per step to `workdir/metrics.jsonl` and the scalars to TensorBoard event files.

  A resumed run (`resume_step`) first drops the rows of steps after it (written by the interrupted run after
  its last checkpoint), so the file ends up as if the run had never stopped.
  """

  def __init__(self, workdir: str | os.PathLike, *, resume_step: int | None = None, tensorboard: bool = True):
    self.path = pathlib.Path(workdir) / METRICS_FILE
    _keep_rows_up_to(self.path, resume_step)
    self._file = open(self.path, "a")
    self._writer = None
    if tensorboard:
      from tensorboardX import SummaryWriter  # optional dependency at import time of this module
      self._writer = SummaryWriter(str(pathlib.Path(workdir) / TENSORBOARD_DIR), purge_step=(
          None if resume_step is None else resume_step + 1))

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    row = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    self._file.write(json.dumps(row) + "\n")
    self._file.flush()
    if self._writer is not None:
      for name, value in metrics.items():
        self._writer.add_scalar(name, float(value), int(step))

  def close(self) -> None:
    self._file.close()
    if self._writer is not None:
      self._writer.close()


class RolloutLog:
  """Every `every` steps, one JSON line per prompt in `workdir/rollouts.jsonl`: the step, the prompt, and each of
  its G responses with its quality, class, diversity, reward and advantage (`every=0`: no file). A resumed run
  drops the lines of steps after `resume_step`, like `MetricsLog`."""

  def __init__(self, workdir: str | os.PathLike, *, every: int, resume_step: int | None = None):
    if every < 0:
      raise ValueError(f"log.rollouts_every must be >= 0, got {every}")
    self.every = every
    self.path = pathlib.Path(workdir) / ROLLOUTS_FILE
    self._file = None
    if every:
      _keep_rows_up_to(self.path, resume_step)
      self._file = open(self.path, "a")

  def write(self, step: int, rollouts) -> None:
    """Writes `rollouts` (a `train_step.Rollouts`) of `step` if it is a logging step."""
    if self._file is None or step % self.every:
      return
    for i, (prompt, texts) in enumerate(zip(rollouts.prompts, rollouts.texts)):
      responses = []
      for j, text in enumerate(texts):
        response = {"text": text, "quality": float(rollouts.quality[i, j]),
                    "diversity": float(rollouts.diversity[i, j]), "reward": float(rollouts.rewards[i, j]),
                    "advantage": float(rollouts.advantages[i, j])}
        if rollouts.class_ids is not None:
          response["class"] = int(rollouts.class_ids[i, j])
        if rollouts.oracle_class_ids is not None:
          response["oracle_class"] = int(rollouts.oracle_class_ids[i, j])
        responses.append(response)
      self._file.write(json.dumps({"step": int(step), "prompt": prompt, "responses": responses}) + "\n")
    self._file.flush()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
  """The rows of a metrics JSONL file (a torn last line of a killed run is skipped)."""
  rows = []
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return rows


def plot_training_curves(metrics_path: str | os.PathLike, png_path: str | os.PathLike, *,
                         title: str = "", curves=()) -> pathlib.Path:
  """A PNG with one panel per curve over training steps (raw and a 5-step moving average): `curves` (`(metric,
  label)` pairs, e.g. a task's) and `CURVES`, those the run logged."""
  from matplotlib.figure import Figure  # no pyplot: the process's backend (e.g. a notebook's) is left alone

  rows = read_metrics(metrics_path)
  steps = np.asarray([row["step"] for row in rows])
  def logged(key):  # a metric the run logged and that ever moved (e.g. no KL panel for a run without a reference)
    return rows and key in rows[0] and any(row.get(key, 0.0) != 0.0 for row in rows)

  curves = [(key, label) for key, label in (*curves, *CURVES) if logged(key)]
  figure = Figure(figsize=(4 * len(curves), 3.2))
  axes = figure.subplots(1, len(curves), squeeze=False)
  for axis, (key, label) in zip(axes[0], curves):
    values = np.asarray([row.get(key, np.nan) for row in rows], np.float64)
    axis.plot(steps, values, alpha=0.35, color="tab:blue")
    window = min(5, len(values))
    if window > 1:
      smooth = np.convolve(values, np.ones(window) / window, mode="valid")
      axis.plot(steps[window - 1:], smooth, color="tab:blue")
    axis.set_xlabel("step")
    axis.set_title(label)
    axis.grid(alpha=0.3)
  if title:
    figure.suptitle(title)
  figure.tight_layout()
  png_path = pathlib.Path(png_path)
  figure.savefig(png_path, dpi=100)
  return png_path


def summary_table(sections: Mapping[str, Mapping[str, float]]) -> str:
  """A two-column text table, one block per section: `{"train (last 5 steps)": {...}, "eval": {...}}`."""
  lines = []
  width = max((len(name) for metrics in sections.values() for name in metrics), default=10)
  for section, metrics in sections.items():
    lines.append(f"{section}")
    for name, value in metrics.items():
      text = f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)
      lines.append(f"  {name:<{width}}  {text}")
  return "\n".join(lines)


def progress_postfix(metrics: Mapping[str, float]) -> dict[str, str]:
  """The live fields of the progress bar."""
  return {"reward": f"{metrics['reward']:.3f}", "quality": f"{metrics['quality']:.2f}",
          "div": f"{metrics['diversity']:.2f}", "s/step": f"{metrics['time/step']:.1f}"}
