"""The bi-encoder classifier: pooling against transformers, each text encoded once, the head, save / load, the
shared `EquivalenceClassifier` rules, and training it from labelled pairs."""

import json

import numpy as np
import pytest
import torch
import transformers

from darling_jax.equivalence import (BiEncoderClassifier, EquivalenceClassifier, SimilarityHead, bi_encoder,
                                     load_bi_encoder, load_equivalence_classifier, save_bi_encoder, train_bi_encoder)
from darling_jax.equivalence.pair_data import read_pair_jsonl
from darling_jax.equivalence.pairwise import CrossEncoderClassifier
from darling_jax.equivalence.similarity_features import FEATURE_NAMES, LexicalProfile, pair_features
from tests.chat_fixtures import bi_encoder_directory, classifier_directory
from tests.classifiers.test_bert import TINY_BERT, scale_weights
from tests.equivalence.test_pairwise import WORDS, make_tokenizer


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
  """A random transformers `BertModel` (no head) and a word-level tokenizer that adds [CLS] / [SEP]."""
  torch.manual_seed(0)
  hf = scale_weights(transformers.BertModel(transformers.BertConfig(**TINY_BERT), add_pooling_layer=True))
  path = tmp_path_factory.mktemp("encoder")
  hf.save_pretrained(path)
  tokenizer = make_tokenizer()
  tokenizer._tokenizer.post_processor = __import__("tokenizers").processors.TemplateProcessing(
      single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
  tokenizer.save_pretrained(path)
  return hf, path


def texts_of(rng, count, max_words=40):
  return [" ".join(rng.choice(WORDS, rng.integers(3, max_words))) for _ in range(count)]


def test_mean_pooling_matches_transformers(encoder_dir):
  hf, path = encoder_dir
  classifier = BiEncoderClassifier(*bi_encoder.load_encoder(path), None, max_tokens=48, head_tokens=8)
  texts = texts_of(np.random.default_rng(0), 7, max_words=60)
  embeddings = classifier.embed(texts)
  assert embeddings.shape == (7, 2, TINY_BERT["hidden_size"])
  for text, got in zip(texts, embeddings):
    ids = classifier.tokenizer(text, truncation=True, max_length=48)["input_ids"]
    with torch.no_grad():
      hidden = hf(torch.tensor([ids])).last_hidden_state[0].numpy()
    for row, prefix in ((0, len(ids)), (1, min(8, len(ids)))):
      expected = hidden[:prefix].mean(0)
      np.testing.assert_allclose(got[row], expected / np.linalg.norm(expected), atol=2e-5)
  np.testing.assert_allclose(classifier.embed(texts[2:3]), embeddings[2:3], atol=1e-6)  # batch-independent


def test_each_distinct_text_is_encoded_once_and_rules_skip_the_model(encoder_dir, monkeypatch):
  _, path = encoder_dir
  head = SimilarityHead.fit(np.random.default_rng(0).normal(size=(40, len(FEATURE_NAMES))),
                            np.arange(40) % 2)
  classifier = BiEncoderClassifier(*bi_encoder.load_encoder(path), head, max_tokens=48, threshold=0.5)
  encoded = []
  original = BiEncoderClassifier.embed
  monkeypatch.setattr(BiEncoderClassifier, "embed", lambda self, texts: encoded.extend(texts) or original(self, texts))
  rng = np.random.default_rng(1)
  a, b, c = texts_of(rng, 3)
  groups = [[a, b, a + "  ", "w1 w2", "w1 w2", c], [b, c, a, c, b, "w3"]]
  equivalent, probs = classifier(groups)
  assert sorted(encoded) == sorted({a, b, c, "w1 w2", "w3"})  # one pass per distinct text across the batch
  assert probs.shape == (2, 6, 6) and probs.dtype == np.float32
  np.testing.assert_array_equal(probs, probs.transpose(0, 2, 1))
  assert (np.diagonal(probs, axis1=1, axis2=2) == 1).all()
  assert probs[0, 0, 2] == 1.0 and probs[0, 3, 4] == 1.0 and probs[1, 1, 3] == 1.0  # identical, short rule
  features = pair_features(classifier.embed([a, b]), [LexicalProfile.of(a), LexicalProfile.of(b)], [(0, 1)])
  assert probs[0, 0, 1] == pytest.approx(head.probabilities(features)[0], abs=1e-6)
  assert probs[1, 2, 0] == probs[0, 0, 1]  # the same two texts in another group: the same verdict
  np.testing.assert_array_equal(equivalent, probs > 0.5)


def test_similarity_head_fit_is_a_stationary_point_and_separates():
  rng = np.random.default_rng(0)
  labels = (rng.random(300) < 0.3).astype(np.int32)
  features = rng.normal(size=(300, len(FEATURE_NAMES))) + labels[:, None] * np.linspace(1.5, 0, len(FEATURE_NAMES))
  head = SimilarityHead.fit(features, labels, l2=1.0)
  p = head.probabilities(features).astype(np.float64)
  z = (features - np.asarray(head.mean)) / np.asarray(head.scale)
  weight = np.where(labels == 1, 0.5 / labels.mean(), 0.5 / (1 - labels.mean()))
  gradient = z.T @ (weight * (p - labels)) + 1.0 * np.asarray(head.weights)
  assert np.abs(gradient).max() < 1e-3 and abs(np.sum(weight * (p - labels))) < 1e-3
  assert np.mean((p > 0.5) == labels) > 0.8
  assert SimilarityHead.from_json(json.loads(json.dumps(head.to_json()))) == head
  with pytest.raises(ValueError, match="both classes"):
    SimilarityHead.fit(features, np.zeros(300))
  with pytest.raises(ValueError, match="features must be"):
    SimilarityHead.fit(features[:, :3], labels)
  with pytest.raises(ValueError, match="not this version's"):
    SimilarityHead(("cosine",), (0.0,), (1.0,), (1.0,), 0.0)


def test_save_load_and_the_one_loader_for_both_kinds(tmp_path):
  path = bi_encoder_directory(tmp_path / "bi")
  saved = json.loads((tmp_path / "bi" / "darling.json").read_text())
  assert saved["kind"] == "bi_encoder" and saved["max_tokens"] == 96 and saved["head_tokens"] == 32
  classifier = load_equivalence_classifier(path)
  assert isinstance(classifier, BiEncoderClassifier) and classifier.threshold == 0.5
  groups = [["the cat sat on the mat today", "a cat sat on a mat today", "quarterly revenue rose by nine percent"]]
  probs = classifier.probabilities(groups)
  assert 0 < probs[0, 0, 2] < 1
  again = load_bi_encoder(path, threshold=0.9, short_answer_max_words=None)
  np.testing.assert_array_equal(again.probabilities(groups), probs)
  assert again.threshold == 0.9 and again.short_answer_max_words is None
  cross = load_equivalence_classifier(classifier_directory(tmp_path / "cross"), short_answer_max_words=None)
  assert isinstance(cross, CrossEncoderClassifier) and isinstance(cross, EquivalenceClassifier)
  assert cross.short_answer_max_words is None and cross.both_orders
  with pytest.raises(FileNotFoundError, match="not a directory"):
    load_equivalence_classifier(tmp_path / "missing")
  with pytest.raises(ValueError, match="not a bi-encoder"):
    load_bi_encoder(tmp_path / "cross")


def test_train_bi_encoder_on_labelled_pairs(encoder_dir, tmp_path):
  _, path = encoder_dir
  rng = np.random.default_rng(3)
  rows = []
  for n in range(60):  # similar: the same words reordered; different: other words
    a = list(rng.choice(WORDS, 20))
    b = list(rng.permutation(a)) if n % 3 == 0 else list(rng.choice(WORDS, 20))
    rows.append({"generation_0": " ".join(a), "generation_1": " ".join(b), "similar": int(n % 3 == 0)})
  file = tmp_path / "pairs.jsonl"
  file.write_text("".join(json.dumps(r) + "\n" for r in rows))
  examples = read_pair_jsonl(file)
  classifier, features = train_bi_encoder(path, examples, max_tokens=48)
  assert features.shape == (60, len(FEATURE_NAMES))
  probs = classifier.probabilities([[e.text_a, e.text_b] for e in examples])[:, 0, 1]
  assert np.mean((probs > classifier.threshold) == np.array([r["similar"] for r in rows])) == 1.0
  save_bi_encoder(classifier, tmp_path / "trained")
  np.testing.assert_allclose(load_bi_encoder(tmp_path / "trained").probabilities([[rows[0]["generation_0"],
                                                                                   rows[0]["generation_1"]]])[0, 0, 1],
                             probs[0], atol=1e-6)


def test_no_retrace_for_new_texts_of_the_same_width(encoder_dir, monkeypatch):
  import chex
  import jax
  _, path = encoder_dir
  traced = jax.jit(chex.assert_max_traces(bi_encoder.mean_pooled_embeddings.__wrapped__, n=1),
                   static_argnames=("graphdef", "head_tokens"))
  monkeypatch.setattr(bi_encoder, "mean_pooled_embeddings", traced)
  classifier = BiEncoderClassifier(*bi_encoder.load_encoder(path), None, max_tokens=48)
  make = lambda seed: [" ".join(np.random.default_rng(seed + n).choice(WORDS, 20)) for n in range(5)]
  classifier.embed(make(0))  # 22 tokens: the 24 bucket, 5 rows padded to 8
  classifier.embed(make(10))
  with pytest.raises(AssertionError, match="trac"):
    classifier.embed(["w1 w2"])  # 4 tokens: the 16 bucket, a new shape
