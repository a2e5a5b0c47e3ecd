"""A run's jitted stages, lowered over abstract arrays on a mesh and compiled: XLA's memory and cost per device.

Each `plan_*` function builds the stage's inputs as `jax.ShapeDtypeStruct`s carrying the shardings the trainer
gives them (`darling_jax.train`), lowers the very function the trainer calls (the sampler's `prefill` / `decode`,
`make_update_fn`'s jitted update, `make_reference_logprobs`, the reward model's `reward_scores`, the cross-encoder's
`similar_probability`), compiles it for the mesh's devices and returns a `StagePlan`. Nothing is allocated: a
4B-parameter step can be planned for a TPU pod from a laptop.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from darling_jax import sharding
from darling_jax.grpo import RolloutBatch, UpdateConfig
from darling_jax.grpo.batch import rollout_batch_shardings
from darling_jax.grpo.reference import make_reference_logprobs
from darling_jax.grpo.update import TrainState, init_train_state, make_optimizer, make_update_fn, train_state_shardings
from darling_jax.models import DecoderConfig, init_model
from darling_jax.sampling.sampler import decode, prefill


@dataclasses.dataclass
class StagePlan:
  """One compiled stage, per device (bytes), as XLA's `memory_analysis()` / `cost_analysis()` report it.

  `peak` = arguments + outputs − donated aliases + temporaries. `resident_arguments`: the part of the arguments
  that lives for the whole run (weights, optimizer state), counted once in the plan's resident total.
  `xla_flops`: XLA's count for one call on one device (a loop body, e.g. the decode loop's, counted once).
  """

  name: str
  calls_per_step: int
  arguments: int
  outputs: int
  aliased: int
  temporaries: int
  resident_arguments: int
  xla_flops: float | None
  notes: str = ""
  error: str | None = None

  @property
  def peak(self) -> int:
    return self.arguments + self.outputs - self.aliased + self.temporaries

  @property
  def transient(self) -> int:
    """Bytes this stage needs beyond the run's resident arrays."""
    return self.peak - self.resident_arguments


def per_device_bytes(tree) -> int:
  """Bytes one device holds of a pytree of sharded `ShapeDtypeStruct`s (the largest shard of each leaf)."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
    total += math.prod(shape) * jnp.dtype(leaf.dtype).itemsize
  return total


def with_shardings(tree, shardings):
  """`ShapeDtypeStruct`s of `tree`'s leaves carrying the matching `shardings` (a prefix tree: one sharding per
  `nnx.Variable`, as `sharding.state_shardings` gives; Variables stay Variables)."""

  def attach(x, s):
    s = s.get_value() if isinstance(s, nnx.Variable) else s
    if isinstance(x, nnx.Variable):
      value = x.get_value()
      return x.replace(jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=s))
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)

  return jax.tree.map(attach, tree, shardings, is_leaf=lambda x: isinstance(x, nnx.Variable))


def _flops(compiled) -> float | None:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost["flops"]) if cost and "flops" in cost else None


_SIZE = re.compile(r"([0-9.]+)\s*([KMGT]?)i?B?\b")
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def required_bytes(message: str) -> int | None:
  """The memory XLA said it needed in a RESOURCE_EXHAUSTED message ("... required for HLO temporaries (2.40T)
  exceeds available HBM (95.74G)": the first size), or None."""
  match = _SIZE.search(message[message.find("("):] if "(" in message else message)
  return int(float(match.group(1)) * _UNITS[match.group(2)]) if match else None


def compile_stage(name: str, lowered, *, calls_per_step: int, resident_arguments: int, notes: str = ""
                  ) -> StagePlan:
  """Compiles `lowered`; a compile that XLA refuses for lack of device memory becomes a `StagePlan` with
  `error` set (and, where XLA names it, the memory it needed as temporaries)."""
  try:
    compiled = lowered.compile()
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    message = str(e).split("RESOURCE_EXHAUSTED:", 1)[-1].strip().splitlines()[0]
    return StagePlan(name=name, calls_per_step=calls_per_step, arguments=0, outputs=0, aliased=0,
                     temporaries=required_bytes(message) or 0, resident_arguments=0, xla_flops=None,
                     notes=notes, error=message)
  memory = compiled.memory_analysis()
  return StagePlan(name=name, calls_per_step=calls_per_step, arguments=memory.argument_size_in_bytes,
                   outputs=memory.output_size_in_bytes, aliased=memory.alias_size_in_bytes,
                   temporaries=memory.temp_size_in_bytes, resident_arguments=resident_arguments,
                   xla_flops=_flops(compiled), notes=notes)


@dataclasses.dataclass
class PolicyArrays:
  """The policy's abstract train state on the mesh, as `darling_jax.train` builds it."""

  graphdef: nnx.GraphDef
  state: TrainState  # ShapeDtypeStructs with shardings
  state_sharding: TrainState

  @property
  def params_bytes(self) -> int:
    return per_device_bytes(self.state.params)

  @property
  def optimizer_bytes(self) -> int:
    return per_device_bytes(self.state.opt_state)


def policy_arrays(config: DecoderConfig, update: UpdateConfig, mesh: Mesh) -> PolicyArrays:
  optimizer = make_optimizer(update)
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: init_model(config)))
  abstract = jax.eval_shape(lambda: init_train_state(init_model(config), optimizer, jax.random.key(0)))
  state_sharding = train_state_shardings(abstract, optimizer, mesh)
  return PolicyArrays(graphdef, with_shardings(abstract, state_sharding), state_sharding)


