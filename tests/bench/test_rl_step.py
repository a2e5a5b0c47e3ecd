"""The whole-RL-step benchmark (`darling_jax.bench.rl_step`) at its micro shape: both frameworks run the workload
and report a step split that is consistent (no timing thresholds)."""

import math

import numpy as np
import pytest

from darling_jax.bench import rl_step
from darling_jax.models import DecoderConfig

MICRO = rl_step.RL_SHAPES["micro"]
SPLIT = ("step_s", "generate_s", "reward_s", "update_s")


def check_result(result: dict, steps: int, warmup: int) -> None:
  assert len(result["steps"]) == steps
  for split in result["steps"]:
    assert all(math.isfinite(split[key]) and split[key] >= 0 for key in SPLIT), split
    # the stages are parts of the step, each timed inside it
    assert split["generate_s"] + split["reward_s"] + split["update_s"] <= split["step_s"] * (1 + 1e-6), split
  for key in SPLIT:
    assert result[key] == pytest.approx(float(np.median([s[key] for s in result["steps"][warmup:]])))
  assert 0 < result["response_len"] <= MICRO.new_tokens


def test_the_workload_is_the_same_text_for_both_frameworks():
  tokenizer = rl_step.word_tokenizer(MICRO.hf_config["vocab_size"])
  prompts = rl_step.prompt_texts(MICRO, steps=2)
  assert len(prompts) == 2 * MICRO.prompts and len(set(prompts)) == len(prompts)
  ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
  assert all(len(row) == MICRO.prompt_len and 0 < min(row) and max(row) < tokenizer.eos_token_id for row in ids)
  assert tokenizer.batch_decode(ids) == prompts
  assert tokenizer.decode([2, 3, tokenizer.eos_token_id], skip_special_tokens=True) == "w2 w3"
  assert rl_step.even_word_share(None, ["w2 w3", "", "w4"]) == [0.5, 0.0, 1.0]


def test_darling_jax_side_runs_the_trainers_step():
  result = rl_step.run_darling(MICRO, steps=3, warmup=1)
  check_result(result, steps=3, warmup=1)
  assert result["framework"] == "darling_jax"
  assert np.isfinite(result["loss"])
  assert result["update_model_gflop"] > 0 and result["roofline_gflops"] > 0
  row = rl_step.table_row(MICRO, result, None)
  assert row.startswith(f"| {MICRO.name}") and "n/a" in row  # no TRL: no ratio


@pytest.mark.skipif(not rl_step.trl_available(), reason="needs trl (pip install -e '.[bench]')")
def test_trl_side_runs_grpo_trainer_on_the_same_workload():
  result = rl_step.run_trl(MICRO, steps=3, warmup=1)
  check_result(result, steps=3, warmup=1)
  assert result["framework"] == "trl" and result["versions"]["trl"] == "1.16.0"
  assert not result["activation_checkpointing"]  # as darling_jax's update: no recomputed forward
  config = DecoderConfig.from_hf(dict(MICRO.hf_config, model_type="llama"))
  assert result["params"] == config.num_params  # the same tied-embedding shape as ours
