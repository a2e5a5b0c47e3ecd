"""The GRPO policy update: one jitted function from (train state, rollout batch) to the next train state.

A rollout batch of `R = B*G` rows is split into `num_minibatches` consecutive minibatches, each one optimizer
step (old log-probs stay fixed at rollout time, as in PPO). Each minibatch is split into microbatches of
`microbatch_size` rows, scanned with **exact** gradient accumulation: the loss denominators of every agg mode
depend only on the response mask, so they are computed for the whole minibatch first and each microbatch
differentiates its own loss numerator divided by that denominator. The summed gradient is then exactly the
gradient of `policy_loss` on the whole minibatch (sums, never means of per-microbatch means).

Usage, one device:

  optimizer = make_optimizer(config)
  graphdef, state = nnx.graphdef(model), init_train_state(model, optimizer, jax.random.key(0))
  batch = rollout_batch(sample_output, advantages)                      # darling_jax.grpo.batch
  state, metrics = grpo_update(graphdef, state, batch, config=config)   # donates `state`

On a `("data", "fsdp", "tensor")` mesh (the "pjit-sharded" update):

  state_sharding = train_state_shardings(state, optimizer, mesh)
  update = make_update_fn(graphdef, state_sharding, rollout_batch_shardings(mesh), config)
  state = jax.device_put(state, state_sharding)
  state, metrics = update(state, global_rollout_batch(local_rows, mesh))
"""

from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from darling_jax import optim, sharding
from darling_jax.grpo.batch import RolloutBatch
from darling_jax.grpo.loss import AGG_MODES, PolicyLossTerms, policy_loss_from_terms, policy_loss_terms
from darling_jax.models.decoder import DecoderLM

SCHEDULES = optim.SCHEDULES

METRICS = ("loss", "pg_loss", "kl", "clip_fraction", "dual_clip_fraction", "approx_kl", "logp_gap", "entropy",
           "grad_norm", "learning_rate")


