"""Pair-classifier training: the recipe's pieces (both orders, class-weighted loss, thresholds, metrics),
learning on a synthetic task, checkpoint resume, no retracing, JSONL errors, and a BERT classifier from an
encoder directory.

Everything is tiny and offline: a random BERT (`BertClassifierConfig`) and a word-level tokenizer built here.
"""

import functools
import json

import jax
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from tokenizers import Tokenizer, models, pre_tokenizers

from darling_jax.classifiers import init_classifier
from darling_jax.classifiers.bert import BertClassifierConfig
from darling_jax.classifiers.from_encoder import classifier_from_encoder
from darling_jax.equivalence.encoding import PairFormat
from darling_jax.equivalence.pair_data import PairExample
from darling_jax.equivalence.pair_metrics import best_threshold, classification_metrics, pair_probabilities
from darling_jax.equivalence.training import (TrainConfig, class_weights, encode_examples, make_train_step,
                                              train_pair_classifier, weighted_cross_entropy)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
WORDS = [f"w{i}" for i in range(12)]
TINY = dict(vocab_size=len(SPECIALS) + len(WORDS), hidden_size=64, num_layers=2, num_heads=4,
            intermediate_size=128, max_position_embeddings=32)
# Every synthetic pair is 3 + 3 words: 9 tokens with the specials, one width bucket (16).
CONFIG = TrainConfig(max_length=16, batch_size=16, epochs=8, learning_rate=2e-3, warmup_fraction=0.1,
                     checkpoint_every=4, log_every=1000)


def word_tokenizer() -> transformers.PreTrainedTokenizerFast:
  vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
  tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
  tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]",
                                              unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]")


def permutation_pairs(count: int, seed: int = 0) -> list[PairExample]:
  """Label 1: b is a shuffle of a's three words; label 0: b's three words are all different from a's."""
  rng = np.random.default_rng(seed)
  examples = []
  for i in range(count):
    words = rng.permutation(WORDS)
    a = list(words[:3])
    similar = i % 3 == 0
    b = list(rng.permutation(a)) if similar else list(words[3:6])
    examples.append(PairExample(" ".join(a), " ".join(b), int(similar)))
  return examples


@functools.cache
def tiny_initial_state():
  """(graphdef, state) of the seeded tiny BERT, initialised once under jit."""
  build = lambda: init_classifier(BertClassifierConfig(**TINY), seed=0)
  return nnx.graphdef(nnx.eval_shape(build)), jax.jit(lambda: nnx.state(build()))()


def tiny_model():
  """The same seeded tiny BERT each call (training never modifies or donates the caller's arrays)."""
  return nnx.merge(*tiny_initial_state())


def params_of(model) -> list[np.ndarray]:
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


@pytest.fixture(scope="module")
def tokenizer():
  return word_tokenizer()


@pytest.fixture(scope="module")
def examples():
  return permutation_pairs(48)


@pytest.fixture(scope="module")
def trained(tokenizer, examples):
  """One uninterrupted run, shared by the learning, resume and retrace tests."""
  model = tiny_model()
  before = pair_probabilities(model, tokenizer, examples, max_length=CONFIG.max_length)
  trained_model, history = train_pair_classifier(model, tokenizer, examples, CONFIG, log=lambda line: None)
  return model, before, trained_model, history


# ---------------------------------------------------------------- recipe pieces
def test_class_weights_and_weighted_loss_match_hand_computation():
  labels = np.array([1, 0, 0, 0], np.int32)
  weights = class_weights(labels)
  np.testing.assert_allclose(weights, [4 / 3, 4 / 1])  # N / count_c
  logits = np.array([[2.0, -1.0], [0.5, 0.5], [-1.0, 1.0], [0.0, 3.0]], np.float32)
  row_weights = np.array([4.0, 4 / 3, 4 / 3, 0.0], np.float32)  # last row: padding
  row_labels = np.array([0, 1, 1, 0], np.int32)
  log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  nll = -log_probs[np.arange(4), row_labels]
  expected = np.sum(row_weights * nll) / np.sum(row_weights)
  np.testing.assert_allclose(weighted_cross_entropy(logits, row_labels, row_weights), expected, rtol=1e-6)
  with pytest.raises(ValueError, match=r"no example of class\(es\) \[1\]"):
    class_weights(np.zeros(5, np.int32))


def test_training_rows_hold_both_orders(tokenizer):
  examples = [PairExample("w0 w1", "w2", 1), PairExample("w3", "w4 w5 w6", 0)]
  fmt = PairFormat.from_tokenizer(tokenizer, 16)
  rows, labels = encode_examples(tokenizer, examples, fmt, both_orders=True)
  token = lambda words: [len(SPECIALS) + WORDS.index(w) for w in words.split()]
  ids = lambda a, b: [2, *token(a), 3, *token(b), 3]  # [CLS] a [SEP] b [SEP]
  assert [r[0] for r in rows] == [ids("w0 w1", "w2"), ids("w2", "w0 w1"), ids("w3", "w4 w5 w6"),
                                  ids("w4 w5 w6", "w3")]
  assert rows[1][1] == [0, 0, 0, 1, 1, 1]  # token types: 1 after the first [SEP]
  np.testing.assert_array_equal(labels, [1, 1, 0, 0])
  one_order, _ = encode_examples(tokenizer, examples, fmt, both_orders=False)
  assert [r[0] for r in one_order] == [rows[0][0], rows[2][0]]


