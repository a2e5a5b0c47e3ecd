"""The open-ended task: NoveltyBench's distinct and utility in its evaluation, settings errors, and the main job
with a tiny policy, a tiny reward model as quality and a bi-encoder pair classifier."""

import json
import pathlib

import ml_collections
import numpy as np
import pytest

from darling_jax import train
from darling_jax.config_files import load_config
from darling_jax.tasks import EvalContext, make_task
from tests.chat_fixtures import bi_encoder_directory, policy_directory, reward_model_directory

REPO = pathlib.Path(__file__).resolve().parents[3]


def prompt_files(tmp_path):
  prompts = ["Name a color.", "Tell me a joke about cats.", "Suggest a name for a dog.", "Write one line of a poem."]
  for name, rows in (("train.jsonl", prompts), ("test.jsonl", prompts[:2])):
    (tmp_path / name).write_text("".join(json.dumps({"id": i, "prompt": p}) + "\n" for i, p in enumerate(rows)))
  return str(tmp_path / "train.jsonl"), str(tmp_path / "test.jsonl")


def test_evaluation_is_noveltybench_distinct_and_utility(tmp_path):
  train_file, test_file = prompt_files(tmp_path)
  task = make_task({"name": "open_ended", "train_file": train_file, "test_file": test_file, "patience": 0.5})
  groups = [["red", "red ", "blue", "green"], ["cat", "dog", "cat", "cat"]]
  quality = np.asarray([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]], np.float32)
  context = EvalContext(sample=lambda batch, n: groups, quality=lambda batch, texts: quality,
                        batches=lambda: [{"prompt": ["a", "b"]}], num_samples=4)
  metrics = task.evaluate(context)
  weights = 0.5 ** np.arange(4)
  first_members = np.asarray([[1, 0, 1, 1], [1, 1, 0, 0]], np.float32)  # classes {0,1},{2},{3} / {0,2,3},{1}
  expected_utility = ((first_members * quality) @ weights / weights.sum()).mean()
  assert metrics == pytest.approx({"prompts": 2.0, "quality": 2.5, "distinct_text@4": 2.5,
                                   "utility_text@4": expected_utility})
  with pytest.raises(ValueError, match="task.patience must be in"):
    make_task({"name": "open_ended", "train_file": train_file, "test_file": test_file, "patience": 0.0})
  with pytest.raises(FileNotFoundError, match="task.test_file"):
    make_task({"name": "open_ended", "train_file": train_file, "test_file": str(tmp_path / "none.jsonl")})


def test_main_job_with_a_reward_model_and_a_bi_encoder(tmp_path):
  train_file, test_file = prompt_files(tmp_path)
  config = load_config(REPO / "configs" / "smollm2_math.py")
  config.task = ml_collections.ConfigDict({"name": "open_ended", "train_file": train_file, "test_file": test_file,
                                           "system_prompt": "Be brief."})
  config.policy.checkpoint = policy_directory(tmp_path / "policy")
  config.classifier.path = bi_encoder_directory(tmp_path / "classifier")
  config.classifier.train_pairs = ""
  config.rl.update(steps=2, prompts_per_step=2, group_size=4, max_new_tokens=8)
  config.grpo.update(learning_rate=1e-3, num_minibatches=1)
  config.eval.update(num_problems=2, num_samples=4, prompts_per_batch=2)
  config.log.update(progress_bar=False, tensorboard=False, rollouts_every=1)
  config.quality.reward_model = ""
  with pytest.raises(ValueError, match="task 'open_ended''s default quality names 'reward_model' but "
                                       "quality.reward_model"):
    train.train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()
  config.quality.reward_model = reward_model_directory(tmp_path / "reward_model")
  summary = train.train_and_evaluate(config, tmp_path / "run")
  assert summary["task"] == "open_ended"
  for name in ("eval_base_policy", "eval_final_policy"):
    metrics = summary[name]
    assert metrics["prompts"] == 2 and 1 <= metrics["distinct@4"] <= 4 and np.isfinite(metrics["utility@4"])
  rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  assert [row["step"] for row in rows] == [1, 2] and all(np.isfinite(row["quality"]) for row in rows)
  rollout = json.loads(open(tmp_path / "run" / "rollouts.jsonl").readline())
  assert rollout["prompt"] in {"Name a color.", "Tell me a joke about cats.", "Suggest a name for a dog.",
                               "Write one line of a poem."}
