"""Pair-classifier training throughput: the BERT cross-encoder step of `darling_jax.equivalence.training`
against the same-run matmul roofline.

  python -m darling_jax.bench.pair_training [--rows 16] [--width 258] [--repeats 3] [--frozen bert.embeddings]

The model has all-MiniLM-L6-v2's shape (22.7M parameters: 6 layers, hidden 384, 12 heads, feed-forward 1536,
30,522-token vocabulary), randomly initialised (no download). One `make_train_step` call (class-weighted
cross-entropy, AdamW, clipping; embeddings frozen as `--method finetune` of the NoveltyBench experiment does)
on `--rows` × `--width` tokens (the recipe's 16 pairs of up to 258 tokens) is compiled, warmed up, then timed
`--repeats` times; the median and best are reported.

Training FLOPs (matmuls only), for R rows of T tokens, E hidden, I feed-forward, L layers:

  FLOPs = 6 · L · (4·E² + 2·E·I) · R·T  +  12 · L · E · R · T²

Each layer weight costs 2 FLOPs per token forward and 4 backward; attention's score and value matmuls cost
4·E·T per token and layer forward, ×3 with the backward. The pooler and the 2-way head are negligible.
The roofline is a jitted f32 1024³ matmul (`sampling.matmul_roofline_gflops`) measured in the same run.
The command re-executes itself with huge-page malloc (`darling_jax.runtime`); `DARLING_HUGE_PAGES=0` measures
without it. The first line printed says which.
"""

from __future__ import annotations

if __name__ == "__main__":  # huge-page malloc for XLA's per-call temporaries (darling_jax.runtime), before imports
  from darling_jax import runtime
  runtime.reexec_with_huge_pages()

import json
import os
import time

import jax
import numpy as np
from absl import app, flags

from darling_jax import runtime
from darling_jax.bench.sampling import _REPEATS, matmul_roofline_gflops  # --repeats (timed steps)
from darling_jax.classifiers import BertClassifierConfig, init_classifier
from darling_jax.equivalence.training import TrainConfig, make_train_step, split_trainable

_ROWS = flags.DEFINE_integer("rows", 16, "Pairs per step.")
_WIDTH = flags.DEFINE_integer("width", 258, "Tokens per pair (all real: the step's compute is dense).")
_FROZEN = flags.DEFINE_list("frozen", ["bert.embeddings"], "Parameter path prefixes kept frozen.")

MINILM = dict(vocab_size=30522, hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536,
              max_position_embeddings=512, num_labels=2)


def training_flops(c: BertClassifierConfig, rows: int, width: int) -> float:
  """Model FLOPs of one training step (see the module docstring)."""
  e, i, layers = c.hidden_size, c.intermediate_size, c.num_layers
  return 6.0 * layers * (4 * e * e + 2 * e * i) * rows * width + 12.0 * layers * e * rows * width ** 2


def run(rows: int, width: int, repeats: int, frozen: tuple[str, ...]) -> dict:
  config = BertClassifierConfig(**MINILM)
  model = init_classifier(config, seed=0)
  train_config = TrainConfig(max_length=max(width, 16), batch_size=rows, epochs=1, frozen=frozen)
  graphdef, trainable, frozen_state = split_trainable(model, frozen)
  train_step, init_opt_state, _ = make_train_step(graphdef, train_config, 1000)
  rng = np.random.default_rng(0)
  batch = {"input_ids": rng.integers(1000, config.vocab_size, (rows, width)).astype(np.int32),
           "attention_mask": np.ones((rows, width), np.int32),
           "token_type_ids": (np.arange(width)[None] >= width // 2).repeat(rows, 0).astype(np.int32),
           "labels": (np.arange(rows) % 2).astype(np.int32), "weights": np.ones(rows, np.float32)}
  state, opt_state = (trainable, frozen_state), init_opt_state(trainable)
  started = time.perf_counter()
  state, opt_state, metrics = train_step(graphdef, state, opt_state, batch)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - started
  state, opt_state, metrics = train_step(graphdef, state, opt_state, batch)  # warm-up
  jax.block_until_ready(metrics)
  roofline = matmul_roofline_gflops(3)
  times = []
  for _ in range(repeats):
    started = time.perf_counter()
    state, opt_state, metrics = train_step(graphdef, state, opt_state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - started)
  flops = training_flops(config, rows, width)
  median, best = float(np.median(times)), float(np.min(times))
  return dict(rows=rows, width=width, frozen=list(frozen), compile_s=round(compile_s, 2),
              step_s_median=round(median, 4), step_s_best=round(best, 4), steps_per_s=round(1 / median, 3),
              model_gflop=round(flops / 1e9, 2), gflops=round(flops / median / 1e9, 1),
              roofline_gflops=round(roofline, 1), roofline_pct=round(100 * flops / median / 1e9 / roofline, 1),
              loss=round(float(metrics["loss"]), 5))


def main(argv):
  del argv
  print(f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r} (huge-page malloc "
        f"{'on' if runtime.huge_pages_malloc_active() else 'off'}; DARLING_HUGE_PAGES=0 runs without it)")
  result = run(_ROWS.value, _WIDTH.value, _REPEATS.value, tuple(_FROZEN.value))
  print("| rows × width | step s (median) | steps/s | GFLOP/s | roofline GFLOP/s | % roofline | compile s |")
  print("|---|---|---|---|---|---|---|")
  print(f"| {result['rows']}×{result['width']} | {result['step_s_median']:.3f} | {result['steps_per_s']:.2f} | "
        f"{result['gflops']:.0f} | {result['roofline_gflops']:.0f} | {result['roofline_pct']:.0f}% | "
        f"{result['compile_s']:.1f} |")
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
