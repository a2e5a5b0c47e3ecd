"""`darling_jax.plan`: a paper config's real stages compiled over abstract arrays on 8 CPU devices (tiny shapes
from config.json files alone: the plan needs no weights), XLA's memory per device against what the shardings
imply, and a TPU topology when libtpu is installed."""

import importlib.util
import json
import math
import pathlib

import pytest

from darling_jax.planning import run_plan as plan
from darling_jax.config_files import load_config
from darling_jax.planning.executables import required_bytes
from darling_jax.planning.known_models import KNOWN_MODELS

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY_LLAMA = dict(model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=512, hidden_size=64,
                  intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  head_dim=16, max_position_embeddings=256, tie_word_embeddings=False)


def write_config(directory: pathlib.Path, config: dict) -> str:
  directory.mkdir(parents=True)
  (directory / "config.json").write_text(json.dumps(config))
  return str(directory)


def tiny_wildchat_config(tmp_path, prompts=8):
  config = load_config(REPO / "configs" / "paper_wildchat_llama8b.py")
  config.policy.checkpoint = write_config(tmp_path / "policy", TINY_LLAMA)
  config.quality.reward_model = write_config(tmp_path / "rm", dict(
      TINY_LLAMA, architectures=["LlamaForSequenceClassification"], num_labels=1, pad_token_id=0))
  config.classifier.path = write_config(tmp_path / "classifier", dict(
      KNOWN_MODELS["similarity-classifier-f168-hf"], hidden_size=64, intermediate_size=96, num_hidden_layers=3,
      num_attention_heads=4, vocab_size=512, max_position_embeddings=512))
  config.classifier.max_length = 64
  config.classifier.rows_per_call = 16
  config.quality.reward_model_max_length = 48
  config.rl.update(prompts_per_step=prompts, group_size=8, max_new_tokens=16)
  config.grpo.logprob_chunk_size = 4
  return config


def test_plan_compiles_every_stage_and_accounts_memory_per_device(tmp_path):
  config = tiny_wildchat_config(tmp_path)
  result = plan.make_plan(config, "cpu:8", prompt_len=12, hbm_gib=1.0)
  assert result["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1} and result["prompt_width"] == 16
  stages = {s["name"]: s for s in result["stages"]}
  assert set(stages) == {"sample: prefill", "sample: decode", "reference log-probs", "update", "reward model",
                         "pair classifier"}
  assert all(s["peak"] > 0 for s in stages.values())
  # Weights: float32 master weights split 8 ways over fsdp (every matrix's embed dimension divides by 8).
  params = result["policy_params"]
  assert result["resident_bytes"]["policy weights"] == pytest.approx(4 * params / 8, rel=0.02)
  assert result["resident_bytes"]["optimizer state"] == pytest.approx(2 * 4 * params / 8, rel=0.02)
  assert result["resident_bytes"]["reference weights"] == result["resident_bytes"]["policy weights"]
  # KV cache, bfloat16: 8 prompts' caches of 16 slots + 64 samples' caches of 16 slots, rows split 8 ways.
  per_slot = 2 * 2 * 2 * 16 * 2  # layers × (k, v) × kv heads × head dim × bytes
  kv = (8 * 16 + 64 * 16) * per_slot // 8
  assert result["kv_cache_bytes"] >= kv
  # The prefill's outputs (caches and [64, V] f32 logits) are row-split too, not replicated on every device.
  logits = 64 * 512 * 4 // 8
  assert stages["sample: prefill"]["outputs"] <= 1.25 * (result["kv_cache_bytes"] + logits)
  assert result["fits"] is True and result["peak_bytes"] < 2**30
  assert result["model_flops_per_step"]["update"] > result["model_flops_per_step"]["reference"] > 0
  text = plan.format_plan(result)
  assert "FITS in 1.00 GiB" in text and "| update |" in text


def test_plan_says_when_it_does_not_fit(tmp_path):
  result = plan.make_plan(tiny_wildchat_config(tmp_path), "cpu:8", prompt_len=12, hbm_gib=0.001)
  assert result["fits"] is False and "DOES NOT FIT" in plan.format_plan(result)


def test_unknown_checkpoint_is_named(tmp_path):
  config = tiny_wildchat_config(tmp_path)
  config.policy.checkpoint = "/nowhere/MyModel-7B"
  with pytest.raises(ValueError, match=r"policy.checkpoint '/nowhere/MyModel-7B'.*'MyModel-7B' is not a known"):
    plan.make_plan(config, "cpu:8", prompt_len=12)


def test_known_models_give_the_paper_shapes():
  hf, source = plan.checkpoint_config("/models/Qwen3-4B-Base", "policy.checkpoint")
  assert "known shape" in source
  from darling_jax.models import DecoderConfig
  assert DecoderConfig.from_hf(hf).num_params == pytest.approx(4.02e9, rel=0.01)
  hf, _ = plan.checkpoint_config("/models/Llama-3.1-8B-Instruct", "policy.checkpoint")
  assert DecoderConfig.from_hf(hf).num_params == pytest.approx(8.03e9, rel=0.01)


def test_mesh_that_does_not_match_the_topology_is_an_error(tmp_path):
  config = tiny_wildchat_config(tmp_path)
  config.mesh.fsdp = 3
  with pytest.raises(ValueError, match="fsdp=3"):
    plan.make_plan(config, "cpu:8", prompt_len=12)


def test_required_bytes_reads_xla_resource_exhausted_messages():
  message = ("Ran out of memory in memory space hbm. the total memory required for HLO temporaries (2.40T) "
             "exceeds available HBM (95.74G).")
  assert required_bytes(message) == int(2.40 * 2**40)


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="needs libtpu (pip install -e '.[tpu-plan]')")
def test_plan_compiles_for_an_abstract_tpu_topology(tmp_path):
  config = tiny_wildchat_config(tmp_path, prompts=4)
  config.mesh.fsdp = 4
  result = plan.make_plan(config, "v5p:2x2x1", prompt_len=12)
  assert result["device_kind"] == "TPU v5" and result["devices"] == 4
  assert result["hbm_bytes"] == 95 * 2**30 and result["fits"] is True
  assert math.isfinite(result["stages"][0]["xla_flops"] or 0.0)


def test_a_stage_xla_refuses_for_memory_makes_the_plan_not_fit(tmp_path, monkeypatch):
  import jax

  from darling_jax.planning import executables

  class Refused:
    def compile(self):
      raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in "
                                       "memory space hbm. the total memory required for HLO temporaries (2.40T) "
                                       "exceeds available HBM (95.74G).")

  compile_stage = executables.compile_stage
  monkeypatch.setattr(executables, "compile_stage", lambda name, lowered, **kw: compile_stage(
      name, Refused() if name == "update" else lowered, **kw))
  result = plan.make_plan(tiny_wildchat_config(tmp_path), "cpu:8", prompt_len=12, hbm_gib=1000.0)
  update = next(s for s in result["stages"] if s["name"] == "update")
  assert update["error"] and update["temporaries"] == int(2.40 * 2**40)
  assert result["fits"] is False and result["peak_stage"] == "update"
  text = plan.format_plan(result)
  assert "refused by XLA" in text and "XLA refused to compile for lack of device memory: update" in text
  assert "DOES NOT FIT" in text and "| no |" in plan.table_row(result) and "≥ " in plan.table_row(result)
