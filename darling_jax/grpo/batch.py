"""The update's input: a rollout batch of `R = B*G` rows built from the sampler's output, and its sharding.

    batch = rollout_batch(sample_output, advantages)                 # one process, the whole batch
    batch = global_rollout_batch(local_rows, mesh)                   # multi-controller: this process's rows
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from darling_jax import sharding
from darling_jax.sampling.sampler import SampleOutput


@flax.struct.dataclass
class RolloutBatch:
  """One rollout batch of `R = B*G` rows (row `i*G + j` is prompt i's sample j), as the update consumes it.

  Attributes:
    input_ids: int32 `[R, P+N]` prompt (left-padded to P) followed by the N response slots.
    attention_mask: int32 `[R, P+N]` 1 on real prompt tokens and on response tokens up to the first EOS.
    response_mask: int32 `[R, N]` 1 on the response tokens that enter the loss (up to and including EOS).
    old_logp: f32 `[R, N]` log-probs of the response tokens under the sampling policy (fixed at rollout).
    advantages: f32 `[R]` one advantage per row (broadcast over its tokens).
    ref_logp: f32 `[R, N]` reference-policy log-probs, or None (no KL term, no reference forward).
  """

  input_ids: jax.Array
  attention_mask: jax.Array
  response_mask: jax.Array
  old_logp: jax.Array
  advantages: jax.Array
  ref_logp: jax.Array | None = None

  @property
  def num_response_tokens(self) -> int:
    return self.response_mask.shape[1]


def rollout_batch(sample: SampleOutput, advantages: jax.Array, *, ref_logp: jax.Array | None = None
                  ) -> RolloutBatch:
  """The update's `RolloutBatch` from the sampler's output.

  Each prompt row is repeated for its G samples. Response tokens after a row's first EOS (pad) are masked
  out of both the loss and the attention. They come after every valid token, so under causal attention this
  changes nothing for valid tokens: the RoPE positions of the valid tokens (`cumsum(mask) - 1`) are those the
  sampler used, and `response_logprobs` of an unchanged policy reproduces `sample.logprobs`.

  Args:
    sample: `SampleOutput` with tokens/mask/logprobs `[B*G, N]` and prompt_tokens/prompt_mask `[B, P]`.
    advantages: f32 `[B, G]` or `[B*G]` per-sample advantages.
    ref_logp: optional f32 `[B*G, N]` reference-policy log-probs (`response_logprobs` of the reference model).

  Returns:
    `RolloutBatch` with `R = B*G` rows.
  """
  rows, num_response_tokens = sample.tokens.shape
  advantages = jnp.asarray(advantages, jnp.float32)
  if advantages.size != rows:
    raise ValueError(f"advantages must have B*G={rows} entries ([B, G] or [B*G]), got shape {advantages.shape}")
  if ref_logp is not None and tuple(ref_logp.shape) != (rows, num_response_tokens):
    raise ValueError(f"ref_logp must have shape {(rows, num_response_tokens)}, got {tuple(ref_logp.shape)}")
  group_size = sample.num_samples
  prompt_tokens = jnp.repeat(sample.prompt_tokens, group_size, axis=0)
  prompt_mask = jnp.repeat(sample.prompt_mask, group_size, axis=0)
  response_mask = sample.mask.astype(jnp.int32)
  return RolloutBatch(
      input_ids=jnp.concatenate([prompt_tokens, sample.tokens], axis=1).astype(jnp.int32),
      attention_mask=jnp.concatenate([prompt_mask, response_mask], axis=1).astype(jnp.int32),
      response_mask=response_mask,
      old_logp=sample.logprobs.astype(jnp.float32),
      advantages=advantages.reshape(rows),
      ref_logp=None if ref_logp is None else jnp.asarray(ref_logp, jnp.float32),
  )


def rollout_batch_shardings(mesh: Mesh, *, with_ref_logp: bool = False) -> RolloutBatch:
  """A `RolloutBatch` of shardings: every field's rows over `data` × `fsdp` (`sharding.batch_sharding`)."""
  rows_2d, rows_1d = sharding.batch_sharding(mesh, 2), sharding.batch_sharding(mesh, 1)
  return RolloutBatch(input_ids=rows_2d, attention_mask=rows_2d, response_mask=rows_2d, old_logp=rows_2d,
                      advantages=rows_1d, ref_logp=rows_2d if with_ref_logp else None)


def global_rollout_batch(local_rows: RolloutBatch, mesh: Mesh) -> RolloutBatch:
  """The global, `data` × `fsdp`-sharded `RolloutBatch` from this process's rows (multi-controller JAX).

  Every process passes the rows its devices hold under `rollout_batch_shardings` (host arrays, ascending: what
  `sharding.process_rows` reads; with the usual meshes, one consecutive block per process, in process order); the
  global batch is their concatenation. With one process, `local_rows` is the whole batch.
  """
  shardings = rollout_batch_shardings(mesh, with_ref_logp=local_rows.ref_logp is not None)
  return jax.tree.map(lambda s, x: jax.make_array_from_process_local_data(s, np.asarray(x)), shardings,
                      local_rows)
