"""Jitted KV-cache sampler: G samples per prompt, groups contiguous, with per-token log-probabilities.

Each prompt is prefilled once; its G samples decode against that one prompt cache (read as a shared prefix, not
copied G times) plus a cache of their own tokens, in one `lax.while_loop` that stops when every row has finished
or `max_new_tokens` is reached. Prompt lengths are bucketed to powers of two, so compilations are bounded by
(#buckets × batch sizes × generation settings).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from darling_jax.models.decoder import DecoderLM
from darling_jax.models.kv_cache import KVCache
from darling_jax.sampling.categorical import categorical_from_uniform
from darling_jax.sampling.truncation import truncate_logits

MIN_PROMPT_BUCKET = 8


@flax.struct.dataclass
class SampleOutput:
  """Rows `i*G … i*G+G-1` are prompt i's samples.

  tokens: int32 `[B*G, N]` generated tokens, `pad_id` after a row's first EOS.
  mask: int32 `[B*G, N]` 1 on generated tokens up to and including the first EOS.
  logprobs: float32 `[B*G, N]` log softmax(logits / T) of each sampled token (0 where mask is 0).
  prompt_tokens, prompt_mask: int32 `[B, P]` the left-padded (bucketed) prompts, one row per prompt.
  """

  tokens: jax.Array
  mask: jax.Array
  logprobs: jax.Array
  prompt_tokens: jax.Array
  prompt_mask: jax.Array

  @property
  def num_samples(self) -> int:
    return self.tokens.shape[0] // self.prompt_tokens.shape[0]


def prompt_bucket(length: int) -> int:
  """Smallest power of two ≥ length (at least MIN_PROMPT_BUCKET)."""
  return max(MIN_PROMPT_BUCKET, 1 << (int(length) - 1).bit_length())


def pad_prompts(prompt_ids, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Prompts -> left-padded int32 ids and mask `[B, P]`, P the power-of-two bucket of the longest prompt.

  `prompt_ids` is a list of B token-id lists, or `(ids [B, T], lengths [B])` with row i's prompt in its first
  `lengths[i]` entries (right padding).
  """
  if isinstance(prompt_ids, tuple) and len(prompt_ids) == 2 and np.ndim(prompt_ids[0]) == 2:
    ids, lengths = np.asarray(prompt_ids[0]), np.asarray(prompt_ids[1])
    if lengths.shape != (ids.shape[0],) or np.any(lengths > ids.shape[1]):
      raise ValueError(f"prompt lengths {lengths.tolist()} do not fit prompt ids of shape {ids.shape}")
    rows = [ids[i, :n].tolist() for i, n in enumerate(lengths)]
  else:
    rows = [list(map(int, row)) for row in prompt_ids]
  if not rows:
    raise ValueError("prompt_ids is empty: need at least one prompt")
  for i, row in enumerate(rows):
    if not row:
      raise ValueError(f"prompt {i} is empty: every prompt needs at least one token")
  width = prompt_bucket(max(map(len, rows)))
  tokens = np.full((len(rows), width), pad_id, np.int32)
  mask = np.zeros((len(rows), width), np.int32)
  for i, row in enumerate(rows):
    tokens[i, width - len(row):] = row
    mask[i, width - len(row):] = 1
  return tokens, mask


PREFILL_JIT = dict(static_argnames=("graphdef", "num_samples", "max_new_tokens", "rows_sharding"))
DECODE_JIT = dict(static_argnames=("graphdef", "max_new_tokens", "temperature", "top_p", "top_k", "eos_ids", "pad_id"),
                  donate_argnames=("cache",))


