"""BERT classifier: logits parity with transformers on padded sentence pairs, sharded loading, clear errors.

Also holds the helpers that `test_modernbert.py` shares (random scaled HF weights, jitted forward, HF logits).
"""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from darling_jax import sharding
from darling_jax.classifiers import BertForSequenceClassification, load_classifier
from tests.checkpoint_edits import edit_config, edit_tensors

TINY_BERT = dict(vocab_size=320, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=160,
                 max_position_embeddings=64, type_vocab_size=2, num_labels=3, pad_token_id=0)
CLS, SEP = 1, 2
PAIR_LENGTHS = [(6, 5), (3, 2), (1, 7), (2, 1)]  # (len a, len b): ragged, right-padded to the longest


def scale_weights(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
  """Random weights large enough that a mis-mapped tensor shows in the logits (norm params around 1)."""
  generator = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=generator)
      p.copy_(1.0 + 0.2 * noise if "norm" in name.lower() else 0.1 * noise)
  return model.eval()


@jax.jit
def forward(model, *inputs):
  """Our jitted classifier forward (NNX modules are pytrees): float32 logits `[B, num_labels]`."""
  return model(*inputs)


def hf_logits(directory, **inputs) -> dict[str, np.ndarray]:
  """Logits of the saved checkpoint under transformers' eager and SDPA attention, by implementation."""
  torch_inputs = {k: torch.tensor(v, dtype=torch.long) for k, v in inputs.items()}
  out = {}
  for impl in ("eager", "sdpa"):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        directory, dtype=torch.float32, attn_implementation=impl).eval()
    with torch.no_grad():
      out[impl] = model(**torch_inputs).logits.float().numpy()
  return out


def assert_parity(got: np.ndarray, expected: dict[str, np.ndarray], atol: float = 1e-4) -> float:
  """Checks `got` against every reference; returns the largest absolute difference."""
  worst = 0.0
  for impl, ref in expected.items():
    assert got.dtype == np.float32 and got.shape == ref.shape, impl
    assert np.abs(ref).max() > 0.5, impl  # the reference is not trivially small
    worst = max(worst, float(np.abs(got - ref).max()))
  assert worst <= atol, worst
  return worst


def pair_batch(lengths: list[tuple[int, int]], vocab_size: int, seed: int = 0):
  """`[CLS] a [SEP] b [SEP]` rows, right-padded: int32 ids, mask and token_type_ids (1 on `b [SEP]`)."""
  rng = np.random.default_rng(seed)
  t = max(a + b + 3 for a, b in lengths)
  ids, mask, types = (np.zeros((len(lengths), t), np.int32) for _ in range(3))
  for i, (a, b) in enumerate(lengths):
    row = [CLS, *rng.integers(3, vocab_size, a), SEP, *rng.integers(3, vocab_size, b), SEP]
    ids[i, :len(row)] = row
    mask[i, :len(row)] = 1
    types[i, a + 2:len(row)] = 1
  return ids, mask, types


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("bert")
  torch.manual_seed(0)
  scale_weights(transformers.BertForSequenceClassification(transformers.BertConfig(**TINY_BERT))).save_pretrained(
      directory)
  return directory


@pytest.fixture
def bert_copy(bert_dir, tmp_path):
  return shutil.copytree(bert_dir, tmp_path / "bert")



def test_pair_logits_match_transformers(bert_dir):
  ids, mask, types = pair_batch(PAIR_LENGTHS, TINY_BERT["vocab_size"], seed=1)
  model = load_classifier(bert_dir)
  assert isinstance(model, BertForSequenceClassification)
  assert model.config.num_labels == 3 and model.config.id2label == ("LABEL_0", "LABEL_1", "LABEL_2")
  expected = hf_logits(bert_dir, input_ids=ids, attention_mask=mask, token_type_ids=types)
  assert_parity(np.asarray(forward(model, ids, mask, types)), expected)
  # token_type_ids default to zeros, as in transformers
  assert_parity(np.asarray(forward(model, ids, mask)), hf_logits(bert_dir, input_ids=ids, attention_mask=mask))


def test_sharded_load_matches_single_device(bert_dir):
  mesh = sharding.make_mesh(1, 2, 4)
  sharded = load_classifier(bert_dir, mesh=mesh)
  words = sharded.bert.embeddings.word_embeddings.weight[...]
  assert not words.sharding.is_fully_replicated
  ids, mask, types = pair_batch(PAIR_LENGTHS, TINY_BERT["vocab_size"], seed=2)
  with jax.set_mesh(mesh):
    got = forward(sharded, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types))
  expected = forward(load_classifier(bert_dir), ids, mask, types)
  np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)


# ---------------------------------------------------------------- bad input
def test_unsupported_model_type(bert_copy):
  edit_config(bert_copy, model_type="roberta")
  with pytest.raises(ValueError, match="model_type 'roberta' is not supported"):
    load_classifier(bert_copy)


@pytest.mark.parametrize("key, value", [("position_embedding_type", "relative_key"), ("hidden_act", "quick_gelu"),
                                        ("is_decoder", True)])
def test_unsupported_config(bert_copy, key, value):
  edit_config(bert_copy, **{key: value})
  with pytest.raises(ValueError, match=f"'{key}'={value!r}"):
    load_classifier(bert_copy)


def test_missing_tensor_is_named(bert_copy):
  edit_tensors(bert_copy, lambda t: t.pop("bert.pooler.dense.weight"))
  with pytest.raises(ValueError, match=r"missing tensor\(s\) \['bert.pooler.dense.weight'\]"):
    load_classifier(bert_copy)


def test_misshaped_and_unexpected_tensors_are_named(bert_copy):
  edit_config(bert_copy, id2label={"0": "no", "1": "yes"}, label2id={"no": 0, "yes": 1})
  with pytest.raises(ValueError, match=r"'classifier.bias' has shape \(3,\), the config expects \(2,\)"):
    load_classifier(bert_copy)
  edit_config(bert_copy, num_hidden_layers=1, id2label={"0": "a", "1": "b", "2": "c"})
  with pytest.raises(ValueError, match=r"unexpected tensor\(s\) \['bert.encoder.layer.1."):
    load_classifier(bert_copy)


def test_bad_paths_and_inputs(bert_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    load_classifier(tmp_path / "nope")
  with pytest.raises(FileNotFoundError, match="config.json"):
    load_classifier(tmp_path)
  model = load_classifier(bert_dir)
  too_long = np.ones((1, TINY_BERT["max_position_embeddings"] + 1), np.int32)
  with pytest.raises(ValueError, match="exceeds max_position_embeddings=64"):
    forward(model, too_long, too_long)
