"""Supervised warm start of the tiny Countdown policy: next-token cross-entropy on respelled solutions.

A fresh policy writes nothing parseable, so RL has no reward to climb. A short supervised stage on
`prompt + respelled solution + <eos>` rows teaches the format and some arithmetic. The aim is a pass@1 at
temperature 1 on held-out problems that is low but not zero, leaving DARLING room to improve quality and
strategy diversity (see README for what `configs/default.py`'s warm start reaches).

The policy's prompt is compact: `<bos>`, the numbers in number digits, the target in target digits, then `:`
(`format_policy_prompt`: `"<n3><n5><n7><n2><t2><t6>:"` for numbers 3 5 7 2 and target 26; 8 tokens). Prompt
digits are tokens the policy never needs to write (`darling_jax.tasks.countdown.tokenizer`), so its context tells
the numbers it was given from the ones it has used. With the readable `format_prompt` text
instead, the same policy copies the numbers but keeps no count of them, and most samples use a number too
often (experiments/README.md, "Does the warm start learn which numbers it has used?").

Rows are `countdown_prompt_ids` followed by the response characters and `<eos>`. The loss is the mean
cross-entropy over response tokens (the `<eos>` included), never the prompt. One jitted step (`nnx.split` at
the boundary, parameters and optimizer state donated) runs AdamW with a linear warmup and a cosine decay;
every batch is right-padded to `SftConfig.max_len`, so it compiles once.

    tokenizer = countdown_tokenizer()
    model = init_model(policy_config(), seed=0)
    model, history = train_sft(model, tokenizer, problems["train"], SftConfig())
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from darling_jax.models.config import DecoderConfig
from darling_jax.optim import learning_rate_schedule, make_optimizer
from darling_jax.tasks.countdown.tokenizer import (BOS, EOS, NUMBER_DIGITS, PAD, TARGET_DIGITS, countdown_tokenizer,
                                              countdown_vocab)
from darling_jax.tasks.countdown.problems import check_prompt_numbers
from darling_jax.tasks.countdown.spelling import respell
from darling_jax.tracing import max_traces


def policy_config(**overrides) -> DecoderConfig:
  """The default tiny Countdown policy: a 2-layer Llama-style decoder, hidden 128, MLP 256, over the 62-token
  Countdown vocabulary (about 0.33M parameters, tied embeddings, 128 positions). `overrides` replace fields.

  Sized for CPU: in `configs/default.py`'s run an SFT step of 32 rows x 24 tokens takes about 0.04 s on the 2-core
  dev machine (3,000 steps in 100-120 s)."""
  vocab = countdown_vocab()
  defaults = dict(
      vocab_size=len(vocab), hidden_size=128, intermediate_size=256, num_layers=2, num_heads=4, num_kv_heads=4,
      head_dim=32, max_position_embeddings=128, tie_word_embeddings=True, bos_token_id=vocab[BOS],
      eos_token_id=vocab[EOS], pad_token_id=vocab[PAD])
  return DecoderConfig(**(defaults | overrides))


def format_policy_prompt(numbers: Sequence[int], target: int) -> str:
  """The policy's prompt text: the numbers in number digits, the target in target digits, then `:`.

  Numbers of one digit are one token each, with nothing between them: `format_policy_prompt([3, 5, 7, 2], 26)
  == "<n3><n5><n7><n2><t2><t6>:"`. If some number has more digits, a space follows each number to delimit it:
  `format_policy_prompt([3, 12], 26) == "<n3> <n1><n2> <t2><t6>:"`.
  """
  numbers, target = check_prompt_numbers(numbers, target)
  if target < 0:
    raise ValueError(f"target must be >= 0 to be written in target digits, got {target}")
  delimiter = " " if any(number > 9 for number in numbers) else ""
  spelled = "".join("".join(NUMBER_DIGITS[int(digit)] for digit in str(number)) + delimiter for number in numbers)
  return spelled + "".join(TARGET_DIGITS[int(digit)] for digit in str(target)) + ":"


def countdown_prompt_ids(tokenizer, numbers: Sequence[int], target: int) -> list[int]:
  """The policy's prompt: `<bos>` + `format_policy_prompt(numbers, target)`, as token ids (one per digit, per
  delimiting space and for the final `:`)."""
  ids = tokenizer(format_policy_prompt(numbers, target), add_special_tokens=False)["input_ids"]
  return [tokenizer.bos_token_id] + list(ids)


# ---------------------------------------------------------------- data
class SftRow(NamedTuple):
  """One training row: `prompt_ids + response_ids + [eos]` and the prompt's length (its tokens carry no loss)."""

  token_ids: list[int]
  prompt_length: int


