"""GRPO update throughput: tokens/s, achieved GFLOP/s vs the same-run matmul roofline, and peak memory.

  python -m darling_jax.bench.update [--shapes smollm2,tiny] [--repeats 3] [--remat off,on] [--microbatch_size M]
                                    [--rows smollm2=2,tiny=16]   # smaller batches on a slow / shared CPU

For each shape (the `darling_jax.bench.sampling` model shapes, randomly initialised: no downloads) and each
`remat` setting, one `grpo_update` call (num_minibatches=1, AdamW, token-mean loss, no KL / reference model) on a
synthetic `RolloutBatch` is compiled, run once more as a warm-up, then timed `--repeats` times (the state is
donated, so it is threaded from call to call; each call blocks on its outputs; the best time is reported):

  smollm2: SmolLM2-135M shape, 8 rows × (64 prompt + 192 response) tokens
  tiny:    ~4M params,         64 rows × (32 prompt +  96 response) tokens

Masks are all ones (every slot is a real token): the update's compute is dense, so masking would not change it.

Training FLOPs (model FLOPs: matmuls only, rematerialised forwards not counted), for R rows of T = P + N tokens:

  FLOPs = 6 · P_trunk · R·T  +  6 · V·E · R·N  +  12 · L · H · d_head · R · T²

  P_trunk = L · (E · d_head · (2H + 2H_kv) + 3 · E · I)   the layers' matmul weights (norms and biases omitted)

Each weight costs 2 FLOPs per token in the forward (2·P·T) and 4 in the backward (input and weight gradients,
4·P·T): 6·P·T in all. The LM head (V·E, tied to the embedding table) is applied to the N response positions
only (`response_logprobs` never forms the prompt's logits); the embedding lookup is a gather, not a matmul.
Attention's score and value matmuls cost 4 · H · d_head · T per query token and layer in the forward (the
implementation computes the full masked T×T scores), ×3 with the backward. With remat the hardware recomputes
each layer's forward in the backward (+2·P_trunk·R·T + 4·L·H·d_head·R·T²); that is reported as `hw_gflops` in
the JSON lines, while the table's GFLOP/s and % roofline use the model FLOPs above.

The roofline is a jitted f32 1024³ matmul (`sampling.matmul_roofline_gflops`), measured right before each
configuration so both see the same machine load. Peak memory is the compiled executable's `memory_analysis()`
(arguments + outputs − donated aliases + temporaries: XLA's static peak) and, as a cross-check, the process RSS
high-water mark (`resource.getrusage`) during the timed calls, reset per phase through `/proc/self/clear_refs`
on Linux. Prints a markdown table, then one JSON line per row.

Page faults: XLA:CPU allocates a call's temporaries afresh each call (5 GiB for the SmolLM2 shape). glibc serves
allocations that large with `mmap`, and the kernel faults them in one 4 KiB page at a time: 1.4M page faults and
~3.5 s of system time per SmolLM2-shape call on the 2-core machine. With `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`
(glibc ≥ 2.35, transparent huge pages in `madvise` or `always` mode) malloc asks for 2 MiB pages instead; the
same call then takes ~5k faults. The first line printed says whether it is set.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import resource
import time

import jax
import numpy as np
from absl import app, flags

from darling_jax.bench.sampling import _REPEATS, _SHAPES, SHAPES, matmul_roofline_gflops
from darling_jax.bench.workloads import UpdateBatch, check_choices, compile_update, update_flops, xla_memory_mib
from darling_jax.grpo.update import UpdateConfig
from darling_jax.models import DecoderConfig

# --shapes and --repeats are the flags of darling_jax.bench.sampling (absl flags are process-global).
_REMAT = flags.DEFINE_list("remat", ["off", "on"], "Remat settings to run (off, on).")
_MICROBATCH = flags.DEFINE_integer("microbatch_size", None, "Rows per gradient microbatch (default: the whole batch).")
_ROWS = flags.DEFINE_list("rows", [], "Per-shape row overrides, e.g. smollm2=2,tiny=16 (default: UPDATE_BATCHES).")



# Update batches of the sampling benchmark's model shapes (rows = B*G samples of one rollout batch).
UPDATE_BATCHES = {"smollm2": UpdateBatch(rows=8, prompt_len=64, response_len=192),
                  "tiny": UpdateBatch(rows=64, prompt_len=32, response_len=96)}


def decoder_config(name: str, remat: bool) -> DecoderConfig:
  """The `bench.sampling` shape `name` as an f32 Llama `DecoderConfig`."""
  return DecoderConfig.from_hf(dict(SHAPES[name].hf_config, model_type="llama"), remat=remat)


def _reset_peak_rss() -> bool:
  """Resets the process RSS high-water mark (Linux >= 4.0); False where unsupported."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def _peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_config(name: str, remat: bool, repeats: int, microbatch_size: int | None, rows: int | None) -> dict:
  batch_shape = UPDATE_BATCHES[name]
  if rows is not None:
    batch_shape = dataclasses.replace(batch_shape, rows=rows)
  config = decoder_config(name, remat)
  update_config = UpdateConfig(num_minibatches=1, microbatch_size=microbatch_size)
  _, microbatches = update_config.minibatch_layout(batch_shape.rows)
  gc.collect()
  roofline = matmul_roofline_gflops(repeats)
  rss_resettable = _reset_peak_rss()

  compiled, state, batch, compile_s = compile_update(config, batch_shape, update_config)
  memory = xla_memory_mib(compiled)
  compile_rss = _peak_rss_mib()

  state, metrics = jax.block_until_ready(compiled(state, batch))  # warm-up
  _reset_peak_rss()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    state, metrics = jax.block_until_ready(compiled(state, batch))
    times.append(time.perf_counter() - start)
  run_rss = _peak_rss_mib()
  loss = float(metrics["loss"])
  del state, metrics, compiled

  best = min(times)
  model_flops, recompute_flops = update_flops(config, batch_shape.rows, batch_shape.prompt_len,
                                              batch_shape.response_len)
  hw_flops = model_flops + (recompute_flops if remat else 0.0)
  response_tokens = batch_shape.rows * batch_shape.response_len
  total_tokens = batch_shape.rows * (batch_shape.prompt_len + batch_shape.response_len)
  result = dict(
      shape=name, params_m=round(config.num_params / 1e6, 1), remat=remat, rows=batch_shape.rows,
      prompt_len=batch_shape.prompt_len, response_len=batch_shape.response_len, microbatches=microbatches,
      compile_s=round(compile_s, 2), step_s_best=round(best, 4), step_s_median=round(float(np.median(times)), 4),
      response_tok_s=round(response_tokens / best, 1), total_tok_s=round(total_tokens / best, 1),
      model_gflop=round(model_flops / 1e9, 2), gflops=round(model_flops / best / 1e9, 2),
      hw_gflops=round(hw_flops / best / 1e9, 2), roofline_gflops=round(roofline, 2),
      roofline_pct=round(100 * model_flops / best / 1e9 / roofline, 1), loss=round(loss, 5))
  result.update(memory)
  result.update(rss_peak_run_mib=round(run_rss, 1), rss_peak_compile_mib=round(compile_rss, 1),
                rss_resettable=rss_resettable)
  return result


