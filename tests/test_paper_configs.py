"""The paper's two settings (configs/paper_*.py) run one RL step on CPU at tiny shapes: the configs' own update,
precision, remat, chunked log-probs, KL and mesh settings (FSDP over the 8 test devices), with tiny random stand-ins
for the checkpoints they name by path."""

import json
import pathlib

import numpy as np
import pytest

from darling_jax import train
from darling_jax.config_files import load_config
from tests.chat_fixtures import classifier_directory, reward_model_directory, transformers_policy_directory

REPO = pathlib.Path(__file__).resolve().parents[1]


def write_jsonl(path: pathlib.Path, rows) -> str:
  path.write_text("".join(json.dumps(row) + "\n" for row in rows))
  return str(path)


def shrink(config, tmp_path):
  config.rl.update(steps=1, prompts_per_step=4, group_size=8, max_new_tokens=8,
                   prompts_per_sample_call=2 if config.rl.prompts_per_sample_call else 0)
  config.eval.update(num_problems=2, num_samples=4, prompts_per_batch=2)
  config.classifier.path = classifier_directory(tmp_path / "classifier")
  config.classifier.max_length = 64
  config.grpo.update(learning_rate=1e-3, logprob_chunk_size=3)
  config.log.update(progress_bar=False, tensorboard=False)
  return config


@pytest.mark.parametrize("name", ["paper_math_qwen3_4b", "paper_wildchat_llama8b"])
def test_paper_config_runs_one_step_at_tiny_shapes(name, tmp_path):
  config = load_config(REPO / "configs" / f"{name}.py")
  assert config.policy.dtype == "bfloat16" and config.policy.param_dtype == "float32" and config.policy.remat
  assert config.mesh.fsdp == 8 and config.rl.group_size == 8 and config.grpo.learning_rate == 1e-6
  if name == "paper_math_qwen3_4b":
    assert (config.rl.prompts_per_step, config.rl.max_new_tokens, config.grpo.num_minibatches) == (256, 8192, 4)
    assert config.grpo.kl_coef == 0
    policy = transformers_policy_directory(tmp_path / "policy", "qwen3")
    questions = [{"question": f"What is {a} + {a}?", "answer": str(2 * a)} for a in range(1, 9)]
    config.task.train_file = write_jsonl(tmp_path / "train.jsonl", questions)
    config.task.test_file = write_jsonl(tmp_path / "test.jsonl", questions[:2])
  else:
    assert (config.rl.prompts_per_step, config.rl.max_new_tokens, config.grpo.kl_coef) == (32, 1024, 0.001)
    policy = transformers_policy_directory(tmp_path / "policy", "llama")
    config.quality.reward_model = reward_model_directory(tmp_path / "reward_model")
    prompts = [{"prompt": f"Name a {thing}."} for thing in ("color", "fruit", "city", "river", "poet", "tree")]
    config.task.train_file = write_jsonl(tmp_path / "train.jsonl", prompts)
    config.task.test_file = write_jsonl(tmp_path / "test.jsonl", prompts[:2])
  config.policy.checkpoint = policy
  summary = train.train_and_evaluate(shrink(config, tmp_path), tmp_path / "run")
  row = json.loads(open(tmp_path / "run" / "metrics.jsonl").readline())
  assert row["step"] == 1 and np.isfinite(row["update/loss"]) and np.isfinite(row["update/entropy"])
  if name == "paper_wildchat_llama8b":
    assert row["update/kl"] >= 0 and "distinct@4" in summary["eval_final_policy"]
  else:
    assert "pass@4" in summary["eval_final_policy"]