@dataclasses.dataclass(frozen=True)
class UpdateConfig:
  """Optimizer, minibatching and loss settings of the GRPO update (hashable: a static jit argument).

  Defaults follow verl's actor defaults (AdamW, lr 1e-6, betas (0.9, 0.999), weight decay 0.01 on every
  parameter, global-norm clip 1.0, PPO clip 0.2, dual clip 3, token-mean aggregation).

  Attributes:
    learning_rate: peak learning rate (> 0).
    b1, b2: AdamW betas, in [0, 1).
    eps: AdamW epsilon (> 0).
    weight_decay: decoupled AdamW weight decay (>= 0), applied to every parameter.
    max_grad_norm: gradients are clipped to this global norm before AdamW (> 0).
    schedule: `"constant"` (after an optional linear warmup from 0) or `"warmup_cosine"` (linear warmup from
      0 to `learning_rate`, then cosine decay to `end_learning_rate` at `total_steps`).
    warmup_steps: linear-warmup length, in optimizer steps (>= 0).
    total_steps: optimizer step at which the cosine decay ends (`"warmup_cosine"` only; > warmup_steps).
    end_learning_rate: final learning rate of the cosine decay (>= 0).
    num_minibatches: optimizer steps per rollout batch; rows are split into this many consecutive
      minibatches (the paper's math runs use 4). Must divide the number of rows.
    microbatch_size: rows per gradient microbatch (None: the whole minibatch). Must divide the minibatch.
    clip_low, clip_high: PPO ratio clip range `[1 - clip_low, 1 + clip_high]`.
    dual_clip: cap of the loss of `A < 0` tokens at `-A * dual_clip` (> 1), or None.
    kl_coef: weight of the k3 KL to the reference policy (>= 0); > 0 needs `RolloutBatch.ref_logp`.
    agg: loss aggregation, one of `AGG_MODES` (see `policy_loss`).
    temperature: the rollout temperature (> 0); trainer log-probs are of softmax(logits / temperature).
    logprob_chunk_size: response positions per LM-head chunk in the loss (None: all at once); bounds the
      float32 logits held at once to `[rows, chunk, V]` (`response_logprobs`).
  """

  learning_rate: float = 1e-6
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  weight_decay: float = 0.01
  max_grad_norm: float = 1.0
  schedule: str = "constant"
  warmup_steps: int = 0
  total_steps: int = 0
  end_learning_rate: float = 0.0
  num_minibatches: int = 1
  microbatch_size: int | None = None
  clip_low: float = 0.2
  clip_high: float = 0.2
  dual_clip: float | None = 3.0
  kl_coef: float = 0.0
  agg: str = "token-mean"
  temperature: float = 1.0
  logprob_chunk_size: int | None = None

  def __post_init__(self):
    checks = (
        ("learning_rate", self.learning_rate > 0, "> 0"),
        ("b1", 0 <= self.b1 < 1, "in [0, 1)"),
        ("b2", 0 <= self.b2 < 1, "in [0, 1)"),
        ("eps", self.eps > 0, "> 0"),
        ("weight_decay", self.weight_decay >= 0, ">= 0"),
        ("max_grad_norm", self.max_grad_norm > 0, "> 0"),
        ("schedule", self.schedule in SCHEDULES, f"one of {SCHEDULES}"),
        ("warmup_steps", self.warmup_steps >= 0, ">= 0"),
        ("total_steps", self.schedule != "warmup_cosine" or self.total_steps > self.warmup_steps,
         f"> warmup_steps={self.warmup_steps} for the warmup_cosine schedule"),
        ("end_learning_rate", self.end_learning_rate >= 0, ">= 0"),
        ("num_minibatches", self.num_minibatches >= 1, ">= 1"),
        ("microbatch_size", self.microbatch_size is None or self.microbatch_size >= 1, ">= 1 (or None)"),
        ("clip_low", 0 <= self.clip_low < 1, "in [0, 1)"),
        ("clip_high", self.clip_high >= 0, ">= 0"),
        ("dual_clip", self.dual_clip is None or self.dual_clip > 1, "> 1 (or None to disable)"),
        ("kl_coef", self.kl_coef >= 0, ">= 0"),
        ("agg", self.agg in AGG_MODES, f"one of {AGG_MODES}"),
        ("temperature", self.temperature > 0, "> 0"),
        ("logprob_chunk_size", self.logprob_chunk_size is None or self.logprob_chunk_size >= 1,
         ">= 1 (or None)"),
    )
    for name, ok, requirement in checks:
      if not ok:
        raise ValueError(f"UpdateConfig.{name} must be {requirement}, got {getattr(self, name)!r}")

  def minibatch_layout(self, num_rows: int) -> tuple[int, int]:
    """`(rows per minibatch, microbatches per minibatch)` for a rollout batch of `num_rows` rows."""
    if num_rows % self.num_minibatches:
      raise ValueError(f"UpdateConfig.num_minibatches={self.num_minibatches} must divide the rollout batch's "
                       f"{num_rows} rows")
    minibatch_rows = num_rows // self.num_minibatches
    microbatch_rows = self.microbatch_size or minibatch_rows
    if minibatch_rows % microbatch_rows:
      raise ValueError(f"UpdateConfig.microbatch_size={self.microbatch_size} must divide the minibatch of "
                       f"{minibatch_rows} rows ({num_rows} rows / {self.num_minibatches} minibatches)")
    return minibatch_rows, minibatch_rows // microbatch_rows


def make_schedule(config: UpdateConfig) -> optax.Schedule:
  """The learning rate as a function of the optimizer step (counted from 0): `optim.learning_rate_schedule`."""
  return optim.learning_rate_schedule(config.schedule, config.learning_rate, warmup_steps=config.warmup_steps,
                                      total_steps=config.total_steps, end_value=config.end_learning_rate)


def make_optimizer(config: UpdateConfig) -> optax.GradientTransformation:
  """Global-norm gradient clipping, then AdamW with the configured schedule (`optim.make_optimizer`; weight decay
  on every parameter, as verl's actor)."""
  return optim.make_optimizer(make_schedule(config), weight_decay=config.weight_decay,
                              max_grad_norm=config.max_grad_norm, b1=config.b1, b2=config.b2, eps=config.eps)