def test_config_errors_name_the_key():
  for key, value in [("batch_size", 0), ("learning_rate", 0.0), ("warmup_fraction", 1.0), ("frozen", "bert")]:
    with pytest.raises(ValueError, match=f"TrainConfig.{key}="):
      TrainConfig(**{key: value})


# ---------------------------------------------------------------- training
def test_training_lowers_the_loss_and_learns_the_task(trained, tokenizer, examples):
  model, before, trained_model, history = trained
  labels = np.array([e.label for e in examples])
  losses = [h["loss"] for h in history]
  assert len(history) == 8 * 6  # 48 pairs, both orders, 16 rows per step, 8 epochs
  assert np.mean(losses[-6:]) < 0.5 * np.mean(losses[:6]), losses
  after = pair_probabilities(trained_model, tokenizer, examples, max_length=CONFIG.max_length)
  accuracy_before = classification_metrics(before, labels, best_threshold(before, labels))["accuracy"]
  accuracy_after = classification_metrics(after, labels, 0.5)["accuracy"]
  assert accuracy_after >= 0.9 and accuracy_after > accuracy_before, (accuracy_before, accuracy_after)
  # the caller's model was not donated away or changed
  np.testing.assert_array_equal(pair_probabilities(model, tokenizer, examples, max_length=16), before)


def test_no_retrace_across_steps_of_one_bucket(trained):
  model, _, _, history = trained
  graphdef = nnx.split(model, nnx.Param, ...)[0]
  step = make_train_step(graphdef, CONFIG, len(history))[0]
  assert {h["width"] for h in history} == {16}
  assert step._cache_size() == 1


def test_resume_from_checkpoint_matches_an_uninterrupted_run(trained, tokenizer, examples, tmp_path):
  _, _, uninterrupted, history = trained
  lines = []
  _, first = train_pair_classifier(tiny_model(), tokenizer, examples, CONFIG, checkpoint_dir=tmp_path,
                                   max_steps=11, log=lines.append)
  assert len(first) == 11
  resumed, rest = train_pair_classifier(tiny_model(), tokenizer, examples, CONFIG, checkpoint_dir=tmp_path,
                                        log=lines.append)
  assert any("resumed" in line and "step 11" in line for line in lines)
  assert [h["step"] for h in rest] == list(range(12, len(history) + 1))
  assert [h["loss"] for h in first + rest] == pytest.approx([h["loss"] for h in history], rel=1e-5)
  for got, expected in zip(params_of(resumed), params_of(uninterrupted), strict=True):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="TrainConfig.learning_rate"):
    train_pair_classifier(tiny_model(), tokenizer, examples, CONFIG.replace(learning_rate=1e-3),
                          checkpoint_dir=tmp_path, log=lines.append)


# ---------------------------------------------------------------- classifier from an encoder checkpoint
def hf_encoder_dir(tmp_path, cls, name):
  config = transformers.BertConfig(vocab_size=TINY["vocab_size"], hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=64, max_position_embeddings=32)
  torch.manual_seed(0)
  model = cls(config).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn(p.shape))
  directory = tmp_path / name
  model.save_pretrained(directory)
  return directory, model


@jax.jit
def our_hidden_states(model, ids, mask, types):
  """Our encoder's last hidden states `[B, T, E]` (NNX modules are pytrees: one compilation)."""
  x = model.bert.embeddings(ids, types)
  for layer in model.bert.encoder.layer:
    x = layer(x, (mask > 0)[:, None, :])
  return x


def test_classifier_from_encoder_loads_the_encoder_and_a_fresh_head(tmp_path):
  ids = np.array([[2, 5, 6, 3, 7, 3, 0], [2, 8, 3, 9, 10, 11, 3]], np.int32)
  mask = (ids > 0).astype(np.int32)
  types = np.array([[0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1, 1]], np.int32)
  torch_inputs = dict(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                      token_type_ids=torch.tensor(types, dtype=torch.long))

  directory, hf = hf_encoder_dir(tmp_path, transformers.BertModel, "bert_model")  # no prefix, pooler
  model = classifier_from_encoder(directory, seed=3)
  with torch.no_grad():
    expected = hf(**torch_inputs).pooler_output.numpy()
  pooled = model.bert.pooler(our_hidden_states(model, ids, mask, types))
  np.testing.assert_allclose(pooled, expected, atol=1e-5)
  fresh = jax.jit(lambda: nnx.state(init_classifier(model.config, seed=3)))()  # the seeded initialisation
  np.testing.assert_allclose(model.classifier.kernel[...], fresh["classifier"]["kernel"][...], rtol=1e-6)
  assert model(ids, mask, types).shape == (2, 2)

  # BertForMaskedLM: `bert.` prefix, `cls.*` head tensors, no pooler
  directory, hf = hf_encoder_dir(tmp_path, transformers.BertForMaskedLM, "mlm")
  model = classifier_from_encoder(directory, seed=3)
  with torch.no_grad():
    hidden = hf(**torch_inputs, output_hidden_states=True).hidden_states[-1].numpy()
  got = our_hidden_states(model, ids, mask, types)
  np.testing.assert_allclose(np.asarray(got)[mask > 0], hidden[mask > 0], atol=1e-5)
  fresh_pooler = fresh["bert"]["pooler"]["dense"]["kernel"][...]
  np.testing.assert_allclose(model.bert.pooler.dense.kernel[...], fresh_pooler, rtol=1e-6)

  (directory / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2Model"]}))
  with pytest.raises(ValueError, match="is not a BERT encoder"):
    classifier_from_encoder(directory)
  with pytest.raises(FileNotFoundError, match="no config.json"):
    classifier_from_encoder(tmp_path)
