"""Logits parity with transformers for the Llama / Qwen2 / Qwen3 family, and the KV-cache path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from darling_jax import sharding
from darling_jax.models import KVCache, load_pretrained
from tests.models.hf_fixtures import forward, hf_logits, left_padded_batch, make_hf_model, max_diff_on_valid

LLAMA3_ROPE = dict(rope_type="llama3", rope_theta=50000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=16)

CASES = {
    "llama_tied_gqa": ("llama", dict(tie_word_embeddings=True)),
    "llama_untied_mha_default_head_dim": ("llama", dict(num_key_value_heads=4, head_dim=None)),
    "llama3_rope_scaling": ("llama", dict(rope_parameters=LLAMA3_ROPE)),
    "llama_attention_bias": ("llama", dict(attention_bias=True)),
    "qwen2_qkv_bias": ("qwen2", dict(tie_word_embeddings=False)),
    "qwen2_tied": ("qwen2", dict(tie_word_embeddings=True)),
    "qwen3_qk_norm": ("qwen3", dict(tie_word_embeddings=False)),
    "qwen3_tied_gqa4": ("qwen3", dict(tie_word_embeddings=True, num_attention_heads=8, num_key_value_heads=2,
                                     head_dim=16)),
}
LENGTHS = [13, 5, 9, 1]  # ragged prompts, left-padded to 13


def _checkpoint(tmp_path, case):
  model_type, overrides = CASES[case]
  hf = make_hf_model(model_type, **overrides)
  hf.save_pretrained(tmp_path)
  return hf


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers(tmp_path, case):
  hf = _checkpoint(tmp_path, case)
  ours = load_pretrained(tmp_path)
  ids, mask = left_padded_batch(hf.config.vocab_size, LENGTHS, seed=1)
  expected = hf_logits(hf, ids, mask)
  got = np.asarray(forward(ours, ids, mask))
  assert got.dtype == np.float32 and got.shape == expected.shape
  assert np.abs(expected).max() > 1.0  # the reference is not trivially small
  assert max_diff_on_valid(got, expected, mask) <= 1e-4


def test_head_dim_independent_of_hidden(tmp_path):
  hf = _checkpoint(tmp_path, "llama_tied_gqa")
  assert hf.config.head_dim * hf.config.num_attention_heads != hf.config.hidden_size
  assert load_pretrained(tmp_path).config.head_dim == hf.config.head_dim


def test_cached_decoding_matches_full_forward(tmp_path):
  hf = _checkpoint(tmp_path, "qwen3_qk_norm")
  model = load_pretrained(tmp_path)
  ids, mask = left_padded_batch(hf.config.vocab_size, [7, 4, 6], seed=2)
  extra = np.random.default_rng(3).integers(1, hf.config.vocab_size, (3, 5)).astype(np.int32)
  full_ids = np.concatenate([ids, extra], axis=1)
  full_mask = np.concatenate([mask, np.ones_like(extra)], axis=1)
  full = np.asarray(forward(model, full_ids, full_mask))

  step = jax.jit(lambda m, i, c, a: m.forward_with_cache(i, c, a))
  cache = KVCache.init(model.config, batch_size=3, max_length=16)
  logits, cache = step(model, ids, cache, mask)
  steps = [logits[:, -1]]
  for t in range(extra.shape[1]):
    logits, cache = step(model, extra[:, t:t + 1], cache, np.ones((3, 1), np.int32))
    steps.append(logits[:, -1])
  cached = np.stack([np.asarray(s) for s in steps], axis=1)
  np.testing.assert_allclose(cached, full[:, ids.shape[1] - 1:], atol=1e-4)
  assert int(cache.end_index) == full_ids.shape[1]


@pytest.mark.parametrize("case", ["qwen3_tied_gqa4", "qwen2_qkv_bias"])
def test_decoding_against_a_shared_prefix_matches_full_forward(tmp_path, case):
  """Each of 3 prompts cached once; its 2 continuations decode with it as `prefix` (their own cache separate)."""
  hf = _checkpoint(tmp_path, case)
  model = load_pretrained(tmp_path)
  ids, mask = left_padded_batch(hf.config.vocab_size, [7, 3, 6], seed=5)
  extra = np.random.default_rng(6).integers(1, hf.config.vocab_size, (6, 4)).astype(np.int32)
  full_ids = np.concatenate([np.repeat(ids, 2, axis=0), extra], axis=1)
  full_mask = np.concatenate([np.repeat(mask, 2, axis=0), np.ones_like(extra)], axis=1)
  full = np.asarray(forward(model, full_ids, full_mask))

  step = jax.jit(lambda m, i, c, p: m.forward_with_cache(i, c, prefix=p))
  _, prompt_cache = jax.jit(lambda m, i, c, a: m.forward_with_cache(i, c, a))(
      model, ids, KVCache.init(model.config, batch_size=3, max_length=ids.shape[1]), mask)
  cache = KVCache.init(model.config, batch_size=6, max_length=extra.shape[1])
  steps = []
  for t in range(extra.shape[1]):
    logits, cache = step(model, extra[:, t:t + 1], cache, prompt_cache)
    steps.append(logits[:, -1])
  cached = np.stack([np.asarray(s) for s in steps], axis=1)
  np.testing.assert_allclose(cached, full[:, ids.shape[1]:], atol=1e-4)
  with pytest.raises(ValueError, match="5 rows cannot continue a prefix of 3 rows"):
    model.forward_with_cache(extra[:5, :1], KVCache.init(model.config, 5, 2), prefix=prompt_cache)


@pytest.mark.parametrize("mesh_shape", [(2, 2, 2), (1, 2, 4)])
def test_sharded_load_matches_single_device(tmp_path, mesh_shape):
  _checkpoint(tmp_path, "qwen2_qkv_bias")
  mesh = sharding.make_mesh(*mesh_shape)
  sharded = load_pretrained(tmp_path, mesh=mesh)
  single = load_pretrained(tmp_path)
  embed = sharded.embed_tokens[...]
  assert embed.sharding.mesh.shape == dict(zip(sharding.MESH_AXES, mesh_shape))
  assert not embed.sharding.is_fully_replicated
  ids, mask = left_padded_batch(single.config.vocab_size, [8, 8, 3, 6, 8, 2, 5, 8], seed=4)
  with jax.set_mesh(mesh):
    ids_sharded = jax.device_put(ids, sharding.batch_sharding(mesh, 2))
    got = forward(sharded, ids_sharded, jnp.asarray(mask))
  expected = forward(single, ids, mask)
  np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)


def test_bf16_checkpoint_loads(tmp_path):
  import torch
  hf = make_hf_model("llama").to(torch.bfloat16)
  hf.save_pretrained(tmp_path)
  model = load_pretrained(tmp_path, dtype=jnp.bfloat16)
  assert model.embed_tokens[...].dtype == jnp.bfloat16
  ids, mask = left_padded_batch(hf.config.vocab_size, [6, 3], seed=5)
  expected = hf_logits(hf.float(), ids, mask)
  got = np.asarray(forward(model, ids, mask))
  assert got.dtype == np.float32
  assert max_diff_on_valid(got, expected, mask) < 0.5  # bf16 compute; exact weights, loose logits


def test_sharded_safetensors_index(tmp_path):
  hf = make_hf_model("qwen3", tie_word_embeddings=False)
  hf.save_pretrained(tmp_path, max_shard_size="100KB")
  assert (tmp_path / "model.safetensors.index.json").exists()
  assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
  ids, mask = left_padded_batch(hf.config.vocab_size, [4, 6], seed=6)
  got = np.asarray(forward(load_pretrained(tmp_path), ids, mask))
  assert max_diff_on_valid(got, hf_logits(hf, ids, mask), mask) <= 1e-4


def test_remat_gives_same_loss_and_grads(tmp_path):
  from flax import nnx
  _checkpoint(tmp_path, "llama_tied_gqa")
  ids, mask = left_padded_batch(320, [6, 4], seed=7)

  def loss_and_grads(remat):
    model = load_pretrained(tmp_path, remat=remat)
    graphdef, params = nnx.split(model)

    def loss(p):
      return jnp.mean(jax.nn.logsumexp(nnx.merge(graphdef, p)(ids, mask), axis=-1))
    return jax.jit(jax.value_and_grad(loss))(params)

  (plain, plain_grads), (remat, remat_grads) = loss_and_grads(False), loss_and_grads(True)
  np.testing.assert_allclose(remat, plain, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), remat_grads, plain_grads)
