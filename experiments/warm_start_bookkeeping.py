"""Does the Countdown warm start learn which numbers it has used? A long supervised run, probed as it trains.

`experiments/warm_start_sweep.py` found that most warm-start samples use some number more often than the prompt
holds it. This script trains the warm start of `configs/default.py` for many more steps and, every
`--probe_every` steps, measures that directly with teacher forcing on held-out rows: at the position where the
k-th number of a solution starts, the share of the policy's probability on the digits 1-9 that goes to a digit
still available (in the prompt, and not yet used up by the solution's numbers before it). A policy that copies
the prompt's numbers uniformly but keeps no count of the ones it used scores the share of the prompt's numbers
still left, about 1, 3/4, 1/2, 1/4 for k = 1..4 (printed first, exactly, as `no_count_baseline`). A policy
that keeps count scores 1 at every k. Every `--eval_every` steps it also samples 8 responses at temperature 1
for each test problem and prints the verdict shares.

Set-up (the default config's data, policy and SFT settings; only the number of steps and the rows change):
- data: the config's Countdown dataset, written to `--data_dir` by the trainer's tensorflow-datasets builder;
- rows: `sft_examples` with `--spellings_per_problem` spellings per training problem (`default_rng(seed)`);
  batches of `sft.batch_size` rows drawn with replacement (`default_rng(seed + 1)`);
- optimizer: `SftConfig` of the config with `steps=--steps` (warmup, then cosine decay over all the steps);
- probe rows: 4 spellings of each test problem (`default_rng(seed + 5)`);
- `--prompt_numbers` picks the prompt encoding (`PROMPTS`):
  - `characters`: `"Numbers: 3 5 7 2 Target: 26 Expression: "` in characters, the trainer's prompt until
    2026-11-29 (policy vocabulary 42, as then);
  - `own_tokens`: the same text with the numbers in number digits `<n3>` and the target in target digits
    `<t2><t6>`, tokens the policy never needs to write (`own_token_prompt_ids`); its own digits are then the
    only plain digits in its context;
  - `policy`: the trainer's compact prompt `<n3><n5><n7><n2><t2><t6>:` (`countdown_prompt_ids`);
  - `policy_spaces`: `<n3> <n5> <n7> <n2> <t2><t6>:`; `policy_plain_target`: `<n3><n5><n7><n2>=26:`.
  Rows are padded to 64 tokens for the first two and to `--max_len` (default: the config's `sft.max_len`, 24)
  for the others.

Commands (from the repository root; times on the 2-core dev machine):

    python experiments/warm_start_bookkeeping.py --steps=4000                       # 53 min
    python experiments/warm_start_bookkeeping.py --steps=4000 --prompt_numbers=own_tokens --eval_every=500
    python experiments/warm_start_bookkeeping.py --steps=1000 --prompt_numbers=policy --eval_every=500

It prints one JSON line per probe / evaluation. Results: experiments/README.md.
"""

from __future__ import annotations

import collections
import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx

from darling_jax.config_files import load_config
from darling_jax.tasks.countdown import prepare_countdown
from darling_jax.data.loader import decode_record
from darling_jax.models import init_model
from darling_jax.sampling import decode_responses, generate
from darling_jax.tasks.countdown.tokenizer import NUMBER_DIGITS, TARGET_DIGITS, countdown_tokenizer
from darling_jax.tasks.countdown.problems import format_prompt, response_verdict
from darling_jax.tasks.countdown.warm_start import (SftConfig, countdown_prompt_ids, make_sft_step, pad_sft_batch,
                                             policy_config, sft_examples)

DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "default.py"

