"""The frozen reference policy of the KL term: its log-probs of each rollout batch, sharded like the policy.

With `grpo.kl_coef > 0` the loss adds `kl_coef ×` the k3 KL between the policy and a frozen reference (the
policy RL starts from), token-mean aggregated (arXiv 2509.02534 App. 9, Table 6: 0.001 `low_var_kl` for the
WildChat runs; verl's `use_kl_loss`). The reference's parameters are a separate copy in the policy's parameter
shardings; its log-probs are computed once per rollout batch, before the update, and enter the batch as
`RolloutBatch.ref_logp`.

    reference_logprobs = make_reference_logprobs(graphdef, reference_params, mesh, temperature=1.0)
    ref_logp = reference_logprobs(rows.input_ids, rows.attention_mask, rows.num_response_tokens)   # f32 [R, N]
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
from flax import nnx
from jax.sharding import Mesh

from darling_jax import sharding
from darling_jax.grpo.update import response_logprobs


def make_reference_logprobs(graphdef: nnx.GraphDef, params: nnx.State, mesh: Mesh, *, temperature: float,
                            chunk_size: int | None = None, microbatch_size: int | None = None
                            ) -> Callable[[jax.Array, jax.Array, int], jax.Array]:
  """`fn(input_ids, attention_mask) -> ref_logp`: the frozen `params`' log-probs of the response tokens.

  Args:
    graphdef: the policy's graph definition.
    params: the reference's `nnx.Param` state (already in the policy's parameter shardings; not donated, never
      changed).
    mesh: the run's mesh; rows are sharded over its `data` × `fsdp` axes, as the update's.
    temperature: the rollout temperature (log-probs of `softmax(logits / temperature)`, as the policy's).
    chunk_size: response positions per LM-head chunk (`response_logprobs`; None: all at once).
    microbatch_size: rows per forward, one after another under `lax.map` (None: all rows at once), as the
      update's microbatches (`UpdateConfig.microbatch_size`): the reference's activations, the `[rows, heads, T,
      T]` attention scores among them, are then those of one microbatch. Must divide the rows.

  Returns:
    `fn(input_ids int32 [R, P+N], attention_mask int32 [R, P+N], num_response_tokens N) -> f32 [R, N]`, jitted
    once per shape (`fn.jitted(N)` is the jitted function for N).
  """
  rows = sharding.batch_sharding(mesh, 2)
  param_shardings = jax.tree.map(lambda x: x.sharding, params)

  @functools.lru_cache(maxsize=8)
  def jitted(num_response_tokens: int):
    def forward(params, input_ids, attention_mask):
      # Fresh Variables for this trace: lax.map's body may not touch the Variables of the enclosing jit's trace
      # (nnx.remat in the layers would), so the state is rebuilt (same arrays) before merging.
      model = nnx.merge(graphdef, jax.tree.map(lambda x: x, params))
      return response_logprobs(model, *sharding.constrain_rows((input_ids, attention_mask)), num_response_tokens, temperature,
                               chunk_size=chunk_size)

    def reference_forward(params, input_ids, attention_mask):
      num_rows = input_ids.shape[0]
      if microbatch_size is None or microbatch_size >= num_rows:
        return forward(params, input_ids, attention_mask)
      if num_rows % microbatch_size:
        raise ValueError(f"microbatch_size={microbatch_size} does not divide the rollout batch's {num_rows} rows")
      parts = sharding.split_rows((input_ids, attention_mask), num_rows // microbatch_size)
      return jax.lax.map(lambda part: forward(params, *part), parts).reshape(num_rows, num_response_tokens)

    return jax.jit(reference_forward, in_shardings=(param_shardings, rows, rows), out_shardings=rows)

  def reference_logprobs(input_ids: jax.Array, attention_mask: jax.Array, num_response_tokens: int) -> jax.Array:
    input_ids, attention_mask = jax.device_put((input_ids, attention_mask), rows)
    with jax.set_mesh(mesh):
      return jitted(int(num_response_tokens))(params, input_ids, attention_mask)

  reference_logprobs.jitted = jitted
  return reference_logprobs
