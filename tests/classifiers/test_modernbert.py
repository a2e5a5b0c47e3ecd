"""ModernBERT classifier: logits parity with transformers (global + sliding-window layers, cls / mean pooling),
config parsing of old and new config.json keys, clear errors."""

import json
import shutil

import numpy as np
import pytest
import torch
import transformers

from darling_jax.classifiers import ModernBertClassifierConfig, ModernBertForSequenceClassification, load_classifier
from tests.classifiers.test_bert import assert_parity, forward, hf_logits, scale_weights
from tests.checkpoint_edits import edit_config, edit_tensors

# 4 layers with global attention every 3rd: [full, sliding, sliding, full]. Window: |i - j| <= 4.
TINY_MODERNBERT = dict(vocab_size=320, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
                       num_attention_heads=4, global_attn_every_n_layers=3, local_attention=8,
                       max_position_embeddings=128, global_rope_theta=1000.0, local_rope_theta=50.0, num_labels=3,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)
CASES = {
    "cls": dict(classifier_pooling="cls"),
    "mean_biases_tanh_gelu": dict(classifier_pooling="mean", norm_bias=True, attention_bias=True, mlp_bias=True,
                                  classifier_bias=True, hidden_activation="gelu_pytorch_tanh"),
}
LENGTHS = [20, 13, 4, 9]  # ragged, right-padded to 20 > local window


def _save(directory, **overrides) -> transformers.PreTrainedModel:
  config = transformers.ModernBertConfig(**{**TINY_MODERNBERT, **overrides})
  torch.manual_seed(0)
  model = scale_weights(transformers.ModernBertForSequenceClassification(config))
  model.save_pretrained(directory)
  return model


def right_padded_batch(lengths: list[int], vocab_size: int, seed: int = 0):
  """`[CLS] tokens… [SEP]` rows right-padded with 0: int32 ids and mask `[B, max(lengths)]`."""
  rng = np.random.default_rng(seed)
  ids, mask = (np.zeros((len(lengths), max(lengths)), np.int32) for _ in range(2))
  for i, n in enumerate(lengths):
    ids[i, :n] = [1, *rng.integers(3, vocab_size, n - 2), 2]
    mask[i, :n] = 1
  return ids, mask


@pytest.fixture(scope="module")
def cls_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("modernbert")
  _save(directory, **CASES["cls"])
  return directory


@pytest.fixture
def cls_copy(cls_dir, tmp_path):
  return shutil.copytree(cls_dir, tmp_path / "modernbert")


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers(tmp_path, case):
  hf = _save(tmp_path, **CASES[case])
  ids, mask = right_padded_batch(LENGTHS, TINY_MODERNBERT["vocab_size"], seed=1)
  assert ids.shape[1] > TINY_MODERNBERT["local_attention"]
  model = load_classifier(tmp_path)
  assert isinstance(model, ModernBertForSequenceClassification)
  assert model.config.layer_types == ("full_attention", "sliding_attention", "sliding_attention", "full_attention")
  expected = hf_logits(tmp_path, input_ids=ids, attention_mask=mask)
  assert_parity(np.asarray(forward(model, ids, mask)), expected)

  # The window matters on this batch: transformers with global attention everywhere gives other logits.
  hf.config.layer_types = ["full_attention"] * 4
  global_only = transformers.ModernBertForSequenceClassification(hf.config).eval()
  global_only.load_state_dict(hf.state_dict())
  with torch.no_grad():
    unwindowed = global_only(input_ids=torch.tensor(ids).long(), attention_mask=torch.tensor(mask)).logits.numpy()
  assert np.abs(unwindowed - expected["eager"]).max() > 1e-2


def test_original_config_keys_parse_like_transformers_5(cls_dir):
  new = json.loads((cls_dir / "config.json").read_text())
  old = {k: v for k, v in new.items() if k not in ("layer_types", "rope_parameters")}
  old.update(global_attn_every_n_layers=3, global_rope_theta=1000.0, local_rope_theta=50.0)
  assert ModernBertClassifierConfig.from_hf(old) == ModernBertClassifierConfig.from_hf(new)
  config = ModernBertClassifierConfig.from_hf(dict(old, local_rope_theta=None))
  assert config.local_rope_theta == config.global_rope_theta == 1000.0  # original: None means the global theta


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("changes, message", [
    (dict(classifier_pooling="max"), "'classifier_pooling'='max'"),
    (dict(hidden_activation="quick_gelu"), "'hidden_activation'='quick_gelu'"),
    (dict(layer_types=["full_attention", "chunked_attention", "full_attention", "full_attention"]),
     "'layer_types' \\['chunked_attention'\\]"),
    (dict(rope_parameters={"full_attention": {"rope_type": "yarn", "rope_theta": 1.0}}), "rope_type 'yarn'"),
])
def test_unsupported_config(cls_copy, changes, message):
  edit_config(cls_copy, **changes)
  with pytest.raises(ValueError, match=message):
    load_classifier(cls_copy)


def test_first_layer_has_no_attn_norm(cls_copy):
  edit_tensors(cls_copy, lambda t: t.update({"model.layers.0.attn_norm.weight": np.ones(64, np.float32)}))
  with pytest.raises(ValueError, match=r"unexpected tensor\(s\) \['model.layers.0.attn_norm.weight'\]"):
    load_classifier(cls_copy)


def test_missing_tensors_are_named(cls_copy):
  edit_tensors(cls_copy, lambda t: t.pop("model.layers.1.attn_norm.weight"))
  with pytest.raises(ValueError, match=r"missing tensor\(s\) \['model.layers.1.attn_norm.weight'\]"):
    load_classifier(cls_copy)
  edit_config(cls_copy, norm_bias=True)  # a config that wants biases the checkpoint lacks: an error, not zeros
  with pytest.raises(ValueError, match=r"missing tensor\(s\) \['head.norm.bias', 'model.embeddings.norm.bias'"):
    load_classifier(cls_copy)