@functools.partial(jax.jit, **PREFILL_JIT)
def prefill(graphdef, state, prompt_tokens, prompt_mask, *, num_samples: int, max_new_tokens: int,
            rows_sharding: jax.sharding.NamedSharding | None = None):
  """Runs the prompts `[B, P]` once.

  Returns (the prompts' cache, B rows of P slots; an empty cache for the `B*G` samples' own `max_new_tokens`
  tokens; the last position's logits float32 `[B*G, V]`, row `i*G + j` a copy of prompt i's). With
  `rows_sharding` (the prompts' sharding, rows over some mesh axes), the caches and logits are constrained to
  the same row split: the samples' cache is created here, and without the constraint XLA may replicate it on
  every device (at 2,048 rows × 8,192 tokens of a 4B model that is 2.4 TB per device instead of 1/8 of it).
  """
  model: DecoderLM = nnx.merge(graphdef, state)
  batch, width = prompt_tokens.shape
  logits, prompt_cache = model.forward_with_cache(prompt_tokens, KVCache.init(model.config, batch, width),
                                                  prompt_mask, last_logits_only=True)
  sample_cache = KVCache.init(model.config, batch * num_samples, max_new_tokens)
  outputs = prompt_cache, sample_cache, jnp.repeat(logits[:, -1], num_samples, axis=0)
  if rows_sharding is not None:
    rows = lambda x: NamedSharding(rows_sharding.mesh, P(rows_sharding.spec[0], *([None] * (x.ndim - 1))))  # noqa: E731
    outputs = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, rows(x)) if x.ndim else x, outputs)
  return outputs


@functools.partial(jax.jit, **DECODE_JIT)
def decode(graphdef, state, prompt_cache: KVCache, cache: KVCache, first_logits, rng, *, max_new_tokens: int,
           temperature: float, top_p: float, top_k: int, eos_ids: tuple[int, ...], pad_id: int):
  """Samples up to `max_new_tokens` tokens for every row, row `i*G + j` continuing prompt i of `prompt_cache`.

  Returns (tokens, mask, logprobs), each `[R, N]`, and the final samples' cache: returning it lets XLA alias the
  donated input `cache`, so decoding updates it in place instead of copying it into the loop.
  """
  model: DecoderLM = nnx.merge(graphdef, state)
  rows = first_logits.shape[0]
  eos = jnp.asarray(eos_ids, jnp.int32)

  # Step s draws its R uniforms with key `fold_in(rng, s)`; all N steps' draws are made here, in one vectorised
  # call, rather than in the loop (on CPU the threefry hash is a loop of its own: 90 of a step's 220 XLA ops).
  # Row r's draws depend on (rng, s, R, r) only, not on how the rows are sharded: a sample split over several
  # processes gives each prompt the same stream as one process sampling the whole batch.
  step_keys = jax.vmap(lambda step: jax.random.fold_in(rng, step))(jnp.arange(max_new_tokens))
  uniforms = jax.vmap(lambda key: jax.random.uniform(key, (rows,), jnp.float32))(step_keys)  # [N, R]

  def choose(logits, step):
    """-> the sampled token int32 `[R]` and its log-probability under softmax(logits / T)."""
    scaled = logits / temperature if temperature > 0 else logits
    if temperature > 0:
      token = categorical_from_uniform(uniforms[step], truncate_logits(scaled, top_k=top_k, top_p=top_p))
    else:
      token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    token_logit = jnp.take_along_axis(scaled, token[:, None], axis=-1)[:, 0]
    return token, token_logit - jax.nn.logsumexp(scaled, axis=-1)

  def record(carry, token, token_logprob):
    step, cache, _, tokens, mask, logprobs, done = carry
    active = ~done
    tokens = tokens.at[:, step].set(jnp.where(active, token, pad_id))
    mask = mask.at[:, step].set(active.astype(jnp.int32))
    logprobs = logprobs.at[:, step].set(jnp.where(active, token_logprob, 0.0))
    return step + 1, cache, token, tokens, mask, logprobs, done | jnp.isin(token, eos)

  def body(carry):
    step, cache, token = carry[:3]
    logits, cache = model.forward_with_cache(token[:, None], cache, prefix=prompt_cache)
    return record((step, cache) + carry[2:], *choose(logits[:, -1], step))

  def cond(carry):
    step, done = carry[0], carry[-1]
    return (step < max_new_tokens) & ~jnp.all(done)

  # Token 0 comes from the prefill logits; each loop step feeds the last token and samples the next, so N
  # tokens cost N - 1 forwards and only the last token (not the logits) is carried.
  init = (jnp.zeros((), jnp.int32), cache, jnp.zeros((rows,), jnp.int32),
          jnp.full((rows, max_new_tokens), pad_id, jnp.int32), jnp.zeros((rows, max_new_tokens), jnp.int32),
          jnp.zeros((rows, max_new_tokens), jnp.float32), jnp.zeros((rows,), bool))
  init = record(init, *choose(first_logits, 0))
  _, cache, _, tokens, mask, logprobs, _ = jax.lax.while_loop(cond, body, init)
  return tokens, mask, logprobs, cache