def _table_row(r: dict) -> str:
  mem = (f"{r['mem_peak_mib']:.0f} ({r['mem_temp_mib']:.0f})" if "mem_peak_mib" in r else "n/a")
  return (f"| {r['shape']} | {r['params_m']}M | {'on' if r['remat'] else 'off'} | "
          f"{r['rows']}×({r['prompt_len']}+{r['response_len']}) | {r['microbatches']} | {r['compile_s']:.1f} | "
          f"{r['step_s_best']:.3f} | {r['response_tok_s']:.0f} | {r['total_tok_s']:.0f} | {r['gflops']:.1f} | "
          f"{r['roofline_gflops']:.1f} | {r['roofline_pct']:.0f}% | {mem} | {r['rss_peak_run_mib']:.0f} |")


def main(argv):
  del argv
  check_choices("shapes", _SHAPES.value, UPDATE_BATCHES)
  check_choices("remat", _REMAT.value, ("off", "on"))
  try:
    rows = {name: int(count) for name, count in (item.split("=") for item in _ROWS.value)}
  except ValueError as e:
    raise app.UsageError(f"--rows: expected shape=rows items, got {_ROWS.value}") from e
  print(f"devices: {jax.devices()}; repeats: {_REPEATS.value} (best reported); roofline: jitted f32 1024^3 matmul "
        f"measured before each row; GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}", flush=True)
  header = ("shape", "params", "remat", "batch", "microbatches", "compile s", "step s", "response tok/s",
            "total tok/s", "GFLOP/s", "roofline GFLOP/s", "% roofline", "XLA peak MiB (temp)", "RSS peak MiB")
  results = []
  for name in _SHAPES.value:
    for remat in _REMAT.value:
      results.append(run_config(name, remat == "on", _REPEATS.value, _MICROBATCH.value, rows.get(name)))
      print(json.dumps(results[-1]), flush=True)
  print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
  for r in results:
    print(_table_row(r))


if __name__ == "__main__":
  app.run(main)
