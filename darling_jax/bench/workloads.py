"""Workloads shared by the benchmarks (no flags here: absl flags are process-global, and each benchmark defines
its own): the GRPO update's synthetic rollout batch, its compiled executable, its model-FLOP count and XLA's memory
figures."""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from darling_jax.grpo.batch import RolloutBatch
from darling_jax.grpo.update import TrainState, UpdateConfig, grpo_update, init_train_state, make_optimizer
from darling_jax.models import DecoderConfig, init_model

MIB = 2**20


@dataclasses.dataclass(frozen=True)
class UpdateBatch:
  rows: int
  prompt_len: int
  response_len: int


def update_flops(c: DecoderConfig, rows: int, prompt_len: int, response_len: int) -> tuple[float, float]:
  """`(model FLOPs, recomputed-forward FLOPs under remat)` of one update on `rows` × (prompt + response)."""
  t = prompt_len + response_len
  trunk = c.num_layers * (c.hidden_size * c.head_dim * (2 * c.num_heads + 2 * c.num_kv_heads)
                          + 3 * c.hidden_size * c.intermediate_size)
  attention_fwd = 4 * c.num_layers * c.num_heads * c.head_dim * rows * t * t
  model = 6 * trunk * rows * t + 6 * c.vocab_size * c.hidden_size * rows * response_len + 3 * attention_fwd
  return float(model), float(2 * trunk * rows * t + attention_fwd)


def synthetic_batch(vocab: int, batch: UpdateBatch, seed: int = 0) -> RolloutBatch:
  """A `RolloutBatch` of random tokens, all-ones masks, N(0, 1) advantages and old log-probs near -log V."""
  rng = np.random.default_rng(seed)
  r, t, n = batch.rows, batch.prompt_len + batch.response_len, batch.response_len
  return RolloutBatch(
      input_ids=jnp.asarray(rng.integers(1, vocab, (r, t)), jnp.int32),
      attention_mask=jnp.ones((r, t), jnp.int32),
      response_mask=jnp.ones((r, n), jnp.int32),
      old_logp=jnp.asarray(-math.log(vocab) + 0.1 * rng.standard_normal((r, n)), jnp.float32),
      advantages=jnp.asarray(rng.standard_normal(r), jnp.float32),
  )


def compile_update(config: DecoderConfig, batch_shape: UpdateBatch, update_config: UpdateConfig
                   ) -> tuple[jax.stages.Compiled, TrainState, RolloutBatch, float]:
  """`(compiled grpo_update, its fresh TrainState, a synthetic batch, compile seconds)` for a randomly initialised
  policy of `config`. The compiled update donates the state: thread it from call to call."""
  model = init_model(config, seed=0)
  graphdef = nnx.graphdef(model)
  state = init_train_state(model, make_optimizer(update_config), jax.random.key(0))
  del model  # its buffers are the state's, donated by the first call
  batch = synthetic_batch(config.vocab_size, batch_shape)
  start = time.perf_counter()
  compiled = grpo_update.lower(graphdef, state, batch, config=update_config).compile()
  return compiled, state, batch, time.perf_counter() - start


def xla_memory_mib(compiled: jax.stages.Compiled) -> dict[str, float]:
  """XLA's static memory figures of `compiled` in MiB (empty where the backend has none): arguments, outputs,
  donated aliases, temporaries, the peak (arguments + outputs − aliases + temporaries) and the same without the
  donation."""
  stats = compiled.memory_analysis()
  if stats is None:
    return {}
  arg, out = stats.argument_size_in_bytes, stats.output_size_in_bytes
  alias, temp = stats.alias_size_in_bytes, stats.temp_size_in_bytes
  return dict(mem_argument_mib=round(arg / MIB, 1), mem_output_mib=round(out / MIB, 1),
              mem_alias_mib=round(alias / MIB, 1), mem_temp_mib=round(temp / MIB, 1),
              mem_peak_mib=round((arg + out - alias + temp) / MIB, 1),
              mem_arg_out_temp_mib=round((arg + out + temp) / MIB, 1))


def check_choices(flag: str, values, known) -> None:
  """Raises `absl.app.UsageError` naming `--flag` and the first of `values` not in `known`."""
  from absl import app
  for value in values:
    if value not in known:
      raise app.UsageError(f"--{flag}: unknown {value!r}; known: {sorted(known)}")
