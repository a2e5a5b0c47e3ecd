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