def response_logprobs(model: DecoderLM, input_ids: jax.Array, attention_mask: jax.Array,
                      num_response_tokens: int, temperature: float, *, with_entropy: bool = False,
                      chunk_size: int | None = None) -> jax.Array | tuple[jax.Array, jax.Array]:
  """Log-probabilities of the response tokens, `log softmax(logits / temperature)`, each given all before it.

  Only the response positions go through the LM head (the prompt's logits are never formed). With
  `chunk_size`, the head runs on `chunk_size` response positions at a time under `jax.checkpoint`, so neither
  the forward nor the backward holds more than `[R, chunk_size, V]` float32 logits (for 8,192 response tokens of a
  151,936-token vocabulary, the full `[R, N, V]` would be 5 GB per row).

  Args:
    model: the policy (or reference) decoder.
    input_ids: int32 `[R, P+N]` prompt then response (as `RolloutBatch.input_ids`).
    attention_mask: int32 `[R, P+N]`.
    num_response_tokens: static N, the trailing response width (P = T - N must be >= 1).
    temperature: static; the rollout temperature (> 0).
    with_entropy: also return the entropy of `softmax(logits / temperature)` at each response position (no
      gradient flows through it).
    chunk_size: static; response positions per LM-head chunk (None: all N at once). N is padded up to a
      multiple of it; the result is the same up to float rounding.

  Returns:
    f32 `[R, N]` (and, with `with_entropy`, the entropies f32 `[R, N]`); entries at masked response positions are
    meaningless (finite) and must be masked.
  """
  total = input_ids.shape[1]
  prompt_width = total - num_response_tokens
  if not 1 <= prompt_width < total:
    raise ValueError(f"num_response_tokens={num_response_tokens} must be in [1, {total - 1}] for sequences of "
                     f"length {total} (at least one prompt token)")
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  if chunk_size is not None and chunk_size < 1:
    raise ValueError(f"chunk_size must be >= 1 (or None), got {chunk_size}")
  hidden = model.hidden_states(input_ids, attention_mask)[:, prompt_width - 1:-1]  # [R, N, E]
  tokens = input_ids[:, prompt_width:]                                              # [R, N]

  def head(hidden, tokens):
    """`[R, S, E]`, `[R, S]` -> (log-probs `[R, S]`,) plus the gradient-free entropies `[R, S]` when asked."""
    logits = model.logits(hidden) / temperature                                     # [R, S, V] f32
    log_normalizer = jax.nn.logsumexp(logits, axis=-1)
    logp = jnp.take_along_axis(logits, tokens[..., None], axis=-1)[..., 0] - log_normalizer
    if not with_entropy:
      return (logp,)
    logits, log_normalizer = jax.lax.stop_gradient((logits, log_normalizer))
    entropy = log_normalizer - jnp.sum(jnp.exp(logits - log_normalizer[..., None]) * logits, axis=-1)
    return logp, entropy

  if chunk_size is None or chunk_size >= num_response_tokens:
    outputs = head(hidden, tokens)
  else:
    rows = hidden.shape[0]
    chunks = -(-num_response_tokens // chunk_size)
    pad = chunks * chunk_size - num_response_tokens
    hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0))).reshape(rows, chunks, chunk_size, -1).swapaxes(0, 1)
    tokens = jnp.pad(tokens, ((0, 0), (0, pad))).reshape(rows, chunks, chunk_size).swapaxes(0, 1)
    outputs = jax.lax.map(lambda chunk: jax.checkpoint(head)(*chunk), (hidden, tokens))  # each [C, R, S]
    outputs = tuple(x.swapaxes(0, 1).reshape(rows, -1)[:, :num_response_tokens] for x in outputs)
  return outputs if with_entropy else outputs[0]


@flax.struct.dataclass
class TrainState:
  """Everything the update changes, as one pytree (checkpointable, shardable, donatable).

  Attributes:
    params: `nnx.State` of the model's `nnx.Param`s (merge with `nnx.graphdef(model)`).
    opt_state: the `make_optimizer` state; its moment trees mirror `params`.
    step: int32 `[]` number of rollout batches applied (`grpo_update` calls). The schedule counts optimizer
      steps, `step * num_minibatches`.
    rng: PRNG key carried for the training loop (e.g. sampling keys `fold_in(rng, step)`); the update itself
      does not consume randomness and returns it unchanged.
  """

  params: nnx.State
  opt_state: optax.OptState
  step: jax.Array
  rng: jax.Array


def init_train_state(model: DecoderLM, optimizer: optax.GradientTransformation, rng: jax.Array) -> TrainState:
  """A fresh `TrainState` (step 0) for `model`, which must hold only `nnx.Param` state.

  The state's params are the model's own buffers (no copy). The update donates them, so after the first
  `grpo_update` the model object is stale: rebuild it with `nnx.merge(graphdef, state.params)`.
  """
  _, params = nnx.split(model, nnx.Param)  # raises if the model holds any other variable type
  return TrainState(params=params, opt_state=optimizer.init(params), step=jnp.zeros((), jnp.int32), rng=rng)


