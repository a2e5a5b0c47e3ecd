"""Decoder classifier (Llama / Qwen2 / Qwen3 `*ForSequenceClassification`): logits parity with transformers on
right- and left-padded ragged batches, loading through `models.load_pretrained`, clear errors."""

import json
import shutil

import numpy as np
import pytest
import torch
import transformers

from darling_jax.classifiers import DecoderClassifierConfig, DecoderForSequenceClassification, load_classifier
from darling_jax.models import DecoderLM, load_pretrained
from tests.checkpoint_edits import edit_config, edit_tensors
from tests.classifiers.test_bert import assert_parity, forward, hf_logits, scale_weights
from tests.models.hf_fixtures import make_hf_model

PAD = 0
TINY_DECODER = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=32, max_position_embeddings=128, rms_norm_eps=1e-5,
                    pad_token_id=PAD)  # ~0.13M params
CONFIG_CLASSES = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config,
                  "qwen3": transformers.Qwen3Config}
# Real-token counts per row; the last row ends with a real token whose id is the pad id (mask 1), which
# transformers' pooling skips: it classifies from the token before it.
LENGTHS = [9, 4, 7, 1, 5]


def save_hf_classifier(directory, model_type: str, num_labels: int, seed: int = 0,
                       **overrides) -> transformers.PreTrainedModel:
  """A tiny HF `<Arch>ForSequenceClassification` with scaled random weights, saved to `directory`."""
  config = CONFIG_CLASSES[model_type](**{**TINY_DECODER, "num_labels": num_labels, **overrides})
  torch.manual_seed(seed)
  model = scale_weights(transformers.AutoModelForSequenceClassification.from_config(config, dtype=torch.float32),
                        seed)
  model.save_pretrained(directory)
  return model


def ragged_batch(lengths: list[int], side: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """int32 ids and mask `[B, max(lengths)]`, padded with PAD on `side`; the last row's last real token is PAD."""
  rng = np.random.default_rng(seed)
  t = max(lengths)
  ids, mask = (np.full((len(lengths), t), PAD, np.int32), np.zeros((len(lengths), t), np.int32))
  for i, n in enumerate(lengths):
    row = rng.integers(1, TINY_DECODER["vocab_size"], n)
    if i == len(lengths) - 1:
      row[-1] = PAD
    span = slice(0, n) if side == "right" else slice(t - n, t)
    ids[i, span], mask[i, span] = row, 1
  return ids, mask


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("qwen3_cls")
  save_hf_classifier(directory, "qwen3", num_labels=3)
  return directory


@pytest.fixture
def qwen3_copy(qwen3_dir, tmp_path):
  return shutil.copytree(qwen3_dir, tmp_path / "qwen3_cls")


@pytest.mark.parametrize("model_type, num_labels, overrides", [
    ("qwen3", 3, {}),  # q/k RMSNorm
    ("qwen2", 2, dict(tie_word_embeddings=True)),  # q/k/v bias
    ("llama", 3, dict(attention_bias=True)),  # q/k/v/o bias
])
def test_logits_match_transformers(tmp_path, model_type, num_labels, overrides):
  save_hf_classifier(tmp_path, model_type, num_labels, **overrides)
  model = load_pretrained(tmp_path)  # the one entry point: config.json architectures -> classifier
  assert isinstance(model, DecoderForSequenceClassification) and not model.uses_token_type_ids
  assert model.config.num_labels == num_labels and model.config.pad_token_id == PAD
  # transformers omits the default id2label of a 2-label model from config.json
  assert model.config.id2label == (None if num_labels == 2 else tuple(f"LABEL_{i}" for i in range(num_labels)))
  # One batch: the rows right-padded, then the same rows left-padded (one transformers load per attention impl).
  (right, right_mask), (left, left_mask) = (ragged_batch(LENGTHS, side, seed=1) for side in ("right", "left"))
  ids, mask = np.concatenate([right, left]), np.concatenate([right_mask, left_mask])
  got = np.asarray(forward(model, ids, mask))
  expected = hf_logits(tmp_path, input_ids=ids, attention_mask=mask)
  n = len(LENGTHS)
  for side, rows in (("right", slice(0, n)), ("left", slice(n, 2 * n))):
    worst = assert_parity(got[rows], {impl: ref[rows] for impl, ref in expected.items()})
    print(f"{model_type} {side}-padded: max |dlogit| = {worst:.2e}")
  # Same rows, either padding: RoPE attention only sees relative positions.
  np.testing.assert_allclose(got[n:], got[:n], atol=1e-4)


def test_pooling_follows_pad_token_id_not_the_mask(qwen3_dir):
  model = load_classifier(qwen3_dir)
  ids = np.array([[5, 6, 7, PAD, PAD], [PAD, PAD, 5, 6, 7], [5, PAD, 6, PAD, PAD], [PAD] * 5], np.int32)
  np.testing.assert_array_equal(np.asarray(model.pooled_index(ids)), [2, 4, 2, 0])


def test_causal_lm_directory_still_loads_decoder_lm(tmp_path):
  make_hf_model("llama", vocab_size=512).save_pretrained(tmp_path)
  assert type(load_pretrained(tmp_path)) is DecoderLM


def test_config_round_trips(qwen3_dir):
  hf = json.loads((qwen3_dir / "config.json").read_text())
  config = DecoderClassifierConfig.from_hf(hf)
  assert DecoderClassifierConfig.from_hf(config.to_hf()) == config
  assert config.to_hf()["architectures"] == ["Qwen3ForSequenceClassification"]
  named = config.replace(id2label=("bad", "ok", "good"))
  assert named.to_hf()["label2id"] == {"bad": 0, "ok": 1, "good": 2}
  assert DecoderClassifierConfig.from_hf(named.to_hf()) == named


# ---------------------------------------------------------------- bad input
def test_no_pad_token_id_allows_only_one_row(qwen3_copy):
  edit_config(qwen3_copy, pad_token_id=None)
  model = load_classifier(qwen3_copy)
  ids, mask = ragged_batch([6, 6], "right", seed=2)
  with pytest.raises(ValueError, match="no pad_token_id"):
    forward(model, ids, mask)
  expected = hf_logits(qwen3_copy, input_ids=ids[:1], attention_mask=mask[:1])  # transformers: the last slot
  assert_parity(np.asarray(forward(model, ids[:1], mask[:1])), expected)


def test_causal_lm_is_not_a_classifier(tmp_path):
  make_hf_model("qwen3", vocab_size=512).save_pretrained(tmp_path)
  with pytest.raises(ValueError, match=r"'architectures'=\['Qwen3ForCausalLM'\] has no '\*ForSequenceClassif"):
    load_classifier(tmp_path)


def test_mismatched_checkpoints_are_named(qwen3_copy):
  edit_config(qwen3_copy, id2label={"0": "no", "1": "yes"}, label2id={"no": 0, "yes": 1})
  with pytest.raises(ValueError, match=r"'score.weight' has shape \(3, 64\), the config expects \(2, 64\)"):
    load_pretrained(qwen3_copy)
  edit_config(qwen3_copy, id2label={"0": "a", "1": "b", "2": "c"})
  edit_tensors(qwen3_copy, lambda t: t.pop("score.weight"))
  with pytest.raises(ValueError, match=r"missing tensor\(s\) \['score.weight'\]"):
    load_pretrained(qwen3_copy)


def test_unused_lm_head_is_ignored(qwen3_copy):
  edit_tensors(qwen3_copy, lambda t: t.update({"lm_head.weight": np.zeros((512, 64), np.float32)}))
  assert isinstance(load_classifier(qwen3_copy), DecoderForSequenceClassification)