_STEPS = flags.DEFINE_integer("steps", 4000, "SFT steps.")
_PROBE_EVERY = flags.DEFINE_integer("probe_every", 250, "Steps between bookkeeping probes.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 1000, "Steps between sampled evaluations of the test split.")
_SPELLINGS = flags.DEFINE_integer("spellings_per_problem", 16, "SFT rows per training problem.")
_DATA_DIR = flags.DEFINE_string("data_dir", "/tmp/darling_warm_start_data", "Where the dataset is written.")
_CONFIG = flags.DEFINE_string("config", str(DEFAULT_CONFIG), "The run config whose warm start is trained.")
_PROMPT_NUMBERS = flags.DEFINE_enum(
    "prompt_numbers", "characters", ["characters", "own_tokens", "policy", "policy_spaces",
                                     "policy_plain_target"],
    "The prompt encoding (see `PROMPTS`): `characters` (the readable `format_prompt` text in characters, the "
    "trainer's prompt until 2026-11-29), `own_tokens` (the same text with prompt digits), `policy` (the "
    "trainer's compact prompt, `countdown_prompt_ids`), and two variants of it.")
_MAX_LEN = flags.DEFINE_integer("max_len", None, "Rows are padded to this many tokens (default: 64 for the "
                                "readable prompts, the config's sft.max_len for the compact ones).")

_PROBE_SPELLINGS = 4  # probe rows per test problem
_EVAL_SAMPLES = 8     # sampled responses per test problem
_FIRST_DIGITS = range(1, 10)  # the numbers are 1..9: the digits a number can start with


def character_prompt_ids(tokenizer, numbers, target) -> list[int]:
  """`<bos>` + `format_prompt(numbers, target) + " "` in characters (`"Numbers: 3 5 7 2 Target: 26
  Expression: "`): the policy's prompt until 2026-11-29."""
  text = format_prompt(numbers, target) + " "
  return [tokenizer.bos_token_id] + list(tokenizer(text, add_special_tokens=False)["input_ids"])


def own_token_prompt_ids(tokenizer, numbers, target) -> list[int]:
  """`character_prompt_ids` with each prompt number `n` (in [1, 9]) written as the number digit `<n{n}>`
  (token 42 + n) and each target digit `c` as `<t{c}>` (token 52 + c), so that the only plain digits in the
  policy's context are the ones it wrote itself."""
  ids = character_prompt_ids(tokenizer, numbers, target)
  digit_values = {tokenizer.convert_tokens_to_ids(str(d)): d for d in range(10)}
  at = [i for i, token in enumerate(ids) if token in digit_values]  # the numbers' digits, then the target's
  if len(at) != len(numbers) + len(str(int(target))):
    raise ValueError(f"own_token_prompt_ids needs numbers in [1, 9], got {list(numbers)}")
  own = tokenizer.convert_tokens_to_ids
  for order, i in enumerate(at):
    ids[i] = own((NUMBER_DIGITS if order < len(numbers) else TARGET_DIGITS)[digit_values[ids[i]]])
  return ids


def spaced_prompt_ids(tokenizer, numbers, target) -> list[int]:
  """`countdown_prompt_ids` with a space after each number: `<n3> <n5> <n7> <n2> <t2><t6>:` (numbers in
  [0, 9])."""
  ids, space = countdown_prompt_ids(tokenizer, numbers, target), tokenizer.convert_tokens_to_ids(" ")
  return ids[:1] + [token for n in ids[1:1 + len(numbers)] for token in (n, space)] + ids[1 + len(numbers):]


def plain_target_prompt_ids(tokenizer, numbers, target) -> list[int]:
  """`countdown_prompt_ids` with the target in plain characters after `=`: `<n3><n5><n7><n2>=26:` (numbers in
  [0, 9])."""
  ids = countdown_prompt_ids(tokenizer, numbers, target)
  target_text = "=" + str(int(target))
  return ids[:1 + len(numbers)] + list(tokenizer(target_text, add_special_tokens=False)["input_ids"]) + [ids[-1]]


# name -> (prompt encoding, policy vocabulary size): the readable character prompt keeps its old 42 tokens.
PROMPTS = {
    "characters": (character_prompt_ids, 42),
    "own_tokens": (own_token_prompt_ids, None),
    "policy": (countdown_prompt_ids, None),
    "policy_spaces": (spaced_prompt_ids, None),
    "policy_plain_target": (plain_target_prompt_ids, None),
}


def bookkeeping_positions(tokenizer, problems: list[dict[str, Any]], rows
                          ) -> list[tuple[int, int, list[int], int, float]]:
  """`(row, position, legal_ids, k, blind_share)` for the start of every number in the rows' responses:
  `position` is the input position whose next-token distribution predicts it, `legal_ids` the digit tokens
  still available there (in the prompt and not used up by the response's earlier numbers), `k` the number's
  index in the response, and `blind_share` the available share of a policy that copies a prompt number
  uniformly at random and keeps no count (the available numbers' multiplicity in the prompt over its size).
  `rows[r]` answers `problems[r // _PROBE_SPELLINGS]`; numbers must be in [1, 9]."""
  digit_ids = {d: tokenizer.convert_tokens_to_ids(str(d)) for d in _FIRST_DIGITS}
  positions = []
  for r, (ids, prompt_length) in enumerate(rows):
    numbers = [int(n) for n in problems[r // _PROBE_SPELLINGS]["numbers"]]
    if not all(n in _FIRST_DIGITS for n in numbers):
      raise ValueError(f"the bookkeeping probe needs numbers in [1, 9], got {numbers}")
    left = collections.Counter(numbers)
    k = 0
    for t in range(prompt_length, len(ids) - 1):  # the last id is <eos>
      text, before = tokenizer.convert_ids_to_tokens(ids[t]), tokenizer.convert_ids_to_tokens(ids[t - 1])
      if text.isdigit() and not before.isdigit():
        available = [d for d in _FIRST_DIGITS if left[d] > 0]
        blind_share = sum(numbers.count(d) for d in available) / len(numbers)
        positions.append((r, t - 1, [digit_ids[d] for d in available], k, blind_share))
        left[int(text)] -= 1
        k += 1
  return positions


def make_probe(graphdef, rest, tokenizer, problems, rows, max_len: int):
  """`(probe, blind_shares)`: `probe(params) -> (held-out loss, [P(available digit | digit 1-9) for the 1st,
  2nd, ... number])`, and the same shares for a policy that keeps no count (see `bookkeeping_positions`)."""
  batch = pad_sft_batch(rows, max_len, tokenizer.pad_token_id)
  positions = bookkeeping_positions(tokenizer, problems, rows)
  digit_ids = [tokenizer.convert_tokens_to_ids(str(d)) for d in _FIRST_DIGITS]

  @jax.jit
  def next_token_probs(params, tokens, mask):
    return jax.nn.softmax(nnx.merge(graphdef, params, rest)(tokens, mask), axis=-1)

  def probe(params):
    probs = np.asarray(next_token_probs(params, jnp.asarray(batch["tokens"][:, :-1]),
                                        jnp.asarray(batch["attention_mask"][:, :-1])))
    target = np.take_along_axis(probs, batch["tokens"][:, 1:, None], axis=-1)[..., 0]
    loss = -np.sum(np.log(target + 1e-9) * batch["loss_mask"]) / batch["loss_mask"].sum()
    shares = collections.defaultdict(list)
    for r, t, legal, k, _ in positions:
      shares[k].append(probs[r, t, legal].sum() / probs[r, t, digit_ids].sum())
    return float(loss), [float(np.mean(shares[k])) for k in sorted(shares)]

  blind = collections.defaultdict(list)
  for *_, k, blind_share in positions:
    blind[k].append(blind_share)
  return probe, [float(np.mean(blind[k])) for k in sorted(blind)]


def verdict_shares(model, tokenizer, problems, prompt_ids, *, max_new_tokens: int, seed: int) -> dict[str, float]:
  """Share of each `response_verdict` among `_EVAL_SAMPLES` samples (temperature 1) per problem."""
  out = generate(model, [prompt_ids(tokenizer, p["numbers"], p["target"]) for p in problems],
                 num_samples=_EVAL_SAMPLES, max_new_tokens=max_new_tokens, eos_ids=[tokenizer.eos_token_id],
                 rng=jax.random.key(seed), temperature=1.0, pad_id=tokenizer.pad_token_id)
  texts = decode_responses(tokenizer, np.asarray(out.tokens), out.mask, [tokenizer.eos_token_id],
                           group_size=_EVAL_SAMPLES)
  verdicts = collections.Counter(response_verdict(text, p["numbers"], p["target"])[0]
                                 for p, group in zip(problems, texts) for text in group)
  total = sum(verdicts.values())
  return {verdict: count / total for verdict, count in sorted(verdicts.items())}


def main(argv):
  del argv
  config = load_config(_CONFIG.value)
  seed = config.seed
  data = dict(config.task.data)
  builder = prepare_countdown(_DATA_DIR.value, **{**data, "target_range": tuple(data["target_range"])})
  train, test = ([decode_record(r) for r in builder.as_data_source(split)] for split in ("train", "test"))
  tokenizer = countdown_tokenizer()
  prompt_ids, vocab_size = PROMPTS[_PROMPT_NUMBERS.value]
  readable = _PROMPT_NUMBERS.value in ("characters", "own_tokens")
  max_len = _MAX_LEN.value or (64 if readable else config.task.sft.max_len)
  sft = SftConfig(**{**dict(config.task.sft), "steps": _STEPS.value, "seed": seed, "max_len": max_len,
                     "spellings_per_problem": _SPELLINGS.value})
  rows = sft_examples(train, np.random.default_rng(seed), spellings_per_problem=sft.spellings_per_problem,
                      tokenizer=tokenizer, prompt_ids=prompt_ids)
  probe_rows = sft_examples(test, np.random.default_rng(seed + 5), spellings_per_problem=_PROBE_SPELLINGS,
                            tokenizer=tokenizer, prompt_ids=prompt_ids)

  policy = dict(config.task.policy) | {"vocab_size": vocab_size or len(tokenizer)}
  model = init_model(policy_config(**policy), seed=seed)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  train_step, init_opt_state = make_sft_step(graphdef, sft)
  opt_state = init_opt_state(params)
  probe, blind_shares = make_probe(graphdef, rest, tokenizer, test, probe_rows, sft.max_len)
  draw = np.random.default_rng(seed + 1)

  def report(**fields):
    print(json.dumps(fields), flush=True)

  report(no_count_baseline=[round(s, 3) for s in blind_shares])
  loss, shares = probe(params)
  report(step=0, heldout_loss=round(loss, 4), p_available_by_number=[round(s, 3) for s in shares])
  started, losses = time.perf_counter(), []
  for step in range(1, sft.steps + 1):
    batch = pad_sft_batch([rows[i] for i in draw.integers(len(rows), size=sft.batch_size)], sft.max_len,
                          tokenizer.pad_token_id)
    params, opt_state, metrics = train_step(graphdef, params, rest, opt_state, batch)
    losses.append(float(metrics["loss"]))
    if step % _PROBE_EVERY.value == 0:
      loss, shares = probe(params)
      report(step=step, seconds=round(time.perf_counter() - started),
             train_loss=round(float(np.mean(losses[-_PROBE_EVERY.value:])), 4), heldout_loss=round(loss, 4),
             p_available_by_number=[round(s, 3) for s in shares])
    if step % _EVAL_EVERY.value == 0:
      shares = verdict_shares(nnx.merge(graphdef, params, rest), tokenizer, test, prompt_ids,
                              max_new_tokens=config.rl.max_new_tokens, seed=1)
      report(step=step, verdicts={verdict: round(share, 4) for verdict, share in shares.items()})


if __name__ == "__main__":
  app.run(main)
