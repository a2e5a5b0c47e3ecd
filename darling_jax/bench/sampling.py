"""Sampler throughput: ours vs transformers `generate` (torch CPU), same weights, prompts, batch and lengths.

  pip install -e '.[test]'   # torch==2.13.0 CPU + transformers: the reference
  python -m darling_jax.bench.sampling [--shapes tiny,smollm2] [--repeats 3]

For each shape, one run measures prefill and decode tokens/s of both implementations (KV cache on, sampling on
at T=1, top-p 1, no EOS so every row decodes all N tokens), their ratio, and our achieved GFLOP/s against a
jitted f32 matmul measured in the same run (the CPU's practical roofline). Numbers go to stdout. Each shape runs
in a fresh process, with our and HF's timed calls interleaved (best of `--repeats` each).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from darling_jax.models import load_pretrained
from darling_jax.sampling.sampler import decode, pad_prompts, prefill
from flax import nnx

_SHAPES = flags.DEFINE_list("shapes", ["tiny", "smollm2"], "Which shapes to run (tiny, smollm2).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats per measurement (best is reported).")


@dataclasses.dataclass(frozen=True)
class Shape:
  name: str
  hf_config: dict
  prompts: int      # B distinct prompts
  samples: int      # G samples each; batch = B * G
  prompt_len: int
  new_tokens: int


SHAPES = {
    "tiny": Shape("~4M params, batch 64", dict(vocab_size=4096, hidden_size=256, intermediate_size=688,
                                               num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                                               head_dim=64, tie_word_embeddings=True),
                  prompts=8, samples=8, prompt_len=64, new_tokens=64),
    "smollm2": Shape("SmolLM2-135M shape, batch 8", dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                                         num_hidden_layers=30, num_attention_heads=9,
                                                         num_key_value_heads=3, head_dim=64,
                                                         tie_word_embeddings=True),
                     prompts=1, samples=8, prompt_len=64, new_tokens=32),
}


def best_time(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def matmul_roofline_gflops(repeats: int, n: int = 1024) -> float:
  """GFLOP/s of a jitted f32 `[n, n] @ [n, n]` on this machine, now."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  return 2 * n**3 / best_time(lambda: matmul(a).block_until_ready(), max(repeats, 3) * 3) / 1e9


def decode_flops_per_token(config, context: int) -> float:
  """Matmul FLOPs of one decoded token: 2 × (layer weights + LM head) + attention over `context` keys."""
  c = config
  layer = c.hidden_size * c.head_dim * (2 * c.num_heads + 2 * c.num_kv_heads) + 3 * c.hidden_size * c.intermediate_size
  attention = 4 * c.num_heads * c.head_dim * context
  return c.num_layers * (2 * layer + attention) + 2 * c.hidden_size * c.vocab_size


