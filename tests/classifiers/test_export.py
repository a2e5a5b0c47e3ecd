"""Classifier export (`save_classifier`) for BERT, ModernBERT and decoder classifiers: round trips through
transformers and back, a randomly initialised BERT with its tokenizer, atomic overwrite."""

import json

import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from safetensors.numpy import load_file

from darling_jax import sharding
from darling_jax.classifiers import (BertClassifierConfig, BertForSequenceClassification, ModernBertClassifierConfig,
                                     load_classifier, save_classifier)
from darling_jax.models import load_pretrained
from darling_jax.models.config import DecoderConfig
from darling_jax.models.decoder import DecoderLM
from tests.classifiers.test_bert import (PAIR_LENGTHS, TINY_BERT, assert_parity, forward, hf_logits, pair_batch,
                                        scale_weights)
from tests.classifiers.test_decoder_classifier import LENGTHS, ragged_batch, save_hf_classifier
from tests.classifiers.test_modernbert import TINY_MODERNBERT, right_padded_batch


def _bert(directory):
  torch.manual_seed(0)
  model = transformers.BertForSequenceClassification(transformers.BertConfig(**TINY_BERT))
  scale_weights(model).save_pretrained(directory)
  ids, mask, types = pair_batch(PAIR_LENGTHS, TINY_BERT["vocab_size"], seed=3)
  return dict(input_ids=ids, attention_mask=mask, token_type_ids=types)


def _modernbert(directory):
  torch.manual_seed(0)
  model = transformers.ModernBertForSequenceClassification(transformers.ModernBertConfig(**TINY_MODERNBERT))
  scale_weights(model).save_pretrained(directory)
  ids, mask = right_padded_batch([12, 5, 9], TINY_MODERNBERT["vocab_size"], seed=3)
  return dict(input_ids=ids, attention_mask=mask)


def _qwen3(directory):
  save_hf_classifier(directory, "qwen3", num_labels=3, id2label={0: "bad", 1: "ok", 2: "good"})
  ids, mask = ragged_batch(LENGTHS, "left", seed=3)
  return dict(input_ids=ids, attention_mask=mask)


KINDS = {"bert": _bert, "modernbert": _modernbert, "qwen3": _qwen3}


def load_in_transformers(directory) -> transformers.PreTrainedModel:
  """transformers' classifier for `directory`, asserting every tensor was read (nothing missing or left over)."""
  model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
      directory, dtype=torch.float32, output_loading_info=True)
  assert not any(info.values()), info
  return model.eval()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_transformers_to_ours_to_transformers(tmp_path, kind):
  inputs = KINDS[kind](tmp_path / "hf")
  ours = load_pretrained(tmp_path / "hf")
  if not type(ours).uses_token_type_ids:
    inputs.pop("token_type_ids", None)
  save_classifier(ours, tmp_path / "ours")

  # The same tensors as transformers wrote, and a config transformers reads as the same classifier.
  original, exported = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("hf", "ours"))
  assert sorted(exported) == sorted(original)
  for name in original:
    np.testing.assert_array_equal(exported[name], original[name], err_msg=name)
  hf = load_in_transformers(tmp_path / "ours")
  assert type(hf).__name__ == json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"][0]
  assert hf.config.id2label == load_in_transformers(tmp_path / "hf").config.id2label

  got = np.asarray(forward(ours, *inputs.values()))
  worst = assert_parity(got, hf_logits(tmp_path / "ours", **inputs))
  print(f"{kind} export: max |dlogit| vs transformers = {worst:.2e}")
  reloaded = load_pretrained(tmp_path / "ours")
  assert type(reloaded) is type(ours) and reloaded.config == ours.config
  np.testing.assert_array_equal(np.asarray(forward(reloaded, *inputs.values())), got)


def test_sharded_classifier_exports_whole_tensors(tmp_path):
  _qwen3(tmp_path / "hf")
  sharded = load_classifier(tmp_path / "hf", mesh=sharding.make_mesh(1, 2, 4))
  assert not sharded.model.embed_tokens[...].sharding.is_fully_replicated
  save_classifier(sharded, tmp_path / "ours")
  original, exported = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("hf", "ours"))
  assert sorted(exported) == sorted(original)
  for name in original:
    np.testing.assert_array_equal(exported[name], original[name], err_msg=name)


def test_config_round_trips():
  bert = BertClassifierConfig.from_hf(transformers.BertConfig(**TINY_BERT).to_dict())
  assert BertClassifierConfig.from_hf(bert.to_hf()) == bert
  modernbert = ModernBertClassifierConfig.from_hf(transformers.ModernBertConfig(**TINY_MODERNBERT).to_dict())
  assert ModernBertClassifierConfig.from_hf(modernbert.to_hf()) == modernbert
  assert (modernbert.pad_token_id, modernbert.cls_token_id) == (0, 1)


WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"the a cat dog sat on mat was good bad movie plot".split()]


def test_random_bert_with_tokenizer_exports(tmp_path):
  tokenizer = transformers.BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)})
  config = BertClassifierConfig(vocab_size=len(WORDS), hidden_size=32, num_layers=2, num_heads=4,
                                intermediate_size=64, max_position_embeddings=32, num_labels=2,
                                id2label=("neg", "pos"))
  model = BertForSequenceClassification(config, rngs=nnx.Rngs(0))
  target = tmp_path / "out"
  save_classifier(model, target)
  save_classifier(model, target, tokenizer=tokenizer)  # replaces the first export atomically
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export-")]
  assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in target.iterdir()}

  hf = load_in_transformers(target)
  assert hf.config.id2label == {0: "neg", 1: "pos"}
  inputs = dict(transformers.AutoTokenizer.from_pretrained(target)(
      ["the cat sat", "a movie"], ["on the mat", "was good plot"], padding=True, return_tensors="np"))
  ids, mask, types = (inputs[k].astype(np.int32) for k in ("input_ids", "attention_mask", "token_type_ids"))
  assert mask.min() == 0 and types.max() == 1
  got = np.asarray(forward(model, ids, mask, types))
  with torch.no_grad():
    expected = hf(**{k: torch.tensor(v, dtype=torch.long) for k, v in inputs.items()}).logits.numpy()
  np.testing.assert_allclose(got, expected, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(forward(load_pretrained(target), ids, mask, types)), got)


def test_save_classifier_rejects_other_models(tmp_path):
  lm = nnx.eval_shape(lambda: DecoderLM(DecoderConfig(vocab_size=8, hidden_size=8, intermediate_size=8, num_layers=1,
                                                      num_heads=1, num_kv_heads=1, head_dim=8)))
  with pytest.raises(TypeError, match="save_classifier expects one of .* got DecoderLM"):
    save_classifier(lm, tmp_path / "out")