def sft_examples(problems: Sequence[dict[str, Any]], rng: np.random.Generator, *, spellings_per_problem: int,
                 tokenizer=None, paren_prob: float = 0.2,
                 prompt_ids: Callable[..., list[int]] | None = None) -> list[SftRow]:
  """`spellings_per_problem` rows per problem, each a uniformly drawn strategy in a fresh random spelling.

  Args:
    problems: dicts with `numbers`, `target` and `solutions` (as `countdown_problems` returns).
    rng: the random source (strategy choice and spelling).
    spellings_per_problem: rows per problem (>= 1).
    tokenizer: the character tokenizer (default: `countdown_tokenizer()`).
    paren_prob: `respell`'s redundant-parenthesis probability.
    prompt_ids: `(tokenizer, numbers, target) -> token ids` of a prompt (default: `countdown_prompt_ids`).

  Returns:
    The rows, problem by problem.
  """
  if spellings_per_problem < 1:
    raise ValueError(f"spellings_per_problem must be >= 1, got {spellings_per_problem}")
  if tokenizer is None:
    tokenizer = countdown_tokenizer()
  prompts, responses = [], []
  for index, problem in enumerate(problems):
    solutions = list(problem["solutions"])
    if not solutions:
      raise ValueError(f"problem {index} ({problem.get('numbers')!r}, target {problem.get('target')!r}) has no "
                       "solutions")
    prompt = (prompt_ids or countdown_prompt_ids)(tokenizer, problem["numbers"], problem["target"])
    for _ in range(spellings_per_problem):
      prompts.append(prompt)
      responses.append(respell(solutions[int(rng.integers(len(solutions)))], rng, paren_prob=paren_prob))
  encoded = tokenizer(responses, add_special_tokens=False)["input_ids"] if responses else []
  eos = tokenizer.eos_token_id
  return [SftRow(prompt + list(ids) + [eos], len(prompt)) for prompt, ids in zip(prompts, encoded)]


def pad_sft_batch(rows: Sequence[SftRow], width: int, pad_id: int) -> dict[str, np.ndarray]:
  """Right-padded int32 `tokens` / `attention_mask` `[B, width]` and float32 `loss_mask` `[B, width - 1]`
  (1 where target `tokens[:, t + 1]` is a response token)."""
  tokens = np.full((len(rows), width), pad_id, np.int32)
  attention = np.zeros((len(rows), width), np.int32)
  loss_mask = np.zeros((len(rows), width - 1), np.float32)
  for r, (ids, prompt_length) in enumerate(rows):
    if len(ids) > width:
      raise ValueError(f"SFT row {r} has {len(ids)} tokens, more than max_len={width}; raise SftConfig.max_len")
    if not 1 <= prompt_length < len(ids):
      raise ValueError(f"SFT row {r}: prompt_length={prompt_length} must be in [1, {len(ids)})")
    tokens[r, :len(ids)] = ids
    attention[r, :len(ids)] = 1
    loss_mask[r, prompt_length - 1:len(ids) - 1] = 1
  return {"tokens": tokens, "attention_mask": attention, "loss_mask": loss_mask}