def run_shape(shape: Shape, repeats: int, roofline: float) -> dict:
  import torch
  import transformers
  torch.manual_seed(0)
  hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**shape.hf_config)).eval()
  with tempfile.TemporaryDirectory() as tmp:
    hf.save_pretrained(tmp)
    model = load_pretrained(tmp)
  vocab = shape.hf_config["vocab_size"]
  rng = np.random.default_rng(0)
  prompts = rng.integers(1, vocab, (shape.prompts, shape.prompt_len)).tolist()
  batch, n = shape.prompts * shape.samples, shape.new_tokens
  no_eos = (vocab,)  # an id the model cannot emit: every row decodes exactly n tokens

  # ours: prefill once per prompt; its G rows decode against that cache (a shared prefix) in one while_loop.
  graphdef, state = nnx.split(model)
  tokens, mask = pad_prompts(prompts)
  run_prefill = lambda: prefill(graphdef, state, tokens, mask, num_samples=shape.samples, max_new_tokens=n)
  decode_kw = dict(max_new_tokens=n, temperature=1.0, top_p=1.0, top_k=0, eos_ids=no_eos, pad_id=0)

  def ours_decode_seconds() -> float:
    # decode donates the samples' cache: a fresh one per run
    prompt_cache, cache, logits = jax.block_until_ready(run_prefill())
    start = time.perf_counter()
    jax.block_until_ready(decode(graphdef, state, prompt_cache, cache, logits, jax.random.key(1), **decode_kw)[:3])
    return time.perf_counter() - start

  # transformers: the same B*G rows (generate expands each prompt G times and prefills every row).
  ids = torch.tensor(np.repeat(np.asarray(prompts), shape.samples, axis=0))
  attention = torch.ones_like(ids)

  def hf_generate(new_tokens):
    with torch.no_grad():
      hf.generate(input_ids=ids, attention_mask=attention, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                  max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=0, use_cache=True)

  ours_decode_seconds()  # compile both stages
  hf_generate(2)  # warm up
  # Interleaved, so that both see the same machine state; the best of `repeats` of each is kept.
  ours_prefill = ours_decode = hf_prefill = hf_all = float("inf")
  for _ in range(repeats):
    ours_prefill = min(ours_prefill, best_time(lambda: jax.block_until_ready(run_prefill()), 1))
    ours_decode = min(ours_decode, ours_decode_seconds())
    hf_prefill = min(hf_prefill, best_time(lambda: hf_generate(1), 1))
    hf_all = min(hf_all, best_time(lambda: hf_generate(n), 1))

  # ours decodes n tokens after prefill; HF's generate(n) - generate(1) is n - 1 decode steps.
  ours_decode_tps = batch * n / ours_decode
  hf_decode_tps = batch * (n - 1) / (hf_all - hf_prefill) if hf_all > hf_prefill else float("nan")
  prefill_tokens = batch * shape.prompt_len  # tokens of context built, as seen by the caller
  flops = decode_flops_per_token(model.config, shape.prompt_len + n // 2)
  return dict(shape=shape.name, params=f"{model.config.num_params / 1e6:.1f}M",
              ours_prefill=prefill_tokens / ours_prefill, hf_prefill=prefill_tokens / hf_prefill,
              ours_decode=ours_decode_tps, hf_decode=hf_decode_tps,
              decode_ratio=ours_decode_tps / hf_decode_tps, total_ratio=hf_all / (ours_prefill + ours_decode),
              gflops=ours_decode_tps * flops / 1e9, roofline=roofline)


def run_shape_in_fresh_process(shape: Shape, repeats: int, roofline: float) -> dict:
  """`run_shape` in a new interpreter: a shape measured after another in the same process inherits its malloc
  state (after the SmolLM2 shape, our tiny decode step took 4.6 instead of 3.7 ms, for the rest of the process)."""
  with multiprocessing.get_context("spawn").Pool(1) as pool:
    return pool.apply(run_shape, (shape, repeats, roofline))


def main(argv):
  del argv
  roofline = matmul_roofline_gflops(_REPEATS.value)
  print(f"jitted f32 1024^3 matmul: {roofline:.1f} GFLOP/s (roofline); devices: {jax.devices()}")
  header = ("shape", "params", "prefill tok/s ours", "prefill tok/s HF", "decode tok/s ours", "decode tok/s HF",
            "decode ratio", "end-to-end ratio", "decode GFLOP/s (% roofline)")
  print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
  for name in _SHAPES.value:
    if name not in SHAPES:
      raise app.UsageError(f"--shapes: unknown shape {name!r}; known: {sorted(SHAPES)}")
    r = run_shape_in_fresh_process(SHAPES[name], _REPEATS.value, roofline)
    print(f"| {r['shape']} | {r['params']} | {r['ours_prefill']:.0f} | {r['hf_prefill']:.0f} | "
          f"{r['ours_decode']:.0f} | {r['hf_decode']:.0f} | {r['decode_ratio']:.2f}× | {r['total_ratio']:.2f}× | "
          f"{r['gflops']:.1f} ({100 * r['gflops'] / roofline:.0f}%) |", flush=True)


if __name__ == "__main__":
  app.run(main)
