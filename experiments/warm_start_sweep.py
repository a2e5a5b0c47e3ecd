"""What moves the Countdown warm start's pass@1? The supervised stage of `configs/default.py`, varied one setting
at a time, each variant scored the way the trainer scores the warm start.

Every variant starts from the default run's settings (`configs/default.py`: data, policy, SFT) and changes the
ones listed in `VARIANTS`. It trains a fresh policy with `darling_jax.tasks.countdown.warm_start.train_sft` (seed
`config.seed`), then samples `--num_samples` responses (temperature 1, the RL and evaluation temperature) for
each of the first `--num_problems` test problems of its own dataset and scores them with
`darling_jax.evaluation.evaluate_countdown`: pass@1, pass@k and the share of samples that are correct, miss the
target (`wrong_value`), use a number more often than the prompt holds it (`wrong_numbers`) or do not parse.
The datasets are generated in memory (`darling_jax.tasks.countdown.countdown_problems`), the same problems the builder
would write.

Command (from the repository root; about 15 minutes on 2 CPU cores for the default variants):

    python experiments/warm_start_sweep.py                                  # every variant but steps_2000
    python experiments/warm_start_sweep.py --variants=default,easier_data   # some

It prints one markdown row per variant as it finishes. Results: experiments/README.md.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import jax
import numpy as np
from absl import app, flags

from darling_jax.config_files import load_config
from darling_jax.tasks.countdown import countdown_problems
from darling_jax.tasks.countdown.builder import CountdownConfig
from darling_jax.tasks.countdown.evaluation import evaluate_countdown
from darling_jax.models import init_model
from darling_jax.sampling import decode_responses, generate
from darling_jax.tasks.countdown.tokenizer import countdown_tokenizer
from darling_jax.tasks.countdown.warm_start import SftConfig, countdown_prompt_ids, policy_config, train_sft

DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "default.py"

# name -> overrides of the default config's sections: {"data": {...}, "policy": {...}, "sft": {...}}.
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {},
    "steps_600": {"sft": {"steps": 600}},
    "lr_1e-2": {"sft": {"learning_rate": 1e-2}},
    "easier_data": {"data": {"target_range": (10, 20), "min_strategies": 4}},  # 6.2 strategies per test problem
    "steps_2000": {"sft": {"steps": 2000}},  # 16 min of SFT here: not in the default list
}
DEFAULT_VARIANTS = [name for name in VARIANTS if name != "steps_2000"]

_VARIANTS = flags.DEFINE_list("variants", DEFAULT_VARIANTS, f"Variants to run, from {list(VARIANTS)}.")
_NUM_PROBLEMS = flags.DEFINE_integer("num_problems", 100, "Test problems scored per variant.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 8, "Samples per test problem (temperature 1).")
_CONFIG = flags.DEFINE_string("config", str(DEFAULT_CONFIG), "The run config whose warm start is varied.")

_SCORE_BATCH = 50  # test problems sampled per `generate` call


def _score(model, tokenizer, problems: list[dict[str, Any]], *, num_samples: int, max_new_tokens: int,
           seed: int) -> dict[str, float]:
  """`evaluate_countdown` of `model` on `problems`, sampled at temperature 1 in batches of `_SCORE_BATCH`."""
  def sample_texts(batch):
    prompts = [countdown_prompt_ids(tokenizer, numbers, target)
               for numbers, target in zip(batch["numbers"], batch["target"])]
    out = generate(model, prompts, num_samples=num_samples, max_new_tokens=max_new_tokens,
                   eos_ids=[tokenizer.eos_token_id], rng=jax.random.fold_in(jax.random.key(seed), batch["index"]),
                   temperature=1.0, pad_id=tokenizer.pad_token_id)
    return decode_responses(tokenizer, out.tokens, out.mask, [tokenizer.eos_token_id], group_size=num_samples)

  batches = [{"index": start,
              **{key: [p[key] for p in problems[start:start + _SCORE_BATCH]]
                 for key in ("numbers", "target", "num_strategies")}}
             for start in range(0, len(problems), _SCORE_BATCH)]
  return evaluate_countdown(sample_texts, batches, num_samples=num_samples)


def variant_settings(config, overrides: dict[str, dict[str, Any]]):
  """`(CountdownConfig, DecoderConfig, SftConfig)` of `config` changed by `overrides` (checked, nothing run)."""
  unknown = set(overrides) - {"data", "policy", "sft"}
  if unknown:
    raise ValueError(f"variant overrides may change data, policy and sft, got {sorted(unknown)}")
  data = {**dict(config.task.data), **overrides.get("data", {})}
  data_config = CountdownConfig(**{**data, "target_range": tuple(data["target_range"])})
  policy = policy_config(**{**dict(config.task.policy), **overrides.get("policy", {})})
  sft = SftConfig(**{**dict(config.task.sft), **overrides.get("sft", {}), "seed": config.seed})
  return data_config, policy, sft


def run_variant(config, overrides: dict[str, dict[str, Any]], *, num_problems: int, num_samples: int
                ) -> dict[str, float]:
  """Trains the warm start of `config` changed by `overrides` and scores it (see the module docstring)."""
  data_config, policy, sft = variant_settings(config, overrides)
  problems = countdown_problems(data_config)
  if num_problems > len(problems["test"]):
    raise ValueError(f"--num_problems={num_problems} exceeds the {len(problems['test'])} test problems")
  tokenizer = countdown_tokenizer()
  model = init_model(policy, seed=config.seed)
  started = time.perf_counter()
  model, history = train_sft(model, tokenizer, problems["train"], sft, log=lambda line: None)
  seconds = time.perf_counter() - started
  metrics = _score(model, tokenizer, problems["test"][:num_problems], num_samples=num_samples,
                   max_new_tokens=config.rl.max_new_tokens, seed=config.seed)
  return {"sft_seconds": seconds, "sft_steps": sft.steps,
          "final_loss": float(np.mean([h["loss"] for h in history[-20:]])), **metrics}


def main(argv):
  del argv
  unknown = [name for name in _VARIANTS.value if name not in VARIANTS]
  if unknown:
    raise app.UsageError(f"unknown --variants {unknown}; choose from {list(VARIANTS)}")
  config = load_config(_CONFIG.value)
  for name in _VARIANTS.value:  # every variant's settings are checked before the first one trains
    variant_settings(config, VARIANTS[name])
  k = _NUM_SAMPLES.value
  print(f"| variant | changes | SFT steps | SFT s | final loss | pass@1 | pass@{k} | correct | wrong value "
        "| wrong numbers | unparseable |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for name in _VARIANTS.value:
    metrics = run_variant(config, VARIANTS[name], num_problems=_NUM_PROBLEMS.value, num_samples=k)
    changes = "; ".join(f"{section}.{key}={value}" for section, values in VARIANTS[name].items()
                        for key, value in values.items()) or "-"
    shares = " | ".join(f"{100 * metrics['responses/' + verdict]:.1f}%"
                        for verdict in ("correct", "wrong_value", "wrong_numbers", "unparseable"))
    print(f"| {name} | {changes} | {metrics['sft_steps']} | {metrics['sft_seconds']:.0f} | "
          f"{metrics['final_loss']:.3f} | {100 * metrics['pass@1']:.1f}% | {100 * metrics[f'pass@{k}']:.0f}% | "
          f"{shares} |", flush=True)


if __name__ == "__main__":
  app.run(main)