# ---------------------------------------------------------------- training
@dataclasses.dataclass(frozen=True)
class SftConfig:
  """Settings of `train_sft` (hashable: the jitted step is cached per config).

  Attributes:
    steps: optimizer steps.
    batch_size: rows per step.
    learning_rate: AdamW peak learning rate, reached after `warmup` steps (linear from 0).
    warmup: warmup steps; then cosine decay to `learning_rate * final_lr_fraction` at `steps`.
    final_lr_fraction: in [0, 1].
    weight_decay: AdamW decoupled weight decay (matrices only: embeddings, kernels; not norm scales).
    max_grad_norm: global-norm gradient clip.
    spellings_per_problem: training rows drawn per problem (fresh spellings of random strategies).
    paren_prob: `respell`'s redundant-parenthesis probability for the rows.
    max_len: every batch is padded to this many tokens (the longest row must fit).
    seed: data (rows, order) seed.
    log_every: log the mean loss every this many steps.
  """

  steps: int = 200
  batch_size: int = 32
  learning_rate: float = 3e-3
  warmup: int = 20
  final_lr_fraction: float = 0.1
  weight_decay: float = 0.01
  max_grad_norm: float = 1.0
  spellings_per_problem: int = 8
  paren_prob: float = 0.2
  max_len: int = 64
  seed: int = 0
  log_every: int = 100

  def __post_init__(self):
    checks = {
        "steps": (self.steps >= 1, ">= 1"), "batch_size": (self.batch_size >= 1, ">= 1"),
        "learning_rate": (self.learning_rate > 0, "> 0"), "warmup": (0 <= self.warmup < self.steps, "in [0, steps)"),
        "final_lr_fraction": (0 <= self.final_lr_fraction <= 1, "in [0, 1]"),
        "weight_decay": (self.weight_decay >= 0, ">= 0"), "max_grad_norm": (self.max_grad_norm > 0, "> 0"),
        "spellings_per_problem": (self.spellings_per_problem >= 1, ">= 1"),
        "paren_prob": (0 <= self.paren_prob <= 1, "in [0, 1]"), "max_len": (self.max_len >= 2, ">= 2"),
        "log_every": (self.log_every >= 1, ">= 1"),
    }
    for key, (ok, rule) in checks.items():
      if not ok:
        raise ValueError(f"SftConfig.{key}={getattr(self, key)!r} is invalid: must be {rule}")

  def replace(self, **changes) -> SftConfig:
    return dataclasses.replace(self, **changes)


def sft_learning_rate(config: SftConfig) -> optax.Schedule:
  """Linear warmup from 0 over `warmup` steps, then cosine decay to `learning_rate * final_lr_fraction`."""
  return learning_rate_schedule("warmup_cosine", config.learning_rate, warmup_steps=config.warmup,
                                total_steps=config.steps, end_value=config.learning_rate * config.final_lr_fraction)


def sft_optimizer(config: SftConfig) -> optax.GradientTransformation:
  """Global-norm clipping, then AdamW on the `sft_learning_rate` schedule (decay on >= 2-d parameters)."""
  return make_optimizer(sft_learning_rate(config), weight_decay=config.weight_decay,
                        max_grad_norm=config.max_grad_norm, decay_matrices_only=True)


def sft_loss(model, batch: dict[str, jax.Array]) -> jax.Array:
  """Mean next-token cross-entropy over the response tokens: `Σ mask · nll / Σ mask`.

  Args:
    batch: int32 `tokens` / `attention_mask` `[B, T]`, float32 `loss_mask` `[B, T - 1]` (see `pad_sft_batch`).
  """
  logits = model(batch["tokens"][:, :-1], batch["attention_mask"][:, :-1])
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["tokens"][:, 1:])
  mask = batch["loss_mask"]
  return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)


