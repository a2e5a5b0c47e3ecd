"""The siamese pair classifier: symmetric head, one encoder pass per distinct text, save / load through the one
loader, and training on labelled pairs."""

import numpy as np
import pytest
from flax import nnx

from darling_jax.classifiers import BertClassifierConfig
from darling_jax.classifiers.siamese import SiameseBertClassifier, is_siamese, load_siamese
from darling_jax.equivalence import load_equivalence_classifier
from darling_jax.equivalence.loading import save_pair_model
from darling_jax.equivalence.pair_data import PairExample
from darling_jax.equivalence.siamese import SiameseClassifier, encode_texts, pad_rows, train_siamese_classifier
from darling_jax.equivalence.training import TrainConfig
from tests.equivalence.test_pairwise import WORDS, make_tokenizer

CONFIG = BertClassifierConfig(vocab_size=210, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                              num_labels=2, max_position_embeddings=64)


def texts_of(rng, count):
  return [" ".join(rng.choice(WORDS, rng.integers(6, 20))) for _ in range(count)]


def test_pair_scores_are_symmetric_and_match_the_model():
  model = SiameseBertClassifier(CONFIG, rngs=nnx.Rngs(0))
  tokenizer = make_tokenizer()
  rng = np.random.default_rng(0)
  texts = texts_of(rng, 5)
  classifier = SiameseClassifier(model, tokenizer, max_tokens=32, threshold=0.5)
  groups = [texts[:4], [texts[4], texts[0], texts[0] + " ", texts[1]]]
  equivalent, probs = classifier(groups)
  np.testing.assert_array_equal(probs, probs.transpose(0, 2, 1))
  assert (np.diagonal(probs, axis1=1, axis2=2) == 1).all() and probs[1, 1, 2] == 1.0  # identical text
  rows = encode_texts(tokenizer, [texts[0], texts[1]], 32)
  ids, mask = pad_rows(rows, 32, 0, 2)
  u = model.embed(ids, mask)
  direct = 1 / (1 + np.exp(-np.asarray(model.pair_logits(u[:1], u[1:]))))
  assert probs[0, 0, 1] == pytest.approx(float(direct[0]), abs=1e-5)
  np.testing.assert_allclose(np.asarray(model.pair_logits(u[:1], u[1:])), np.asarray(model.pair_logits(u[1:], u[:1])),
                             atol=1e-6)
  assert probs[1, 1, 3] == pytest.approx(probs[0, 0, 1], abs=1e-6)  # the same texts in another group
  np.testing.assert_array_equal(equivalent, probs > 0.5)


def test_save_load_and_the_loader(tmp_path):
  model = SiameseBertClassifier(CONFIG, rngs=nnx.Rngs(1))
  tokenizer = make_tokenizer()
  save_pair_model(model, tmp_path / "siamese", tokenizer=tokenizer)
  assert is_siamese(tmp_path / "siamese")
  reloaded = load_siamese(tmp_path / "siamese")
  for (path, a), (_, b) in zip(nnx.to_flat_state(nnx.state(model, nnx.Param)),
                               nnx.to_flat_state(nnx.state(reloaded, nnx.Param))):
    np.testing.assert_array_equal(np.asarray(a.get_value()), np.asarray(b.get_value()), err_msg=str(path))
  classifier = load_equivalence_classifier(tmp_path / "siamese", max_length=32, threshold=0.7)
  assert isinstance(classifier, SiameseClassifier) and classifier.kind == "siamese" and classifier.threshold == 0.7
  groups = [texts_of(np.random.default_rng(2), 4)]
  np.testing.assert_allclose(classifier.probabilities(groups),
                             SiameseClassifier(model, tokenizer, max_tokens=32).probabilities(groups), atol=1e-6)
  with pytest.raises(ValueError, match="max_tokens"):
    SiameseClassifier(model, tokenizer, max_tokens=100)


def test_training_learns_word_order_invariance():
  """Similar: the same words reordered; different: other words. The trained model separates held-out pairs."""
  rng = np.random.default_rng(3)

  def pairs(count):
    out = []
    for n in range(count):
      a = list(rng.choice(WORDS[:60], 8))
      b = list(rng.permutation(a)) if n % 2 else list(rng.choice(WORDS[:60], 8))
      out.append(PairExample(" ".join(a), " ".join(b), n % 2))
    return out

  train, held_out = pairs(400), pairs(100)
  model = SiameseBertClassifier(CONFIG, rngs=nnx.Rngs(0))
  config = TrainConfig(max_length=16, batch_size=32, epochs=6, learning_rate=3e-3, log_every=10**6)
  trained, history = train_siamese_classifier(model, make_tokenizer(), train, config, log=lambda line: None)
  assert len(history) == 6 * 13 and np.mean([h["loss"] for h in history[-10:]]) < 0.5 * history[0]["loss"]
  classifier = SiameseClassifier(trained, make_tokenizer(), max_tokens=16, short_answer_max_words=None)
  probs = classifier.probabilities([[e.text_a, e.text_b] for e in held_out])[:, 0, 1]
  assert np.mean((probs > 0.5) == np.array([e.label for e in held_out])) > 0.9
