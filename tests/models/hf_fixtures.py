"""Tiny random transformers models (1–5M params, no downloads) used as parity references."""

from __future__ import annotations

import jax
import numpy as np
import torch
import transformers

TINY = dict(vocab_size=6144, hidden_size=128, intermediate_size=320, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=48, max_position_embeddings=256, rms_norm_eps=1e-5)  # 1.2-1.6M params

_CONFIG_CLASSES = {
    "llama": transformers.LlamaConfig,
    "qwen2": transformers.Qwen2Config,
    "qwen3": transformers.Qwen3Config,
}


def make_hf_model(model_type: str, seed: int = 0, **overrides) -> transformers.PreTrainedModel:
  """A randomly initialised HF causal LM with weights large enough that a mis-mapped tensor shows in logits."""
  kwargs = {**TINY, **overrides}
  config = _CONFIG_CLASSES[model_type](**kwargs)
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
  generator = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=generator)
      p.copy_(1.0 + 0.2 * noise if "norm" in name else 0.1 * noise)
  return model


def left_padded_batch(vocab_size: int, lengths: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """int32 `[B, T]` ids and mask, each row's `lengths[i]` real tokens right-aligned (left padding)."""
  rng = np.random.default_rng(seed)
  t = max(lengths)
  ids = np.zeros((len(lengths), t), np.int32)
  mask = np.zeros((len(lengths), t), np.int32)
  for i, n in enumerate(lengths):
    ids[i, t - n:] = rng.integers(1, vocab_size, n)
    mask[i, t - n:] = 1
  return ids, mask


def hf_logits(model, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """HF forward with positions counted over real tokens (as `generate` does with left padding)."""
  position_ids = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
  with torch.no_grad():
    out = model(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                position_ids=torch.tensor(position_ids, dtype=torch.long))
  return out.logits.float().numpy()


@jax.jit
def forward(model, ids, mask):
  """Our jitted uncached forward: float32 logits `[B, T, V]` (NNX modules are pytrees)."""
  return model(ids, mask)


def max_diff_on_valid(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
  return float(np.max(np.abs(a - b)[mask.astype(bool)]))