@functools.lru_cache(maxsize=4)
def make_sft_step(graphdef, config: SftConfig):
  """`(train_step, init_opt_state)` for one model structure and config.

  `train_step(graphdef, params, rest, opt_state, batch) -> (params, opt_state, {"loss", "grad_norm"})` with
  `params` / `opt_state` donated; traced once (`darling_jax.tracing.max_traces`, a chex guard of its own), since
  every batch has the shape `[batch_size, max_len]`. `rest` is the model's non-parameter state (not updated).
  """
  optimizer = sft_optimizer(config)

  def step(graphdef, params, rest, opt_state, batch):
    loss, grads = jax.value_and_grad(lambda p: sft_loss(nnx.merge(graphdef, p, rest), batch))(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

  train_step = jax.jit(max_traces(step, n=1), static_argnames=("graphdef",),
                       donate_argnames=("params", "opt_state"))
  return train_step, jax.jit(optimizer.init)


def train_sft(model, tokenizer, problems: Sequence[dict[str, Any]], config: SftConfig = SftConfig(), *,
              log: Callable[[str], None] = print) -> tuple[Any, list[dict[str, float]]]:
  """Fine-tunes `model` on respelled solutions of `problems` (the caller's model is not modified).

  The rows (`sft_examples` with `config.spellings_per_problem`, drawn from `np.random.default_rng([seed, 0])`)
  are shuffled per epoch (`default_rng([seed, 1, epoch])`) and taken `batch_size` at a time; a short last batch
  of an epoch is topped up from the next epoch's order.

  Args:
    model: a `DecoderLM` over the character vocabulary (e.g. `init_model(policy_config())`).
    tokenizer: the character tokenizer.
    problems: the training problems (dicts with `numbers`, `target`, `solutions`).
    config: settings.
    log: progress lines.

  Returns:
    `(trained model, history)`: one dict per step with step, loss, grad_norm, learning_rate.
  """
  if not problems:
    raise ValueError("train_sft needs at least one problem")
  vocab_size = model.config.vocab_size
  if vocab_size < len(tokenizer):
    raise ValueError(f"the model's vocab_size={vocab_size} is smaller than the tokenizer's {len(tokenizer)} tokens")
  if config.max_len > model.config.max_position_embeddings:
    raise ValueError(f"SftConfig.max_len={config.max_len} exceeds the model's max_position_embeddings="
                     f"{model.config.max_position_embeddings}")
  rows = sft_examples(problems, np.random.default_rng([config.seed, 0]),
                      spellings_per_problem=config.spellings_per_problem, tokenizer=tokenizer,
                      paren_prob=config.paren_prob)
  longest = max(len(row.token_ids) for row in rows)
  if longest > config.max_len:
    raise ValueError(f"the longest SFT row has {longest} tokens, more than SftConfig.max_len={config.max_len}")

  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params = jax.tree.map(jnp.copy, params)  # the step donates its inputs: never the caller's arrays
  train_step, init_opt_state = make_sft_step(graphdef, config)
  opt_state = init_opt_state(params)
  schedule = sft_learning_rate(config)

  def order_stream():
    epoch = 0
    while True:
      yield from np.random.default_rng([config.seed, 1, epoch]).permutation(len(rows))
      epoch += 1

  order = order_stream()
  log(f"SFT on {len(problems)} problems = {len(rows)} rows (longest {longest} tokens, padded to {config.max_len}), "
      f"{config.steps} steps of {config.batch_size}")
  history: list[dict[str, float]] = []
  started, window = time.perf_counter(), []
  for step in range(1, config.steps + 1):
    batch = pad_sft_batch([rows[next(order)] for _ in range(config.batch_size)], config.max_len,
                          tokenizer.pad_token_id)
    params, opt_state, metrics = train_step(graphdef, params, rest, opt_state, batch)
    record = {"step": step, "loss": float(metrics["loss"]), "grad_norm": float(metrics["grad_norm"]),
              "learning_rate": float(schedule(step - 1))}
    history.append(record)
    window.append(record["loss"])
    if step % config.log_every == 0 or step == config.steps:
      log(f"SFT step {step}/{config.steps} loss {np.mean(window):.4f} lr {record['learning_rate']:.2e} "
          f"({step / (time.perf_counter() - started):.2f} steps/s)")
      window = []
  return nnx.merge(graphdef, params, rest), history