def _rows_sharding(mesh: Mesh, rows: int, ndim: int) -> NamedSharding:
  """The trainer's row sharding: over `data` × `fsdp` when the rows divide evenly, else replicated."""
  data_size = sharding.data_parallel_size(mesh)
  if rows % data_size == 0 and data_size > 1:
    return sharding.batch_sharding(mesh, ndim)
  return NamedSharding(mesh, P())


def row_sharded(structs, mesh: Mesh):
  """`ShapeDtypeStruct`s of `structs` with the sampler's placement: leading (row) dimension over `data` × `fsdp`
  where it divides evenly, everything else replicated."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=_rows_sharding(
      mesh, x.shape[0], x.ndim) if x.ndim else NamedSharding(mesh, P())), structs)


def plan_sample(policy: PolicyArrays, mesh: Mesh, *, prompts: int, prompt_width: int, group_size: int,
                max_new_tokens: int, temperature: float, top_p: float, calls_per_step: int = 1
                ) -> tuple[StagePlan, StagePlan, int]:
  """`(prefill, decode, KV-cache bytes per device)` of one sampler call: `prompts` prompts of `prompt_width`
  tokens, `group_size` samples each, `max_new_tokens` decoded (the sampler the trainer calls, `generate`),
  `calls_per_step` times a step (`rl.prompts_per_sample_call`)."""
  params = policy.state.params
  rows = _rows_sharding(mesh, prompts, 2)
  tokens = jax.ShapeDtypeStruct((prompts, prompt_width), jnp.int32, sharding=rows)
  kwargs = dict(num_samples=group_size, max_new_tokens=max_new_tokens)
  if rows.spec:  # the trainer passes the prompts' sharding when they are split over devices
    kwargs["rows_sharding"] = sharding.batch_sharding(mesh, 2)
  prefill_lowered = prefill.lower(policy.graphdef, params, tokens, tokens, **kwargs)
  prompt_cache, cache, logits = row_sharded(prefill_lowered.out_info, mesh)
  cache_bytes = per_device_bytes(prompt_cache) + per_device_bytes(cache)
  key = jax.ShapeDtypeStruct((), jax.eval_shape(lambda: jax.random.key(0)).dtype, sharding=NamedSharding(mesh, P()))
  decode_lowered = decode.lower(policy.graphdef, params, prompt_cache, cache, logits, key,
                                max_new_tokens=max_new_tokens, temperature=float(temperature), top_p=float(top_p),
                                top_k=0, eos_ids=(0,), pad_id=0)
  resident = policy.params_bytes
  return (compile_stage("sample: prefill", prefill_lowered, calls_per_step=calls_per_step,
                        resident_arguments=resident),
          compile_stage("sample: decode", decode_lowered, calls_per_step=calls_per_step, resident_arguments=resident,
                        notes=f"{max_new_tokens} steps in one while loop"),
          cache_bytes)


def rollout_structs(mesh: Mesh, rows: int, prompt_width: int, response_width: int, *, with_ref_logp: bool
                    ) -> RolloutBatch:
  shardings = rollout_batch_shardings(mesh, with_ref_logp=with_ref_logp)
  ids = jax.ShapeDtypeStruct((rows, prompt_width + response_width), jnp.int32)
  per_token = jax.ShapeDtypeStruct((rows, response_width), jnp.float32)
  batch = RolloutBatch(input_ids=ids, attention_mask=ids, response_mask=per_token.update(dtype=jnp.int32),
                       old_logp=per_token, advantages=jax.ShapeDtypeStruct((rows,), jnp.float32),
                       ref_logp=per_token if with_ref_logp else None)
  return with_shardings(batch, shardings)


def plan_update(policy: PolicyArrays, update: UpdateConfig, mesh: Mesh, batch: RolloutBatch) -> StagePlan:
  """The GRPO update on one rollout batch (the trainer's `make_update_fn`, state donated)."""
  update_fn = make_update_fn(policy.graphdef, policy.state_sharding,
                             rollout_batch_shardings(mesh, with_ref_logp=batch.ref_logp is not None), update)
  with jax.set_mesh(mesh):
    lowered = update_fn.jitted.lower(policy.state, batch)
  rows = batch.input_ids.shape[0]
  _, microbatches = update.minibatch_layout(rows)
  return compile_stage("update", lowered, calls_per_step=1,
                    resident_arguments=policy.params_bytes + policy.optimizer_bytes,
                    notes=f"{update.num_minibatches} optimizer steps, {microbatches} microbatches each")


def plan_reference(policy: PolicyArrays, mesh: Mesh, batch: RolloutBatch, *, temperature: float,
                   chunk_size: int | None, microbatch_size: int | None) -> StagePlan:
  """The frozen reference policy's log-probs of the rollouts (KL term; a second copy of the weights)."""
  reference = make_reference_logprobs(policy.graphdef, policy.state.params, mesh, temperature=temperature,
                                      chunk_size=chunk_size, microbatch_size=microbatch_size)
  with jax.set_mesh(mesh):
    lowered = reference.jitted(batch.num_response_tokens).lower(policy.state.params, batch.input_ids,
                                                                batch.attention_mask)
  return compile_stage("reference log-probs", lowered, calls_per_step=1, resident_arguments=policy.params_bytes)


def classifier_arrays(hf_config: dict[str, Any], mesh: Mesh | None, device: jax.Device | None, dtype=jnp.float32):
  """`(graphdef, abstract state with shardings, config)` of a `*ForSequenceClassification` checkpoint, placed as
  `load_pretrained` places it: sharded by its annotations over `mesh`, or whole on `device`."""
  from darling_jax.classifiers import _ARCHITECTURES
  model_type = hf_config.get("model_type")
  if model_type not in _ARCHITECTURES:
    raise ValueError(f"classifier model_type {model_type!r} is not supported; expected one of {sorted(_ARCHITECTURES)}")
  config_cls, model_cls, _, _ = _ARCHITECTURES[model_type]
  config = config_cls.from_hf(hf_config, dtype=dtype, param_dtype=dtype)
  graphdef, state = nnx.split(nnx.eval_shape(lambda: model_cls(config, rngs=nnx.Rngs(0))))
  if mesh is not None:
    shardings = sharding.state_shardings(state, mesh)
  else:
    shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(device), state)
  return graphdef, with_shardings(state, shardings), config


