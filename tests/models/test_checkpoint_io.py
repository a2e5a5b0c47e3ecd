"""Export round trips with transformers, and clear errors for bad checkpoints."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from darling_jax.models import DecoderConfig, init_model, load_pretrained, save_pretrained
from tests.models.hf_fixtures import forward, hf_logits, left_padded_batch, make_hf_model, max_diff_on_valid
from tests.checkpoint_edits import edit_config, edit_tensors

TINY_QWEN3 = DecoderConfig(vocab_size=4096, hidden_size=128, intermediate_size=256, num_layers=2, num_heads=4,
                           num_kv_heads=2, head_dim=48, qk_norm=True, model_type="qwen3", rms_norm_eps=1e-6)


@pytest.mark.parametrize("config", [
    TINY_QWEN3,
    TINY_QWEN3.replace(model_type="qwen2", qk_norm=False, qkv_bias=True, tie_word_embeddings=True),
    TINY_QWEN3.replace(model_type="llama", qk_norm=False, qkv_bias=True, o_bias=True),
], ids=["qwen3", "qwen2_tied", "llama_bias"])
def test_ours_to_transformers(tmp_path, config):
  ours = init_model(config, seed=3)
  save_pretrained(ours, tmp_path / "export")
  hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "export", dtype=torch.float32).eval()
  assert type(hf).__name__.lower().startswith(config.model_type)
  ids, mask = left_padded_batch(config.vocab_size, [9, 4, 7], seed=0)
  got = np.asarray(forward(ours, ids, mask))
  assert max_diff_on_valid(got, hf_logits(hf, ids, mask), mask) <= 1e-4


def test_transformers_to_ours_to_transformers(tmp_path):
  hf = make_hf_model("llama", tie_word_embeddings=False)
  hf.save_pretrained(tmp_path / "hf")
  ours = load_pretrained(tmp_path / "hf")
  save_pretrained(ours, tmp_path / "ours")
  original, exported = load_file(str(tmp_path / "hf" / "model.safetensors")), load_file(
      str(tmp_path / "ours" / "model.safetensors"))
  assert set(original) == set(exported)
  for name in original:
    np.testing.assert_array_equal(original[name], exported[name], err_msg=name)
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours", dtype=torch.float32).eval()
  ids, mask = left_padded_batch(hf.config.vocab_size, [5, 8], seed=1)
  assert max_diff_on_valid(hf_logits(reloaded, ids, mask), hf_logits(hf, ids, mask), mask) == 0.0


def test_bf16_export_loads_in_transformers(tmp_path):
  ours = init_model(TINY_QWEN3.replace(param_dtype=jnp.bfloat16, dtype=jnp.bfloat16))
  save_pretrained(ours, tmp_path / "bf16")
  assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
  hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "bf16")
  assert hf.model.embed_tokens.weight.dtype == torch.bfloat16
  np.testing.assert_array_equal(hf.model.embed_tokens.weight.detach().float().numpy(),
                                np.asarray(ours.embed_tokens[...].astype(jnp.float32)))


def test_export_overwrites_atomically(tmp_path):
  target = tmp_path / "out"
  save_pretrained(init_model(TINY_QWEN3, seed=0), target)
  save_pretrained(init_model(TINY_QWEN3, seed=1), target)
  assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export-")]


# ---------------------------------------------------------------- bad input
@pytest.fixture
def llama_dir(tmp_path):
  make_hf_model("llama", tie_word_embeddings=False).save_pretrained(tmp_path)
  return tmp_path




def test_unsupported_architecture(llama_dir):
  edit_config(llama_dir, model_type="gpt2")
  with pytest.raises(ValueError, match="model_type 'gpt2' is not supported"):
    load_pretrained(llama_dir)


def test_unsupported_feature(llama_dir):
  edit_config(llama_dir, hidden_act="gelu")
  with pytest.raises(ValueError, match="'hidden_act'='gelu'"):
    load_pretrained(llama_dir)


def test_missing_tensor_is_named(llama_dir):
  edit_tensors(llama_dir, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
  with pytest.raises(ValueError, match=r"missing tensor\(s\) \['model.layers.1.mlp.up_proj.weight'\]"):
    load_pretrained(llama_dir)


def test_misshaped_tensor_is_named(llama_dir):
  def shrink(tensors):
    tensors["model.layers.0.self_attn.k_proj.weight"] = tensors["model.layers.0.self_attn.k_proj.weight"][:32]
  edit_tensors(llama_dir, shrink)
  with pytest.raises(ValueError, match=r"'model.layers.0.self_attn.k_proj.weight' has shape \(32, 128\), the "
                                       r"config expects \(96, 128\)"):
    load_pretrained(llama_dir)


def test_config_tensor_mismatch(llama_dir):
  edit_config(llama_dir, num_hidden_layers=3)
  with pytest.raises(ValueError, match=r"missing tensor\(s\) \['model.layers.2."):
    load_pretrained(llama_dir)
  edit_config(llama_dir, num_hidden_layers=1)
  with pytest.raises(ValueError, match=r"unexpected tensor\(s\) \['model.layers.1."):
    load_pretrained(llama_dir)


def test_untied_config_without_lm_head_is_not_random(llama_dir):
  edit_tensors(llama_dir, lambda t: t.pop("lm_head.weight"))
  with pytest.raises(ValueError, match=r"missing tensor\(s\) \['lm_head.weight'\]"):
    load_pretrained(llama_dir)


def test_bad_paths(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    load_pretrained(tmp_path / "nope")
  with pytest.raises(FileNotFoundError, match="config.json"):
    load_pretrained(tmp_path)
  (tmp_path / "config.json").write_text(json.dumps(make_hf_model("llama").config.to_dict()))
  with pytest.raises(FileNotFoundError, match="model.safetensors"):
    load_pretrained(tmp_path)
