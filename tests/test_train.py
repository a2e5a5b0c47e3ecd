"""The main job end to end: CLI override parsing, config errors, and a micro run through the real CLI that is
SIGKILLed mid-run and resumed, ending with the same parameters and per-step metrics as an uninterrupted run.

The micro run is the default config shrunk by CLI overrides (`MICRO`): every stage runs for real (dataset
builder, supervised warm start, classifier training, RL with the classifier kernel, evaluation, plots).
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags
from safetensors.numpy import load_file

from darling_jax import stages, train
from darling_jax.config_files import load_config
from darling_jax.models import init_model, save_pretrained
from darling_jax.tasks.countdown.tokenizer import countdown_tokenizer
from darling_jax.tasks.countdown.warm_start import policy_config

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT = REPO / "configs" / "default.py"
MICRO = [
    "--config.task.data.num_train=40", "--config.task.data.num_test=8",
    "--config.task.policy.hidden_size=32", "--config.task.policy.intermediate_size=64",
    "--config.task.policy.num_layers=1", "--config.task.policy.num_heads=2", "--config.task.policy.num_kv_heads=2",
    "--config.task.policy.head_dim=16",
    "--config.task.sft.steps=20", "--config.task.sft.batch_size=16", "--config.task.sft.warmup=1",
    "--config.task.classifier.num_pairs=64", "--config.task.classifier.num_eval_pairs=32",
    "--config.task.classifier.epochs=1",
    "--config.rl.steps=6", "--config.rl.prompts_per_step=2", "--config.rl.group_size=4",
    "--config.rl.max_new_tokens=12", "--config.grpo.learning_rate=1e-3", "--config.grpo.num_minibatches=2",
    "--config.checkpoint.every=2", "--config.checkpoint.keep=2",
    # Evaluation at the training shapes (2 prompts x 4 samples): no new compilation.
    "--config.eval.num_problems=4", "--config.eval.num_samples=4", "--config.eval.prompts_per_batch=2",
    "--config.eval.base_policy=False",
    "--config.log.progress_bar=False",
]


def _parse(argv):
  values = flags.FlagValues()
  argv = ["train", *argv]
  holder = config_flags.DEFINE_config_file("config", None, "run config", flag_values=values, lock_config=True,
                                           sys_argv=argv)
  values(argv)
  return holder.value


def test_cli_overrides_and_unknown_keys():
  config = _parse(["--config", str(DEFAULT), "--config.rl.group_size=16", "--config.grpo.learning_rate=3e-5",
                   "--config.rl.diversity_source=oracle"])
  assert (config.rl.group_size, config.grpo.learning_rate, config.rl.diversity_source) == (16, 3e-5, "oracle")
  with pytest.raises(Exception, match="no_such_key"):
    _parse(["--config", str(DEFAULT), "--config.rl.no_such_key=1"])


def test_config_errors_name_the_key(tmp_path):
  config = load_config(DEFAULT)
  config.grpo.unknown_option = 1
  with pytest.raises(ValueError, match="grpo.unknown_option"):
    train.parse_config(config)
  config = load_config(DEFAULT)
  config.rl.group_size = 1
  with pytest.raises(ValueError, match="rl.group_size"):
    train.parse_config(config)
  config = load_config(DEFAULT)
  config.rl.prompts_per_sample_call = config.rl.prompts_per_step + 1
  with pytest.raises(ValueError, match="rl.prompts_per_sample_call=.* does not divide rl.prompts_per_step"):
    train.parse_config(config)
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  with pytest.raises(PermissionError, match="a_file"):
    train.check_workdir(blocker / "run")


def _launch(workdir, compilation_cache, *extra):
  """The CLI on the micro config. As in the test process (conftest.py), XLA's optimisation passes are off (they
  cost more than they save on these tiny programs); runs sharing `compilation_cache` load each other's
  executables instead of compiling again."""
  env = dict(os.environ, PYTHONUNBUFFERED="1", JAX_DISABLE_MOST_OPTIMIZATIONS="1",
             JAX_COMPILATION_CACHE_DIR=str(compilation_cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return subprocess.Popen([sys.executable, "-m", "darling_jax.train", "--config", str(DEFAULT),
                           "--workdir", str(workdir), *MICRO, *extra], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process, timeout=600):
  output, _ = process.communicate(timeout=timeout)
  assert process.returncode == 0, output[-4000:]
  return output


def _metrics(workdir):
  rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in rows]


def test_train_and_evaluate_micro_run_reuses_its_stages(tmp_path, capsys):
  """Every stage for real (warm start, classifier, RL with the classifier kernel, evaluation), in process; a
  later run finds the warm start and the classifier in the workdir and loads them instead of training again.
  (Resuming the RL loop from a checkpoint is the kill/resume test below.)"""
  config = _parse(["--config", str(DEFAULT), *MICRO, "--config.rl.steps=2", "--config.task.sft.steps=2"])
  summary = train.train_and_evaluate(config, tmp_path)
  assert summary["steps"] == 2 and len(_metrics(tmp_path)) == 2
  final = summary["eval_final_policy"]
  assert final["problems"] == 4 and 0 <= final["pass@1"] <= final["pass@4"] <= 1
  assert 0 <= final["classifier/accuracy"] <= 1 and final["classifier/pairs"] == 4 * 6
  assert summary["stages"]["policy"]["steps"] == 2 and "accuracy" in summary["stages"]["classifier"]
  assert (tmp_path / "training_curves.png").stat().st_size > 1000 and list((tmp_path / "tensorboard").iterdir())
  assert {"diversity", "classes", "time/diversity_share"} <= set(json.loads(
      (tmp_path / "metrics.jsonl").read_text().splitlines()[-1]))

  capsys.readouterr()
  run = train.parse_config(config)
  data = run.task.prepare_data(tmp_path / "data")
  policy = stages.policy_stage(tmp_path / "policy_sft", run.policy, run.task, data, seed=0)
  equivalence, classifier_info = stages.classifier_stage(tmp_path / "classifier", run.classifier, run.task, data,
                                                         seed=0)
  assert "reusing" in capsys.readouterr().out
  assert policy.info == summary["stages"]["policy"] and classifier_info == summary["stages"]["classifier"]
  assert equivalence.threshold == config.task.classifier.threshold
  saved = load_file(str(tmp_path / "policy_sft" / "model.safetensors"))
  np.testing.assert_array_equal(np.asarray(policy.model.embed_tokens[...]), saved["model.embed_tokens.weight"])


def test_a_cached_warm_start_for_another_vocabulary_is_refused(tmp_path):
  directory = tmp_path / "policy_sft"
  save_pretrained(init_model(policy_config(vocab_size=42, hidden_size=32, intermediate_size=64, num_heads=2,
                                           num_kv_heads=2, head_dim=16), seed=0), str(directory),
                  tokenizer=countdown_tokenizer())
  stages.write_stage_info(directory, {"steps": 200})
  run = train.parse_config(_parse(["--config", str(DEFAULT)]))
  with pytest.raises(ValueError, match=r"policy_sft has vocab_size=42, fewer than the tokenizer's 62 tokens"):
    stages.policy_stage(directory, run.policy, run.task, None, seed=0)


# The kill/resume runs skip the learned stages (oracle diversity, no warm start): what is checked is that the
# RL loop resumes exactly (parameters, optimizer state, rollout keys, data order).
NO_STAGES = ["--config.rl.diversity_source=oracle", "--config.eval.classifier_accuracy=False",
             "--config.task.sft.steps=0", "--config.log.tensorboard=False"]


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
  whole, cache = tmp_path / "whole", tmp_path / "jax_cache"
  output = _finish(_launch(whole, cache, *NO_STAGES))
  assert "eval: final policy" in output and "pass@4" in output, output[-3000:]

  # The same run, SIGKILLed once step 3's metrics are written (during step 4 or later), then resumed from the
  # step-2 (or step-4) checkpoint: the rows of steps after it are dropped and those steps rerun.
  interrupted = tmp_path / "interrupted"
  process = _launch(interrupted, cache, *NO_STAGES)
  deadline = time.monotonic() + 600
  metrics_file = interrupted / "metrics.jsonl"
  while time.monotonic() < deadline and process.poll() is None:
    if metrics_file.exists() and len(metrics_file.read_text().splitlines()) >= 3:
      break
    time.sleep(0.02)
  assert process.poll() is None, "the run ended before it could be killed: " + process.communicate()[0][-3000:]
  process.send_signal(signal.SIGKILL)
  process.communicate()
  steps_before_kill = len(metrics_file.read_text().splitlines())
  assert 3 <= steps_before_kill < 6, steps_before_kill

  output = _finish(_launch(interrupted, cache, *NO_STAGES))
  assert "resumed from" in output, output[-3000:]
  assert _metrics(interrupted) == _metrics(whole)
  final_whole = load_file(str(whole / "policy_final" / "model.safetensors"))
  final_resumed = load_file(str(interrupted / "policy_final" / "model.safetensors"))
  assert final_whole.keys() == final_resumed.keys()
  for name in final_whole:
    np.testing.assert_array_equal(final_resumed[name], final_whole[name], err_msg=name)
