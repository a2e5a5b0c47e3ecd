"""Accelerator figures: decode tokens/s against the HBM roofline and the GRPO update's MFU, in bfloat16.

  python -m darling_jax.bench.accelerator [--shapes smollm2,qwen3_0_6b] [--out results.jsonl] [--hf_peer]

Meant for a GPU or TPU host (on a CPU it runs, slowly: use `--small` there to check the script). Models are
randomly initialised at the real shapes (no downloads):

  smollm2:    SmolLM2-135M (Llama, V 49,152, E 576, I 1,536, L 30, H 9/3, d 64, tied embeddings)
  qwen3_0_6b: Qwen3-0.6B  (Qwen3, V 151,936, E 1,024, I 3,072, L 28, H 16/8, d 128, tied, q/k-norm)

Ceilings are measured in the same run on the same device: HBM bandwidth as a jitted elementwise `x * 2` over a
2 GiB bfloat16 array (bytes read + written per second), and the bfloat16 matmul rate as a jitted 8192³ product.
The datasheet peak (`--peak_tflops`, default the H100/H200 SXM dense bf16 989 TFLOP/s) is what MFU is quoted
against, as is customary; the measured matmul rate is printed beside it.

Decode (the sampler's `prefill` + `decode`, batch = prompts × samples = 8 × 8 = 64 rows, 128-token prompts,
`--new_tokens` sampled tokens per row, no EOS so every row decodes all of them; params and cache in bf16):
tokens/s = rows · N / decode time. The bytes a decode step must read are the weights (bf16) and the keys/values
it attends to: the prompts' cache once per prompt (the G samples read it as a shared prefix) and each row's
own cache, which the implementation reads in full (`max_new_tokens` slots, masked) every step. `% HBM` is
those bytes per step × steps / time against the measured bandwidth. With `--hf_peer` (needs torch +
transformers with CUDA), transformers' `generate` on the same shape, bf16, sdpa attention, is timed too.

Update (`grpo_update`: one optimizer step, AdamW, token-mean PPO-clip loss, no KL; float32 master weights,
bfloat16 compute, chunked LM head for the 151k vocabulary): model FLOPs as in `darling_jax.bench.update`
(6 × matmul weights × tokens + LM head on response tokens + attention), MFU = model FLOPs / time / peak.

One JSON line per measurement goes to stdout and to `--out`. With `--profile`, one more call of each measured
function runs under `jax.profiler.trace` and a `profile` line gives the device's busiest kernels (summed kernel
time by name, from the Perfetto trace's `/device:GPU:*` tracks) against the call's wall time.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import platform
import tempfile
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx

from darling_jax.bench.workloads import UpdateBatch, synthetic_batch, update_flops
from darling_jax.grpo.update import UpdateConfig, grpo_update, init_train_state, make_optimizer
from darling_jax.models import DecoderConfig, init_model
from darling_jax.sampling.sampler import decode, prefill

_SHAPES = flags.DEFINE_list("shapes", ["smollm2", "qwen3_0_6b"], "Model shapes to run.")
_OUT = flags.DEFINE_string("out", None, "Also append the JSON lines to this file.")
_SMALL = flags.DEFINE_bool("small", False, "Tiny sizes everywhere (checks the script on a CPU).")
_HF_PEER = flags.DEFINE_bool("hf_peer", False, "Also time transformers' generate (torch, same device kind).")
_NEW_TOKENS = flags.DEFINE_integer("new_tokens", 256, "Decoded tokens per row.")
_PEAK = flags.DEFINE_float("peak_tflops", 989.0, "Datasheet dense bf16 TFLOP/s that MFU is quoted against.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats (best reported).")
_PROFILE = flags.DEFINE_bool("profile", False, "Also profile one call of each measured function (device kernels).")

HF_SHAPES = {
    "smollm2": dict(model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
                    num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, head_dim=64,
                    tie_word_embeddings=True, rope_theta=100000.0, max_position_embeddings=8192),
    "qwen3_0_6b": dict(model_type="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                       num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                       tie_word_embeddings=True, rope_theta=1000000.0, max_position_embeddings=40960),
}
# Update batches: rows × (prompt + response) tokens, and the LM-head chunk (None: all response positions).
UPDATE_BATCHES = {"smollm2": (UpdateBatch(rows=64, prompt_len=128, response_len=512), None),
                  "qwen3_0_6b": (UpdateBatch(rows=32, prompt_len=128, response_len=512), 128)}
DECODE_PROMPTS, DECODE_SAMPLES, DECODE_PROMPT_LEN = 8, 8, 128

def emit(record: dict) -> None:
  line = json.dumps(record)
  print(line, flush=True)
  if _OUT.value:
    with open(_OUT.value, "a") as f:
      f.write(line + "\n")


def best_seconds(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return min(times)


def device_kernel_times(trace_dir: str, top: int = 25) -> dict:
  """The busiest device kernels of the Perfetto trace under `trace_dir`: `{"kernels": [[name, total ms, calls],
  ...], "device_ms": all kernels' total, "tracks": the trace's process names}` (device tracks: `/device:GPU:*`
  or `/device:TPU:*`)."""
  paths = glob.glob(os.path.join(trace_dir, "plugins", "profile", "*", "perfetto_trace.json.gz"))
  if not paths:
    return {"error": f"no perfetto_trace.json.gz under {trace_dir}"}
  with gzip.open(max(paths, key=os.path.getmtime)) as f:
    events = json.load(f)["traceEvents"]
  tracks = {e["pid"]: e["args"]["name"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"}
  device = {pid for pid, name in tracks.items() if name.startswith(("/device:GPU", "/device:TPU"))}
  totals, calls = collections.Counter(), collections.Counter()
  for e in events:
    if e.get("ph") == "X" and e.get("pid") in device:
      name = e.get("args", {}).get("hlo_op") or e["name"]
      totals[name] += e.get("dur", 0.0) / 1e3
      calls[name] += 1
  return {"kernels": [[name[:120], round(ms, 3), calls[name]] for name, ms in totals.most_common(top)],
          "device_ms": round(sum(totals.values()), 3), "tracks": sorted(set(tracks.values()))}


def profile_call(name: str, call) -> dict:
  """One `call()` under `jax.profiler.trace`: its wall ms and `device_kernel_times`."""
  with tempfile.TemporaryDirectory() as trace_dir:
    start = time.perf_counter()
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      jax.block_until_ready(call())
    wall_ms = 1e3 * (time.perf_counter() - start)
    return dict(kind="profile", of=name, wall_ms=round(wall_ms, 3), **device_kernel_times(trace_dir))


def ceilings(small: bool) -> dict:
  """Measured HBM bandwidth (GB/s, bytes read + written) and bf16 matmul TFLOP/s on the default device."""
  n = 2**20 if small else 2**30
  x = jnp.ones((n,), jnp.bfloat16)
  scale = jax.jit(lambda a: a * 2)
  scale(x).block_until_ready()
  copy_s = best_seconds(lambda: scale(x), 10)
  m = 512 if small else 8192
  a = jax.random.normal(jax.random.key(0), (m, m), jnp.bfloat16)
  matmul = jax.jit(lambda p, q: p @ q)
  matmul(a, a).block_until_ready()
  matmul_s = best_seconds(lambda: matmul(a, a), 10)
  return dict(hbm_gbs=round(2 * 2 * n / copy_s / 1e9, 1), matmul_tflops=round(2 * m**3 / matmul_s / 1e12, 1))


def shape_config(name: str, small: bool, **overrides) -> DecoderConfig:
  hf = dict(HF_SHAPES[name])
  if small:
    hf.update(vocab_size=1024, num_hidden_layers=2)
  return DecoderConfig.from_hf(hf, **overrides)


def kv_bytes_per_token(c: DecoderConfig) -> int:
  return c.num_layers * 2 * c.num_kv_heads * c.head_dim * jnp.dtype(c.dtype).itemsize


def run_decode(name: str, small: bool, new_tokens: int, hbm_gbs: float, repeats: int) -> dict:
  config = shape_config(name, small, dtype="bfloat16", param_dtype="bfloat16")
  model = init_model(config, seed=0)
  graphdef, state = nnx.split(model)
  rows = DECODE_PROMPTS * DECODE_SAMPLES
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(1, config.vocab_size, (DECODE_PROMPTS, DECODE_PROMPT_LEN)), jnp.int32)
  mask = jnp.ones_like(tokens)
  kw = dict(max_new_tokens=new_tokens, temperature=1.0, top_p=1.0, top_k=0, eos_ids=(config.vocab_size,),
            pad_id=0)

  def decode_seconds() -> float:
    prompt_cache, cache, logits = jax.block_until_ready(
        prefill(graphdef, state, tokens, mask, num_samples=DECODE_SAMPLES, max_new_tokens=new_tokens))
    start = time.perf_counter()
    jax.block_until_ready(decode(graphdef, state, prompt_cache, cache, logits, jax.random.key(1), **kw)[:3])
    return time.perf_counter() - start

  start = time.perf_counter()
  decode_seconds()
  compile_s = time.perf_counter() - start
  seconds = min(decode_seconds() for _ in range(repeats))
  if _PROFILE.value:
    prompt_cache, cache, logits = jax.block_until_ready(
        prefill(graphdef, state, tokens, mask, num_samples=DECODE_SAMPLES, max_new_tokens=new_tokens))
    emit(profile_call(f"decode {name}", lambda: decode(graphdef, state, prompt_cache, cache, logits,
                                                         jax.random.key(1), **kw)[:3]))
  steps = new_tokens - 1  # token 0 comes from the prefill's logits
  weight_bytes = config.num_params * 2
  kv = kv_bytes_per_token(config)
  step_bytes = weight_bytes + kv * (DECODE_PROMPTS * DECODE_PROMPT_LEN + rows * new_tokens)
  needed_bytes = weight_bytes + kv * (DECODE_PROMPTS * DECODE_PROMPT_LEN + rows * new_tokens / 2)
  return dict(kind="decode", shape=name, params_m=round(config.num_params / 1e6, 1), rows=rows,
              prompt_len=DECODE_PROMPT_LEN, new_tokens=new_tokens, compile_and_first_s=round(compile_s, 1),
              decode_s=round(seconds, 4), step_ms=round(1e3 * seconds / steps, 3),
              tokens_per_s=round(rows * new_tokens / seconds, 1),
              step_bytes_mb=round(step_bytes / 1e6, 1), achieved_gbs=round(step_bytes * steps / seconds / 1e9, 1),
              hbm_pct=round(100 * step_bytes * steps / seconds / 1e9 / hbm_gbs, 1),
              hbm_pct_needed_bytes=round(100 * needed_bytes * steps / seconds / 1e9 / hbm_gbs, 1))


def run_hf_decode(name: str, small: bool, new_tokens: int, repeats: int) -> dict:
  import torch
  import transformers
  hf = dict(HF_SHAPES[name])
  if small:
    hf.update(vocab_size=1024, num_hidden_layers=2)
  model_type = hf.pop("model_type")
  config_cls = {"llama": transformers.LlamaConfig, "qwen3": transformers.Qwen3Config}[model_type]
  model_cls = {"llama": transformers.LlamaForCausalLM, "qwen3": transformers.Qwen3ForCausalLM}[model_type]
  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.manual_seed(0)
  model = model_cls(config_cls(**hf, attn_implementation="sdpa")).to(device=device, dtype=torch.bfloat16).eval()
  rows = DECODE_PROMPTS * DECODE_SAMPLES
  rng = np.random.default_rng(0)
  ids = torch.tensor(np.repeat(rng.integers(1, hf["vocab_size"], (DECODE_PROMPTS, DECODE_PROMPT_LEN)),
                               DECODE_SAMPLES, axis=0), device=device)

  def generate(n):
    with torch.no_grad():
      model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0,
                     top_p=1.0, top_k=0, max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
    if device == "cuda":
      torch.cuda.synchronize()

  def seconds(n):
    start = time.perf_counter()
    generate(n)
    return time.perf_counter() - start

  generate(2)
  first = min(seconds(1) for _ in range(repeats))
  full = min(seconds(new_tokens) for _ in range(repeats))
  return dict(kind="decode_hf", shape=name, rows=rows, new_tokens=new_tokens, torch=torch.__version__,
              transformers=transformers.__version__, decode_s=round(full - first, 4),
              tokens_per_s=round(rows * (new_tokens - 1) / (full - first), 1))


def run_update(name: str, small: bool, repeats: int, peak_tflops: float, matmul_tflops: float) -> dict:
  batch_shape, chunk = UPDATE_BATCHES[name]
  if small:
    batch_shape = UpdateBatch(rows=4, prompt_len=16, response_len=32)
  config = shape_config(name, small, dtype="bfloat16", param_dtype="float32")
  update_config = UpdateConfig(num_minibatches=1, logprob_chunk_size=chunk)
  model = init_model(config, seed=0)
  graphdef = nnx.graphdef(model)
  state = init_train_state(model, make_optimizer(update_config), jax.random.key(0))
  del model
  batch = synthetic_batch(config.vocab_size, batch_shape)
  start = time.perf_counter()
  compiled = grpo_update.lower(graphdef, state, batch, config=update_config).compile()
  compile_s = time.perf_counter() - start
  stats = compiled.memory_analysis()
  state, metrics = jax.block_until_ready(compiled(state, batch))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    state, metrics = jax.block_until_ready(compiled(state, batch))
    times.append(time.perf_counter() - start)
  best = min(times)
  if _PROFILE.value:
    holder = {"state": state}

    def one_update():
      holder["state"], out = compiled(holder["state"], batch)
      return out
    emit(profile_call(f"update {name}", one_update))
    state = holder["state"]
  flops, _ = update_flops(config, batch_shape.rows, batch_shape.prompt_len, batch_shape.response_len)
  tokens = batch_shape.rows * (batch_shape.prompt_len + batch_shape.response_len)
  record = dict(kind="update", shape=name, params_m=round(config.num_params / 1e6, 1), rows=batch_shape.rows,
                prompt_len=batch_shape.prompt_len, response_len=batch_shape.response_len,
                logprob_chunk_size=chunk, compile_s=round(compile_s, 1), step_s=round(best, 4),
                tokens_per_s=round(tokens / best, 1), model_tflop=round(flops / 1e12, 3),
                tflops=round(flops / best / 1e12, 1), mfu_pct=round(100 * flops / best / 1e12 / peak_tflops, 1),
                pct_of_measured_matmul=round(100 * flops / best / 1e12 / matmul_tflops, 1),
                loss=round(float(metrics["loss"]), 5))
  if stats is not None:
    record["xla_temp_gib"] = round(stats.temp_size_in_bytes / 2**30, 2)
  return record


def main(argv):
  del argv
  small = _SMALL.value
  for name in _SHAPES.value:
    if name not in HF_SHAPES:
      raise app.UsageError(f"--shapes: unknown shape {name!r}; known: {sorted(HF_SHAPES)}")
  import flax
  emit(dict(kind="setup", devices=[str(d) for d in jax.devices()], jax=jax.__version__, flax=flax.__version__,
            python=platform.python_version(), small=small))
  c = ceilings(small)
  emit(dict(kind="ceilings", **c, peak_tflops_datasheet=_PEAK.value))
  new_tokens = 16 if small else _NEW_TOKENS.value
  for name in _SHAPES.value:
    steps = [("decode", lambda: run_decode(name, small, new_tokens, c["hbm_gbs"], _REPEATS.value)),
             ("update", lambda: run_update(name, small, _REPEATS.value, _PEAK.value, c["matmul_tflops"]))]
    if _HF_PEER.value:
      steps.append(("decode_hf", lambda: run_hf_decode(name, small, new_tokens, _REPEATS.value)))
    for kind, step in steps:
      try:
        emit(step())
      except Exception as e:  # report and go on: one failed measurement must not lose the others
        emit(dict(kind=kind, shape=name, error=f"{type(e).__name__}: {e}"[:2000],
                  traceback=traceback.format_exc()[-3000:]))


if __name__ == "__main__":
  app.run(main)