def plan_reward_model(hf_config: dict[str, Any], mesh: Mesh, *, rows: int, batch_size: int, max_length: int
                      ) -> tuple[StagePlan, int]:
  """The reward model (`darling_jax.quality.RewardModel`: float32, sharded over the policy's mesh) scoring
  `rows` responses in calls of `batch_size` × `max_length` tokens. Returns the plan and its weights per device."""
  from darling_jax.quality.reward_model import reward_scores
  graphdef, state, _ = classifier_arrays(hf_config, mesh, None)
  ids = jax.ShapeDtypeStruct((batch_size, max_length), jnp.int32, sharding=_rows_sharding(mesh, batch_size, 2))
  lowered = reward_scores.lower(graphdef, state, ids, ids)
  weights = per_device_bytes(state)
  return compile_stage("reward model", lowered, calls_per_step=-(-rows // batch_size), resident_arguments=weights,
                    notes=f"{batch_size} × {max_length} tokens per call"), weights


def plan_cross_encoder(hf_config: dict[str, Any], device: jax.Device, *, pairs: int, rows_per_call: int,
                       max_length: int, dtype=jnp.float32) -> tuple[StagePlan, int]:
  """The pair classifier (`CrossEncoderClassifier` in `dtype`, on one device as the trainer loads it) over
  `pairs` pairs in calls of `rows_per_call` × `max_length` tokens (at most: identical and short responses
  never reach the model)."""
  from darling_jax.equivalence.pairwise import similar_probability
  graphdef, state, _ = classifier_arrays(hf_config, None, device, dtype)
  ids = jax.ShapeDtypeStruct((rows_per_call, max_length), jnp.int32,
                             sharding=jax.sharding.SingleDeviceSharding(device))
  lowered = similar_probability.lower(graphdef, state, ids, ids, ids)
  weights = per_device_bytes(state)
  return compile_stage("pair classifier", lowered, calls_per_step=-(-pairs // rows_per_call),
                    resident_arguments=weights,
                    notes=f"one device; {rows_per_call} × {max_length} tokens per call, ≤ {pairs} pairs"), weights


def model_flops_per_step(config: DecoderConfig, *, prompts: int, group_size: int, prompt_width: int,
                         response_width: int, remat: bool, with_reference: bool) -> dict[str, float]:
  """Model FLOPs (matmuls) of one step's policy work, all devices together: sampling (prefill + decode, keys
  attended over the whole cache as the implementation does), the update (6 · weights · tokens + LM head +
  attention; + the recomputed forward under remat) and the reference forward."""
  c = config
  rows = prompts * group_size
  trunk = c.num_layers * (c.hidden_size * c.head_dim * (2 * c.num_heads + 2 * c.num_kv_heads)
                          + 3 * c.hidden_size * c.intermediate_size)
  head = c.vocab_size * c.hidden_size
  t = prompt_width + response_width
  attention_fwd = 4 * c.num_layers * c.num_heads * c.head_dim * rows * t * t
  forward = 2 * trunk * rows * t + 2 * head * rows * response_width + attention_fwd
  decode = rows * response_width * (2 * trunk + 2 * head + 4 * c.num_layers * c.num_heads * c.head_dim * t)
  prompts_prefill = 2 * trunk * prompts * prompt_width  # each prompt is prefilled once for its G samples
  update = 3 * forward + (2 * trunk * rows * t + attention_fwd if remat else 0)
  return {"sample": float(decode + prompts_prefill), "update": float(update),
          "reference": float(forward) if with_reference else 0.0}