def _loss_denominators(response_mask: jax.Array) -> dict[str, jax.Array]:
  """The `PolicyLossTerms.denominators` of a batch, which depend on its response mask `[S, N]` alone."""
  tokens_per_seq = jnp.sum(response_mask.astype(bool), axis=1, dtype=jnp.float32)
  num_valid_seqs = jnp.sum(tokens_per_seq > 0, dtype=jnp.float32)
  return {"token-mean": jnp.sum(tokens_per_seq), "seq-mean-token-mean": num_valid_seqs,
          "seq-mean-token-sum": num_valid_seqs}


def minibatch_gradients(graphdef: nnx.GraphDef, params: nnx.State, minibatch: RolloutBatch,
                        config: UpdateConfig) -> tuple[nnx.State, PolicyLossTerms]:
  """Exact gradient of `policy_loss` on `minibatch`, accumulated over microbatches with `lax.scan`.

  The loss is `sum_k numerator_k / D`, with `D` the minibatch's clamped denominator for `config.agg`, so the
  microbatch gradients `grad(numerator_k) / D` add up to the gradient of the whole minibatch's loss.

  Args:
    graphdef: the policy's graph definition (static under jit).
    params: the policy's `nnx.Param` state.
    minibatch: `RolloutBatch` of `S` rows; `config.microbatch_size` must divide S.
    config: static `UpdateConfig`.

  Returns:
    `(grads, terms)`: grads shaped like `params`; `terms` the `PolicyLossTerms` summed over microbatches
    (`policy_loss_from_terms(terms, agg=config.agg)` is the minibatch's loss and metrics).
  """
  rows = minibatch.response_mask.shape[0]
  microbatch_rows = config.microbatch_size or rows
  if rows % microbatch_rows:
    raise ValueError(f"UpdateConfig.microbatch_size={config.microbatch_size} must divide the minibatch of "
                     f"{rows} rows")
  if config.kl_coef > 0 and minibatch.ref_logp is None:
    raise ValueError(f"UpdateConfig.kl_coef={config.kl_coef} > 0 needs RolloutBatch.ref_logp")
  denominator = jnp.maximum(_loss_denominators(minibatch.response_mask)[config.agg], 1.0)

  def accumulate(grad_sum, microbatch: RolloutBatch):
    microbatch = sharding.constrain_rows(microbatch)

    def scaled_numerator(params):
      model = nnx.merge(graphdef, params)
      logp, entropy = response_logprobs(model, microbatch.input_ids, microbatch.attention_mask,
                                        microbatch.num_response_tokens, config.temperature, with_entropy=True,
                                        chunk_size=config.logprob_chunk_size)
      terms = policy_loss_terms(
          logp, microbatch.old_logp, microbatch.advantages, microbatch.response_mask, clip_low=config.clip_low,
          clip_high=config.clip_high, dual_clip=config.dual_clip, ref_logp=microbatch.ref_logp,
          kl_coef=config.kl_coef, entropy=entropy)
      return terms.loss[config.agg] / denominator, terms

    grads, terms = jax.grad(scaled_numerator, has_aux=True)(params)
    return jax.tree.map(jnp.add, grad_sum, grads), terms

  microbatches = sharding.split_rows(minibatch, rows // microbatch_rows)
  grads, terms = jax.lax.scan(accumulate, jax.tree.map(jnp.zeros_like, params), microbatches)
  return grads, jax.tree.map(lambda x: jnp.sum(x, axis=0), terms)


@functools.partial(jax.jit, static_argnames=("graphdef", "config"), donate_argnames=("state",))
def grpo_update(graphdef: nnx.GraphDef, state: TrainState, batch: RolloutBatch, *,
                config: UpdateConfig) -> tuple[TrainState, dict[str, jax.Array]]:
  """One GRPO update on a rollout batch: `num_minibatches` optimizer steps (jitted, donates `state`).

  The batch's rows are split into `config.num_minibatches` consecutive minibatches; each is one clip + AdamW
  step on the exact gradient of its `policy_loss` (accumulated over microbatches, see `minibatch_gradients`).
  `old_logp` (and `ref_logp`) come from the batch and stay fixed; with `ref_logp=None` no KL is computed.

  Args:
    graphdef: static; `nnx.graphdef(model)`.
    state: `TrainState`; its buffers are donated (do not reuse the argument).
    batch: `RolloutBatch` of R rows; `num_minibatches` must divide R, `microbatch_size` the minibatch.
    config: static `UpdateConfig`.

  Returns:
    `(new_state, metrics)`, `new_state.step = state.step + 1`. `metrics` maps each of `METRICS` to f32 `[]`,
    the mean over the minibatches: loss, pg_loss, kl (aggregated with `config.agg`), clip_fraction,
    dual_clip_fraction, approx_kl, logp_gap and entropy (token means of the minibatch, with the policy before its
    step; entropy of its tempered softmax), grad_norm (global norm before clipping) and learning_rate (the rate
    each step used). A fully masked minibatch has zero gradient and metrics 0; AdamW then applies only its weight decay.
  """
  num_minibatches = config.num_minibatches
  config.minibatch_layout(batch.response_mask.shape[0])
  optimizer = make_optimizer(config)
  schedule = make_schedule(config)

  def optimizer_step(carry, minibatch: RolloutBatch):
    params, opt_state, optimizer_step_index = carry
    grads, terms = minibatch_gradients(graphdef, params, minibatch, config)
    loss, metrics = policy_loss_from_terms(terms, agg=config.agg)
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads),
                   learning_rate=jnp.asarray(schedule(optimizer_step_index), jnp.float32))
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, opt_state, optimizer_step_index + 1), metrics

  carry = (state.params, state.opt_state, state.step * num_minibatches)
  (params, opt_state, _), metrics = jax.lax.scan(optimizer_step, carry, sharding.split_rows(batch, num_minibatches))
  metrics = {name: jnp.mean(metrics[name]) for name in METRICS}
  new_state = state.replace(params=params, opt_state=opt_state, step=state.step + 1)
  return new_state, metrics


