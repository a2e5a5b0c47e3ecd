"""Sampler: cache consistency, greedy parity with transformers, sampling distribution, determinism, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from darling_jax import sharding
from darling_jax.models import DecoderConfig, init_model, load_pretrained
from darling_jax.sampling import generate, truncate_logits
from darling_jax.sampling.truncation import top_p_keep
from darling_jax.sampling import sampler
from darling_jax.sampling.sampler import DECODE_JIT, PREFILL_JIT, decode, prefill
from tests.models.hf_fixtures import forward, make_hf_model

PROMPTS = [[5, 17, 3, 99, 42, 7, 8], [250, 11], [31, 32, 33, 34, 35]]
EOS = 7


@pytest.fixture(scope="module")
def hf_and_ours(tmp_path_factory):
  path = tmp_path_factory.mktemp("qwen2")
  hf = make_hf_model("qwen2", tie_word_embeddings=False)
  hf.save_pretrained(path)
  return hf, load_pretrained(path), path


def test_cached_logprobs_match_full_forward(hf_and_ours):
  _, model, _ = hf_and_ours
  out = generate(model, PROMPTS, num_samples=2, max_new_tokens=12, eos_ids=[EOS], rng=jax.random.key(0),
                 temperature=0.8)
  prompt_tokens = np.repeat(np.asarray(out.prompt_tokens), 2, axis=0)
  prompt_mask = np.repeat(np.asarray(out.prompt_mask), 2, axis=0)
  full_ids = np.concatenate([prompt_tokens, np.asarray(out.tokens)], axis=1)
  full_mask = np.concatenate([prompt_mask, np.asarray(out.mask)], axis=1)
  logits = np.asarray(forward(model, full_ids, full_mask))[:, prompt_tokens.shape[1] - 1:-1] / 0.8
  log_probs = np.asarray(jax.nn.log_softmax(logits, axis=-1))
  expected = np.take_along_axis(log_probs, np.asarray(out.tokens)[..., None], axis=-1)[..., 0]
  valid = np.asarray(out.mask).astype(bool)
  assert valid.sum() > 30
  np.testing.assert_allclose(np.asarray(out.logprobs)[valid], expected[valid], atol=1e-4)


def test_greedy_matches_transformers_generate(hf_and_ours):
  hf, model, _ = hf_and_ours
  out = generate(model, PROMPTS, num_samples=1, max_new_tokens=10, eos_ids=[EOS], rng=jax.random.key(0),
                 temperature=0.0)
  width = max(map(len, PROMPTS))
  ids = np.zeros((len(PROMPTS), width), np.int64)
  mask = np.zeros_like(ids)
  for i, p in enumerate(PROMPTS):
    ids[i, width - len(p):], mask[i, width - len(p):] = p, 1
  with torch.no_grad():
    ref = hf.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False,
                      max_new_tokens=10, eos_token_id=EOS, pad_token_id=EOS).numpy()[:, width:]
  ours, ours_mask = np.asarray(out.tokens), np.asarray(out.mask).astype(bool)
  for i in range(len(PROMPTS)):
    n = int(ours_mask[i].sum())
    np.testing.assert_array_equal(ours[i, :n], ref[i, :n], err_msg=f"prompt {i}")


def test_groups_contiguous_and_greedy_rows_identical(hf_and_ours):
  _, model, _ = hf_and_ours
  grouped = generate(model, PROMPTS, num_samples=3, max_new_tokens=6, eos_ids=[EOS], rng=jax.random.key(0),
                     temperature=0.0)
  for i, prompt in enumerate(PROMPTS):
    alone = generate(model, [prompt], num_samples=1, max_new_tokens=6, eos_ids=[EOS], rng=jax.random.key(0),
                     temperature=0.0)
    for j in range(3):
      np.testing.assert_array_equal(np.asarray(grouped.tokens)[i * 3 + j], np.asarray(alone.tokens)[0])


def test_rng_determinism(hf_and_ours):
  _, model, _ = hf_and_ours
  kw = dict(num_samples=4, max_new_tokens=8, eos_ids=[EOS])
  a = generate(model, PROMPTS, rng=jax.random.key(1), **kw)
  b = generate(model, PROMPTS, rng=jax.random.key(1), **kw)
  c = generate(model, PROMPTS, rng=jax.random.key(2), **kw)
  np.testing.assert_array_equal(np.asarray(a.tokens), np.asarray(b.tokens))
  assert not np.array_equal(np.asarray(a.tokens), np.asarray(c.tokens))
  # samples within a group differ (same prompt, independent draws)
  assert len({tuple(r) for r in np.asarray(a.tokens)[:4].tolist()}) > 1


def test_mask_and_eos_semantics_when_pad_equals_eos():
  config = DecoderConfig(vocab_size=8, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                         num_kv_heads=1, head_dim=16)
  model = init_model(config, seed=0)
  eos = 3
  out = generate(model, [[1, 2], [4]], num_samples=64, max_new_tokens=12, eos_ids=[eos], rng=jax.random.key(0),
                 pad_id=eos)
  tokens, mask = np.asarray(out.tokens), np.asarray(out.mask)
  finished = 0
  for row, row_mask in zip(tokens, mask):
    hits = np.flatnonzero(row == eos)
    if hits.size and row_mask[hits[0]] == 1:
      first = hits[0]
      finished += 1
      assert row_mask[:first + 1].all() and not row_mask[first + 1:].any()
      assert (row[first + 1:] == eos).all()
    else:
      assert row_mask.all()
  assert 0 < finished < len(tokens)
  assert (np.asarray(out.logprobs)[mask == 0] == 0).all()


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 4, 1.0), (1.3, 0, 0.6)])
def test_one_step_distribution(temperature, top_k, top_p):
  config = DecoderConfig(vocab_size=12, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                         num_kv_heads=1, head_dim=16)
  model = init_model(config, seed=1)
  prompt = [3, 1, 4]
  draws = 12000
  out = generate(model, [prompt], num_samples=draws, max_new_tokens=1, eos_ids=[0], rng=jax.random.key(7),
                 temperature=temperature, top_k=top_k, top_p=top_p)
  logits = np.asarray(forward(model, np.asarray([prompt], np.int32), np.ones((1, 3), np.int32)))[0, -1] / temperature
  expected = np.asarray(jax.nn.softmax(truncate_logits(logits, top_k=top_k, top_p=top_p)))
  counts = np.bincount(np.asarray(out.tokens)[:, 0], minlength=config.vocab_size)
  tv = 0.5 * np.abs(counts / draws - expected).sum()
  assert tv < 0.025, (tv, counts / draws, expected)
  if top_k or top_p < 1:
    assert counts[expected == 0].sum() == 0 and (expected == 0).any()


def test_truncation_sets():
  logits = np.log(np.array([0.5, 0.2, 0.15, 0.1, 0.05], np.float32))
  assert np.isfinite(truncate_logits(logits, top_k=2)).tolist() == [True, True, False, False, False]
  assert np.isfinite(truncate_logits(logits, top_p=0.6)).tolist() == [True, True, False, False, False]
  assert np.isfinite(truncate_logits(logits, top_p=0.5)).tolist() == [True, False, False, False, False]
  assert np.isfinite(truncate_logits(logits, top_p=0.86)).tolist() == [True, True, True, True, False]


def _sorted_nucleus(logits, top_p):
  """The nucleus by sorting: the prefix (descending) whose mass before each token is below top_p, plus ties."""
  sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
  probs = jax.nn.softmax(sorted_logits, axis=-1)
  kept = jnp.cumsum(probs, axis=-1) - probs < top_p
  return logits >= jnp.min(jnp.where(kept, sorted_logits, jnp.inf), axis=-1, keepdims=True)


def test_nucleus_without_sorting_equals_the_sorted_nucleus():
  ours = jax.jit(top_p_keep, static_argnames="top_p")
  sorted_nucleus = jax.jit(_sorted_nucleus, static_argnames="top_p")
  rng = np.random.default_rng(0)
  for trial in range(150):
    logits = rng.normal(size=(4, 300)) * rng.choice([0.1, 1.0, 5.0, 30.0])
    if trial % 3 == 0:
      logits = np.round(logits)  # ties, and -0.0 next to 0.0
    logits[:, int(rng.integers(2, 300)):] = -np.inf  # vocabularies of 2 to 300 tokens
    top_p = float(rng.choice([0.05, 0.3, 0.5, 0.9, 0.95, 0.999]))
    np.testing.assert_array_equal(ours(logits.astype(np.float32), top_p=top_p),
                                  sorted_nucleus(logits.astype(np.float32), top_p=top_p), err_msg=str(trial))


def test_no_retrace_within_bucket(hf_and_ours, monkeypatch):
  _, model, _ = hf_and_ours
  kw = dict(num_samples=2, max_new_tokens=5, eos_ids=[EOS])
  # generate() with its jitted stages re-wrapped so that a second trace raises.
  for name, jitted, jit_kwargs in (("prefill", prefill, PREFILL_JIT), ("decode", decode, DECODE_JIT)):
    monkeypatch.setattr(sampler, name, jax.jit(chex.assert_max_traces(jitted.__wrapped__, n=1), **jit_kwargs))
  generate(model, [[1, 2, 3], [4, 5]], rng=jax.random.key(0), **kw)
  generate(model, [[9, 8, 7, 6, 5], [4]], rng=jax.random.key(1), **kw)  # same bucket (8), new lengths and rng
  with pytest.raises(AssertionError, match="retrac|trace"):
    generate(model, [[1] * 9], rng=jax.random.key(2), **kw)  # bucket 16: a new trace, so chex fires


def test_batch_sharded_matches_unsharded(hf_and_ours):
  _, model, path = hf_and_ours
  prompts = [[i + 1, 2 * i + 3, 40 + i] for i in range(4)]
  kw = dict(num_samples=2, max_new_tokens=6, eos_ids=[EOS], rng=jax.random.key(3))
  mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
  sharded_model = load_pretrained(path, mesh=mesh)
  with jax.set_mesh(mesh):
    sharded = generate(sharded_model, prompts, batch_sharding=sharding.batch_sharding(mesh, 2), **kw)
  assert len(sharded.tokens.sharding.device_set) == 8
  plain = generate(model, prompts, **kw)
  np.testing.assert_array_equal(np.asarray(sharded.tokens), np.asarray(plain.tokens))
  np.testing.assert_allclose(np.asarray(sharded.logprobs), np.asarray(plain.logprobs), atol=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    (dict(prompt_ids=[[1, 2], []]), "prompt 1 is empty"),
    (dict(prompt_ids=[]), "prompt_ids is empty"),
    (dict(max_new_tokens=0), "max_new_tokens must be > 0"),
    (dict(max_new_tokens=300), "exceeds the model's context"),
    (dict(top_p=0.0), "top_p must be in"),
    (dict(top_p=1.5), "top_p must be in"),
    (dict(temperature=-0.5), "temperature must be >= 0"),
    (dict(num_samples=0), "num_samples must be >= 1"),
])
def test_bad_input(hf_and_ours, kwargs, message):
  _, model, _ = hf_and_ours
  args = dict(prompt_ids=[[1, 2, 3]], num_samples=2, max_new_tokens=4, eos_ids=[EOS], rng=jax.random.key(0))
  args.update(kwargs)
  with pytest.raises(ValueError, match=message):
    generate(model, **args)
