"""How steady is this machine? Per-call time distributions of work whose cost is fixed.

  python -m darling_jax.bench.machine [--seconds_per_probe 3] [--sft_steps 30]

On a shared or virtualised CPU the same computation can take very different times from call to call, and then
a loop's mean time says more about the machine than about the code. Each probe repeats one fixed piece of work
and prints the distribution of its per-call times:

  python loop:  a pure-Python loop of 2000 additions (no memory traffic, one thread). Calls far above the
                median mean the process was not running. The CPU time charged to the process during the probe
                tells where: a stall the guest kernel knows of (another process, reported steal time) is not
                charged; one below it (the hypervisor, unreported) is.
  copy N MB:    `np.copyto` of an N MB float32 array (one thread). Reported as GB/s; a low 10th percentile
                means memory bandwidth that collapses from time to time.
  dot:          a jitted f32 `[2016, 128] @ [128, 128]` (the Countdown policy's projection at 32 × 63 tokens),
                its operands cache-resident.
  SFT step:     the Countdown warm-start train step (`darling_jax.tasks.countdown.warm_start.make_sft_step`, 0.33M
                parameters, 32 rows × 64 tokens), the same batch every step.

For each probe: the fastest, median, 90th-percentile (slow) and slowest call, and `lost` = `1 − n·median / total`,
the share of the probe's wall time that its n calls took beyond n median calls.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

_SECONDS = flags.DEFINE_float("seconds_per_probe", 3.0, "Approximate wall time of each probe.")
_SFT_STEPS = flags.DEFINE_integer("sft_steps", 30, "Timed SFT steps (0 skips the probe).")


def _row(name: str, seconds: np.ndarray, *, unit: str = "ms", work: float | None = None) -> str:
  """A markdown row of per-call `seconds`: the fastest, median, 90th-percentile and slowest call, in ms (or,
  with `work`, as `work / seconds`: GB/s, GFLOP/s)."""
  lost = 1.0 - len(seconds) * np.median(seconds) / seconds.sum()
  stats = [seconds.min(), np.median(seconds), np.percentile(seconds, 90), seconds.max()]
  cells = [f"{1e3 * s:.3g}" if work is None else f"{work / s:.3g}" for s in stats]
  return f"| {name} | {unit} | {len(seconds)} | " + " | ".join(cells) + f" | {100 * lost:.0f}% |"


def _repeat(call, seconds: float, min_calls: int = 10) -> np.ndarray:
  """Per-call wall times of `call()` repeated for about `seconds` (at least `min_calls` times)."""
  times = []
  deadline = time.perf_counter() + seconds
  while len(times) < min_calls or time.perf_counter() < deadline:
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return np.asarray(times)


def _python_loop() -> int:
  total = 0
  for i in range(2000):
    total += i
  return total


def _sft_step_times(steps: int) -> np.ndarray:
  """Per-step times of the Countdown SFT step on one fixed batch (after one compiling call)."""
  from flax import nnx

  from darling_jax.models import init_model
  from darling_jax.tasks.countdown.tokenizer import countdown_tokenizer
  from darling_jax.tasks.countdown.warm_start import (SftConfig, make_sft_step, pad_sft_batch, policy_config,
                                                      sft_examples)

  tokenizer = countdown_tokenizer()
  config = SftConfig(batch_size=32, max_len=64)
  problems = [dict(numbers=[3, 5, 7, 2], target=26, solutions=["3*7+5", "(5+7)*2+2"])]
  rows = sft_examples(problems, np.random.default_rng(0), spellings_per_problem=config.batch_size, tokenizer=tokenizer)
  batch = pad_sft_batch(rows[:config.batch_size], config.max_len, tokenizer.pad_token_id)
  graphdef, params, rest = nnx.split(init_model(policy_config(), seed=0), nnx.Param, ...)
  step, init_opt_state = make_sft_step(graphdef, config)
  opt_state = init_opt_state(params)
  params, opt_state, metrics = step(graphdef, params, rest, opt_state, batch)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    params, opt_state, metrics = step(graphdef, params, rest, opt_state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  return np.asarray(times)


def main(argv):
  del argv
  seconds = _SECONDS.value
  print(f"devices: {jax.devices()}; jax {jax.__version__}")
  print("| probe | unit | calls | fastest call | median call | 90th-percentile call | slowest call | lost |")
  print("|---|---|---|---|---|---|---|---|")
  wall, cpu = time.perf_counter(), time.process_time()
  loop_times = _repeat(_python_loop, seconds)
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  print(_row("python loop (2000 adds)", loop_times), flush=True)
  for megabytes in (1, 16, 64, 256):
    source = np.ones(megabytes << 18, np.float32)
    target = np.empty_like(source)
    times = _repeat(lambda: np.copyto(target, source), seconds)
    print(_row(f"copy {megabytes} MB", times, unit="GB/s", work=2 * source.nbytes / 1e9), flush=True)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2016, 128)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(128, 128)), jnp.float32)
  dot = jax.jit(jnp.matmul)
  dot(x, w).block_until_ready()
  times = _repeat(lambda: dot(x, w).block_until_ready(), seconds)
  print(_row("dot [2016,128]@[128,128]", times), flush=True)
  print(_row("dot, as GFLOP/s", times, unit="GFLOP/s", work=2 * 2016 * 128 * 128 / 1e9), flush=True)
  if _SFT_STEPS.value:
    print(_row("Countdown SFT step (32×64)", _sft_step_times(_SFT_STEPS.value)), flush=True)
  # A stall the guest kernel sees (another process, steal time) is not charged to this process as CPU time.
  print(f"\npython loop: {cpu:.2f} s of CPU time charged to this process in {wall:.2f} s of wall time "
        f"({100 * cpu / wall:.0f}%)")


if __name__ == "__main__":
  app.run(main)