# ---------------------------------------------------------------------------------------------- sharding


def train_state_shardings(state: TrainState, optimizer: optax.GradientTransformation, mesh: Mesh,
                          rules=sharding.LOGICAL_AXIS_RULES) -> TrainState:
  """`NamedSharding`s for a (possibly abstract) `TrainState`: params from their logical annotations through
  the rules table, every optimizer-state tree that mirrors the params sharded like them, everything else
  (step, rng, optimizer counters) replicated."""
  param_shardings = sharding.state_shardings(state.params, mesh, rules)
  replicated = NamedSharding(mesh, P())
  opt_shardings = optax.tree_map_params(
      optimizer, lambda _, param_sharding: param_sharding, state.opt_state, param_shardings,
      transform_non_params=lambda _: replicated, is_leaf=lambda x: isinstance(x, nnx.Variable))
  return TrainState(params=param_shardings, opt_state=opt_shardings, step=replicated, rng=replicated)


def make_update_fn(graphdef: nnx.GraphDef, state_sharding: TrainState, batch_sharding: RolloutBatch,
                   config: UpdateConfig):
  """`grpo_update` jitted with explicit in/out shardings and the state donated: `update(state, batch)`.

  Args:
    graphdef: the policy's graph definition.
    state_sharding: `train_state_shardings(...)`; the new state comes back in the same shardings.
    batch_sharding: `rollout_batch_shardings(mesh, with_ref_logp=...)`.
    config: `UpdateConfig`.

  Returns:
    `update(state, batch) -> (state, metrics)`; it runs under `jax.set_mesh(mesh)` (microbatch rows are
    constrained to `data` × `fsdp` when they divide evenly). Metrics come back replicated. The jitted
    function is `update.jitted` (for `.lower(...)`, cache inspection).
  """
  mesh = state_sharding.step.mesh
  jitted = jax.jit(
      functools.partial(grpo_update.__wrapped__, graphdef, config=config),
      in_shardings=(state_sharding, batch_sharding),
      out_shardings=(state_sharding, NamedSharding(mesh, P())),
      donate_argnums=(0,),
  )

  def update(state: TrainState, batch: RolloutBatch) -> tuple[TrainState, dict[str, jax.Array]]:
    with jax.set_mesh(mesh):
      return jitted(state, batch)

  update.jitted = jitted
  return update
