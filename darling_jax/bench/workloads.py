"""Workloads shared by the benchmarks (no flags here: absl flags are process-global, and each benchmark defines
its own): the GRPO update's synthetic rollout batch and its model-FLOP count."""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from darling_jax.grpo.batch import RolloutBatch
from darling_jax.models import DecoderConfig


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


def check_choices(flag: str, values, known) -> None:
  """Raises `absl.app.UsageError` naming `--flag` and the first of `values` not in `known`."""
  from absl import app
  for value in values:
    if value not in known:
      raise app.UsageError(f"--{flag}: unknown {value!r}; known: {sorted(known)}")
