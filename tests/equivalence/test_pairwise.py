"""Pair encoding and the batched pairwise kernel, against transformers on each pair and a per-pair loop."""

import chex
import jax
import numpy as np
import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers

from darling_jax import sharding
from darling_jax.classifiers import load_classifier
from darling_jax.equivalence import CrossEncoderClassifier, EquivalenceClassifier, PairFormat, pair_ids
from darling_jax.equivalence import pairwise
from tests.classifiers.test_bert import TINY_BERT, scale_weights

WORDS = [f"w{i}" for i in range(200)]


def make_tokenizer():
  vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
  tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
  tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", cls_token="[CLS]",
                                              sep_token="[SEP]", unk_token="[UNK]")


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
  torch.manual_seed(0)
  config = transformers.BertConfig(**{**TINY_BERT, "num_labels": 2})
  hf = scale_weights(transformers.BertForSequenceClassification(config))
  path = tmp_path_factory.mktemp("bert")
  hf.save_pretrained(path)
  return hf, load_classifier(path), make_tokenizer(), path


def random_groups(rng, num_groups, size, max_words):
  """Groups mixing short (rule-decided) and long responses, with repeats so some pairs are identical."""
  groups = []
  for _ in range(num_groups):
    group = []
    for _ in range(size):
      if group and rng.random() < 0.2:
        group.append(group[rng.integers(len(group))])
      else:
        group.append(" ".join(rng.choice(WORDS, rng.integers(1, max_words + 1))))
    groups.append(group)
  return groups


def hf_similar_probability(hf, ids, types):
  with torch.no_grad():
    logits = hf(torch.tensor([ids]), token_type_ids=torch.tensor([types])).logits
  return float(torch.softmax(logits, -1)[0, -1])


def test_pair_format_truncates_each_response():
  fmt = PairFormat(cls_id=1, sep_id=2, pad_id=0, max_length=11)  # budget (11 - 3) // 2 = 4 tokens each
  ids, types = pair_ids(list(range(10, 17)), [20, 21], fmt)
  assert ids == [1, 10, 11, 12, 13, 2, 20, 21, 2]
  assert types == [0, 0, 0, 0, 0, 0, 1, 1, 1]
  with pytest.raises(ValueError, match="max_length"):
    PairFormat(cls_id=1, sep_id=2, pad_id=0, max_length=2)


@pytest.mark.parametrize("both_orders", [False, True])
def test_kernel_matches_transformers_on_every_pair(bert, both_orders):
  hf, model, tokenizer, _ = bert
  groups = random_groups(np.random.default_rng(1), num_groups=3, size=5, max_words=30)
  classifier = CrossEncoderClassifier(model, tokenizer, max_length=48, both_orders=both_orders, rows_per_call=8)
  equivalent, probs = classifier(groups)
  assert probs.shape == equivalent.shape == (3, 5, 5) and probs.dtype == np.float32
  np.testing.assert_array_equal(probs, probs.transpose(0, 2, 1))
  assert (np.diagonal(probs, axis1=1, axis2=2) == 1).all()
  np.testing.assert_array_equal(equivalent, probs > 0.32)
  classified = 0
  for b, group in enumerate(groups):
    for i in range(5):
      for j in range(i + 1, 5):
        a, c = group[i].split(), group[j].split()
        if max(len(a), len(c)) <= 5:  # the short-answer rule decides, no model call
          assert probs[b, i, j] == float(2 * len(set(a) & set(c)) >= max(len(a), len(c)))
          continue
        if a == c:  # identical text: equivalent, no model call
          assert probs[b, i, j] == 1.0
          continue
        classified += 1
        ta, tc = tokenizer(group[i], add_special_tokens=False)["input_ids"], tokenizer(group[j],
                                                                                       add_special_tokens=False)["input_ids"]
        expected = [hf_similar_probability(hf, *pair_ids(x, y, classifier.fmt))
                    for x, y in ([(ta, tc), (tc, ta)] if both_orders else [(ta, tc)])]
        assert abs(probs[b, i, j] - np.mean(expected)) < 2e-5, (b, i, j)
  assert classified >= 10


@pytest.mark.parametrize("both_orders", [False, True])
def test_kernel_equals_per_pair_loop(bert, both_orders):
  _, model, tokenizer, _ = bert
  groups = random_groups(np.random.default_rng(2), num_groups=4, size=4, max_words=60)
  classifier = CrossEncoderClassifier(model, tokenizer, max_length=64, both_orders=both_orders)
  np.testing.assert_allclose(classifier.probabilities(groups), classifier.probabilities_per_pair(groups),
                             atol=1e-5)


def test_no_retrace_for_new_groups_of_the_same_shapes(bert, monkeypatch):
  _, model, tokenizer, _ = bert
  traced = jax.jit(chex.assert_max_traces(pairwise.similar_probability.__wrapped__, n=1),
                   static_argnames=("graphdef",))
  monkeypatch.setattr(pairwise, "similar_probability", traced)
  classifier = CrossEncoderClassifier(model, tokenizer, max_length=32, short_answer_max_words=None)
  # 2 groups x 3 pairs = 6 rows (padded to 8) of 10-word responses: 23 tokens, all in the 24 bucket.
  make = lambda seed: [[" ".join(np.random.default_rng(seed + g).choice(WORDS, 10)) for g in range(3)]] * 2
  classifier(make(0))
  classifier(make(10))
  with pytest.raises(AssertionError, match="trac"):
    classifier([[" ".join(WORDS[k:k + 3]) for k in range(3)]] * 2)  # 9 tokens: the 16 bucket, a new shape


def test_edge_cases(bert):
  _, model, tokenizer, _ = bert
  classifier = CrossEncoderClassifier(model, tokenizer, max_length=32)
  equivalent, probs = classifier([["only one"], ["another"]])  # G = 1: no pairs
  assert equivalent.shape == (2, 1, 1) and equivalent.all() and (probs == 1).all()
  long = " ".join(WORDS[:20])
  equivalent, probs = classifier([["", "", long, "w1 w2"]])
  assert equivalent[0, 0, 1]  # two empty responses: equivalent by the short-answer rule
  assert not equivalent[0, 0, 3] and 0 < probs[0, 0, 2] < 1  # empty vs long goes to the model
  with pytest.raises(ValueError, match=r"ragged.*groups\[1\] has 2"):
    classifier([["a", "b", "c"], ["a", "b"]])
  with pytest.raises(ValueError, match=r"groups\[0\]\[1\]"):
    classifier([["a", 3]])
  with pytest.raises(ValueError, match="empty"):
    classifier([[]])
  with pytest.raises(ValueError, match="threshold"):
    CrossEncoderClassifier(model, tokenizer, threshold=1.5)


def test_rows_sharded_over_a_mesh_match(bert):
  _, model, tokenizer, path = bert
  groups = random_groups(np.random.default_rng(3), num_groups=2, size=4, max_words=40)
  mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
  sharded = CrossEncoderClassifier(load_classifier(path, mesh=mesh), tokenizer, max_length=48, sharding=sharding.batch_sharding(mesh, 2))
  np.testing.assert_allclose(sharded.probabilities(groups),
                             CrossEncoderClassifier(model, tokenizer, max_length=48).probabilities(groups), atol=1e-5)
