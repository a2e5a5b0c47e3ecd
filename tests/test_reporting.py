import json

import numpy as np
import pytest

from darling_jax.reporting import RolloutLog
from darling_jax.train_step import Rollouts


def _rollouts(step: int) -> Rollouts:
  quality = np.asarray([[1.0, 0.0], [0.0, 0.0]], np.float32)
  return Rollouts(prompts=[f"p{step}", "q"], texts=[["a", "b"], ["c", "c"]], quality=quality,
                  diversity=np.asarray([[1.0, 1.0], [0.1, 0.1]], np.float32), rewards=quality,
                  advantages=np.asarray([[0.5, -0.5], [0.0, 0.0]], np.float32),
                  class_ids=np.asarray([[0, 1], [0, 0]], np.int32), oracle_class_ids=None)


def test_rollouts_every_n_steps_and_a_resumed_run_drops_later_lines(tmp_path):
  log = RolloutLog(tmp_path, every=2)
  for step in range(1, 6):
    log.write(step, _rollouts(step))
  log.close()
  lines = [json.loads(line) for line in open(tmp_path / "rollouts.jsonl")]
  assert [(line["step"], line["prompt"]) for line in lines] == [(2, "p2"), (2, "q"), (4, "p4"), (4, "q")]
  assert lines[0]["responses"] == [
      {"text": "a", "quality": 1.0, "diversity": 1.0, "reward": 1.0, "advantage": 0.5, "class": 0},
      {"text": "b", "quality": 0.0, "diversity": 1.0, "reward": 0.0, "advantage": -0.5, "class": 1}]
  RolloutLog(tmp_path, every=2, resume_step=3).close()
  assert [json.loads(line)["step"] for line in open(tmp_path / "rollouts.jsonl")] == [2, 2]
  RolloutLog(tmp_path / "none", every=0).write(2, _rollouts(2))
  assert not (tmp_path / "none" / "rollouts.jsonl").exists()
  with pytest.raises(ValueError, match="log.rollouts_every"):
    RolloutLog(tmp_path, every=-1)
