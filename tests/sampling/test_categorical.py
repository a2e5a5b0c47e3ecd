import jax
import jax.numpy as jnp
import numpy as np

from darling_jax.sampling.categorical import sample_categorical

_sample = jax.jit(sample_categorical)


def test_matches_softmax_and_skips_excluded_entries():
  logits = jnp.log(jnp.array([0.0, 0.3, 0.0, 0.6, 0.1], jnp.float32))  # entries 0 and 2 are -inf
  rows = 20000
  draws = np.asarray(_sample(jax.random.key(3), jnp.broadcast_to(logits, (rows, 5))))
  freq = np.bincount(draws, minlength=5) / rows
  assert freq[0] == 0 and freq[2] == 0
  assert 0.5 * np.abs(freq - np.array([0, 0.3, 0, 0.6, 0.1])).sum() < 0.02, freq


def test_point_mass_and_rows_independent():
  logits = jnp.array([[-jnp.inf, 2.0, -jnp.inf], [0.0, 0.0, 0.0]], jnp.float32)
  draws = np.stack([np.asarray(_sample(jax.random.key(i), logits)) for i in range(200)])
  assert (draws[:, 0] == 1).all()
  assert set(draws[:, 1].tolist()) == {0, 1, 2}
  assert draws.dtype == np.int32


def test_blocked_cumsum_matches_cumsum_for_any_vocabulary_size():
  from darling_jax.sampling.categorical import blocked_cumsum
  rng = np.random.default_rng(0)
  for vocab in (1, 2, 5, 64, 1000, 4096, 49153):
    x = rng.uniform(0, 1, (3, vocab)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(jax.jit(blocked_cumsum)(x)), np.cumsum(x.astype(np.float64), -1),
                               rtol=2e-6, atol=1e-6 * vocab, err_msg=f"vocab {vocab}")


def test_large_vocabulary_distribution_and_excluded_entries():
  vocab, rows = 5000, 40000
  probs = np.zeros(vocab)
  probs[[7, 4095, 4096, 4999]] = [0.1, 0.2, 0.3, 0.4]  # across block boundaries; every other entry excluded
  draws = np.asarray(_sample(jax.random.key(5), jnp.broadcast_to(jnp.log(jnp.asarray(probs, jnp.float32)),
                                                                  (rows, vocab))))
  freq = np.bincount(draws, minlength=vocab) / rows
  assert set(np.flatnonzero(freq).tolist()) <= {7, 4095, 4096, 4999}
  assert 0.5 * np.abs(freq - probs).sum() < 0.01, freq[[7, 4095, 4096, 4999]]