def generate(model: DecoderLM, prompt_ids, *, num_samples: int, max_new_tokens: int, eos_ids: Sequence[int] | int,
             rng: jax.Array, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
             pad_id: int | None = None, batch_sharding: jax.sharding.Sharding | None = None) -> SampleOutput:
  """Samples `num_samples` continuations of each prompt.

  Args:
    model: the policy.
    prompt_ids: list of B token-id lists, or `(ids int32[B, T], lengths int32[B])` (right-padded).
    num_samples: G samples per prompt; output rows `i*G … i*G+G-1` belong to prompt i.
    max_new_tokens: N, the output width.
    eos_ids: token id(s) that end a sample (the EOS is kept and masked in).
    rng: PRNG key; fold the training step into it (`jax.random.fold_in(key, step)`) for fresh samples.
    temperature: softmax temperature; 0 means greedy (then logprobs are of the untempered softmax).
    top_p, top_k: nucleus / top-k truncation for sampling (logprobs are not renormalised).
    pad_id: written after EOS (default: the first EOS id). May equal an EOS id; use `mask`, not `!= pad`.
    batch_sharding: a sharding for `[B, P]` prompt arrays (e.g. `sharding.batch_sharding(mesh, 2)`); with it
      the whole generation runs batch-sharded and the `[B*G, N]` outputs come back in it too (prompt i's G rows
      on the devices of prompt i). On a mesh over several processes every process passes the same prompts (the
      global batch) and the same key: the sample is one SPMD computation over all of them.

  Returns:
    SampleOutput with tokens / mask / logprobs of shape `[B*G, N]`.
  """
  eos_ids = (eos_ids,) if isinstance(eos_ids, (int, np.integer)) else tuple(int(e) for e in eos_ids)
  if not eos_ids:
    raise ValueError("eos_ids is empty: give at least one end-of-sequence id")
  if num_samples < 1:
    raise ValueError(f"num_samples must be >= 1, got {num_samples}")
  if max_new_tokens <= 0:
    raise ValueError(f"max_new_tokens must be > 0, got {max_new_tokens}")
  if not 0.0 < top_p <= 1.0:
    raise ValueError(f"top_p must be in (0, 1], got {top_p}")
  if temperature < 0:
    raise ValueError(f"temperature must be >= 0, got {temperature}")
  if top_k < 0:
    raise ValueError(f"top_k must be >= 0 (0 disables), got {top_k}")
  tokens, mask = pad_prompts(prompt_ids)
  longest = int(mask.sum(axis=1).max())
  context = model.config.max_position_embeddings
  if longest + max_new_tokens > context:
    raise ValueError(f"prompt length {longest} + max_new_tokens {max_new_tokens} exceeds the model's context "
                     f"({context} positions)")
  if batch_sharding is not None:
    tokens, mask = jax.device_put((tokens, mask), batch_sharding)
  graphdef, state = nnx.split(model)
  prompt_cache, cache, first_logits = prefill(graphdef, state, tokens, mask, num_samples=num_samples,
                                               max_new_tokens=max_new_tokens,
                                               rows_sharding=batch_sharding if isinstance(batch_sharding, NamedSharding)
                                               else None)
  out_tokens, out_mask, logprobs, _ = decode(
      graphdef, state, prompt_cache, cache, first_logits, rng, max_new_tokens=max_new_tokens,
      temperature=float(temperature), top_p=float(top_p), top_k=int(top_k), eos_ids=eos_ids,
      pad_id=eos_ids[0] if pad_id is None else int(pad_id))
  if batch_sharding is not None:  # e.g. rows over `data` only after GSPMD's propagation: as the prompts' rows
    out_tokens, out_mask, logprobs = jax.device_put((out_tokens, out_mask, logprobs), batch_sharding)
  return SampleOutput(tokens=out_tokens, mask=out_mask, logprobs=logprobs, prompt_tokens=jnp.asarray(tokens),
                      prompt_mask=jnp.asarray(mask))
