"""Runs that share one run's cached stages (no flags here: each experiment script defines its own).

A Countdown run caches its dataset, supervised warm start, pair classifier and warm-start evaluation in its
workdir; a variant that copies them into its own workdir starts from the same policy and is judged by the same
classifier, so variants of one seed differ only in their RL.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from collections.abc import Callable, Sequence

# What a Countdown variant copies from the seed's first run.
SHARED_STAGES = ("data", "policy_sft", "classifier", "base_eval.json")


def run_with_stages(workdir: pathlib.Path, stages_from: pathlib.Path | None, stages: Sequence[str],
                    train: Callable[[pathlib.Path], dict]) -> dict:
  """`workdir`'s summary: read back if that run has finished, else `train(workdir)` after copying `stages`
  (directories or files) from `stages_from` (None: the run builds its own)."""
  summary_file = workdir / "summary.json"
  if summary_file.exists():
    return json.loads(summary_file.read_text())
  if stages_from is not None:
    workdir.mkdir(parents=True, exist_ok=True)
    for stage in stages:
      source, target = stages_from / stage, workdir / stage
      if source.is_dir() and not target.exists():
        shutil.copytree(source, target)
      elif source.is_file():
        shutil.copy2(source, target)
  return train(workdir)
