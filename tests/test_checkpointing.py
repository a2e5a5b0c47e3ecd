"""Tests of `darling_jax.checkpointing`: round trip, keep-last-N, sharded restore, mismatch and path errors."""

import dataclasses
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from darling_jax import checkpointing, sharding
from darling_jax.checkpointing import Checkpointer, with_shardings
from darling_jax.grpo.update import UpdateConfig, init_train_state, make_optimizer, train_state_shardings
from darling_jax.models import DecoderConfig, init_model

MODEL_CONFIG = DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                             num_kv_heads=1, head_dim=16, max_position_embeddings=32)
OPTIMIZER = make_optimizer(UpdateConfig())
DATA_STATE = {"next_index": 12}
RUN_CONFIG = {"model": {"hidden_size": 32, "layers": [1, 2]}, "learning_rate": 1e-6, "name": "tiny", "tag": None}


def abstract_state(model_config=MODEL_CONFIG):
  """The `TrainState` of `init_model(model_config)` as `ShapeDtypeStruct`s (nothing is computed)."""
  return jax.eval_shape(lambda: init_train_state(init_model(model_config), OPTIMIZER, jax.random.key(0)))


def random_state(abstract, seed=0):
  """A `TrainState` shaped like `abstract` with random values in every leaf (drawn in numpy: no compiles)."""
  rng = np.random.default_rng(seed)

  def draw(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(np.asarray(rng.integers(0, 2**32, size=(2,)), np.uint32))
    if np.issubdtype(x.dtype, np.integer):
      return jnp.asarray(rng.integers(0, 1000, size=x.shape).astype(x.dtype))
    return jnp.asarray(rng.normal(size=x.shape).astype(x.dtype))

  return jax.tree.map(draw, abstract)


@pytest.fixture(scope="module")
def abstract():
  return abstract_state()


@pytest.fixture(scope="module")
def state(abstract):
  return random_state(abstract)


def assert_states_equal(restored, expected):
  """Bit-for-bit equality of every leaf (typed keys compared by their key data) and equal tree structures."""
  assert jax.tree.structure(restored) == jax.tree.structure(expected)
  assert restored.rng.dtype == expected.rng.dtype
  np.testing.assert_array_equal(jax.random.key_data(restored.rng), jax.random.key_data(expected.rng))
  for got, want in zip(jax.tree.leaves(restored.replace(rng=None)), jax.tree.leaves(expected.replace(rng=None)),
                       strict=True):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.fixture(scope="module")
def saved(tmp_path_factory, state):
  """A run directory with one checkpoint, step 5 of `state` with `DATA_STATE` and `RUN_CONFIG` (read-only)."""
  directory = tmp_path_factory.mktemp("saved") / "run"
  copy = jax.tree.map(jnp.copy, state)
  with Checkpointer(directory) as checkpointer:
    assert checkpointer.latest_step() is None
    assert checkpointer.save(5, copy, data_state=DATA_STATE, config=RUN_CONFIG)
    jax.tree.map(lambda x: x.delete(), copy)  # an async save holds its own host copy: the state may be donated
    checkpointer.wait()
    assert checkpointer.latest_step() == 5
  return directory


def test_round_trip_is_bit_exact(saved, abstract, state):
  with Checkpointer(saved) as checkpointer:  # a fresh process's view
    restored, data_state, config = checkpointer.restore(abstract)
  assert_states_equal(restored, state)
  assert isinstance(restored.params["embed_tokens"], nnx.Param)
  assert data_state == DATA_STATE and config == RUN_CONFIG


def test_optional_items_and_restore_errors(tmp_path, abstract, state):
  with Checkpointer(tmp_path, async_save=False) as checkpointer:
    with pytest.raises(FileNotFoundError, match=re.escape(f"no checkpoint in {tmp_path}")):
      checkpointer.restore(abstract)
    assert checkpointer.save(np.int64(0), state)  # numpy / JAX integer steps are fine
    restored, data_state, config = checkpointer.restore(abstract, step=jnp.int32(0))
    assert data_state is None and config is None
    assert_states_equal(restored, state)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint for step 3 .* saved steps: \[0\]"):
      checkpointer.restore(abstract, step=3)
    with pytest.raises(ValueError, match="config must be a JSON-able dict"):
      checkpointer.save(1, state, config={"dtype": jnp.float32})
    with pytest.raises(ValueError, match="step must be a non-negative int, got -1"):
      checkpointer.save(-1, state)


def test_keeps_last_n_and_saves_every_interval(tmp_path, state):
  with Checkpointer(tmp_path, max_to_keep=2, save_interval_steps=2) as checkpointer:
    assert [checkpointer.save(step, state) for step in range(5)] == [True, False, True, False, True]
    assert checkpointer.save(5, state, force=True)
    assert not checkpointer.save(5, state)  # not newer than the latest step
    checkpointer.wait()
    assert checkpointer.all_steps() == [4, 5] and checkpointer.latest_step() == 5
  assert sorted(p.name for p in tmp_path.iterdir()) == ["4", "5"]


def test_restores_into_target_shardings(saved, abstract, state):
  mesh = sharding.make_mesh(2, 2, 2)
  shardings = train_state_shardings(abstract, OPTIMIZER, mesh)
  target = with_shardings(abstract, shardings)
  with Checkpointer(saved) as checkpointer:  # saved from one device
    restored, _, _ = checkpointer.restore(target)
  assert_states_equal(restored, state)
  for leaf, expected in zip(jax.tree.leaves(restored), jax.tree.leaves(shardings), strict=True):
    assert leaf.sharding == expected
  embed = restored.params["embed_tokens"].get_value()
  assert embed.sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")  # ("vocab", "embed")
  assert len(embed.addressable_shards) == 8 and embed.addressable_shards[0].data.shape == (32, 16)


def test_unfinished_step_is_ignored(tmp_path, saved, abstract, state):
  directory = tmp_path / "run"
  shutil.copytree(saved, directory)
  # A process killed while writing step 6 leaves orbax's temporary directory, never renamed to "6" (here a
  # complete copy of step 5, the worst case).
  shutil.copytree(directory / "5", directory / "6.orbax-checkpoint-tmp")
  with Checkpointer(directory) as checkpointer:
    assert checkpointer.latest_step() == 5 and checkpointer.all_steps() == [5]
    assert checkpointer.save(6, state, data_state={"next_index": 6})  # first removes the leftover
    checkpointer.wait()
    assert sorted(p.name for p in directory.iterdir()) == ["5", "6"]
    assert checkpointer.latest_step() == 6
    assert checkpointer.restore(abstract)[1] == {"next_index": 6}


@pytest.mark.parametrize("model_change,message", [
    ({"intermediate_size": 128}, "params/layers/0/mlp/down_proj/kernel: stored (64, 32), config expects (128, 32)"),
    ({"num_layers": 2}, "params/layers/1/input_layernorm/weight: missing from the checkpoint"),
    ({"param_dtype": jnp.bfloat16}, "params/embed_tokens: stored dtype float32, config expects bfloat16"),
])
def test_mismatched_config_names_the_first_bad_path(saved, model_change, message):
  other = abstract_state(dataclasses.replace(MODEL_CONFIG, **model_change))
  with Checkpointer(saved) as checkpointer:
    with pytest.raises(ValueError) as error:
      checkpointer.restore(other)
  assert str(error.value).startswith(f"checkpoint at {saved} step 5 does not match the config: {message}")


def test_rng_kind_mismatch(saved, abstract):
  with Checkpointer(saved) as checkpointer:
    raw = abstract.replace(rng=jax.ShapeDtypeStruct((2,), jnp.uint32))
    with pytest.raises(ValueError, match="rng: stored a typed threefry2x32 key, config expects raw key data"):
      checkpointer.restore(raw)
    rbg = abstract.replace(rng=jax.eval_shape(lambda: jax.random.key(0, impl="rbg")))
    with pytest.raises(ValueError, match=r"rng: stored a threefry2x32 key \(key<fry>\), config expects key<rbg>"):
      checkpointer.restore(rbg)


def test_unusable_directory_errors_name_the_path(tmp_path, monkeypatch):
  file = tmp_path / "file"
  file.write_text("not a directory")
  with pytest.raises(ValueError, match=re.escape(f"checkpoint directory {file} exists and is not a directory")):
    Checkpointer(file)
  with pytest.raises(ValueError, match=re.escape(f"cannot create checkpoint directory {file / 'run'}")):
    Checkpointer(file / "run")

  def refuse(*args, **kwargs):
    raise PermissionError(13, "Permission denied")

  monkeypatch.setattr(checkpointing.tempfile, "NamedTemporaryFile", refuse)  # root may write anywhere
  message = f"checkpoint directory {tmp_path} is not writable: Permission denied"
  with pytest.raises(PermissionError, match=re.escape(message)):
    Checkpointer(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_read_only_directory(tmp_path):
  os.chmod(tmp_path, 0o500)
  try:
    with pytest.raises(PermissionError, match=re.escape(f"checkpoint directory {tmp_path} is not writable")):
      Checkpointer(tmp_path)
  finally:
    os.chmod(tmp_path, 0o700)
