"""llama.cpp GGUF checkpoints (Llama architecture): config from metadata, dequantized tensors by HF name.

llama.cpp's converter stores `attn_q` / `attn_k` RoPE-permuted (interleaved pairs); we undo that so the
weights match the rotate-half convention of the HF model.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from gguf.quants import dequantize

from darling_jax.models.config import DecoderConfig, RopeConfig
from darling_jax.models.gguf_metadata import GGUFTensorInfo, gguf_header
from darling_jax.models.tensor_sources import ArraySource

_LAYER_TENSORS = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_TENSORS = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def gguf_config(metadata: dict[str, Any], tensor_names: set[str], path: str) -> DecoderConfig:
  """DecoderConfig from GGUF metadata (`llama.*` keys)."""
  arch = metadata.get("general.architecture")
  if arch != "llama":
    raise ValueError(f"{path}: GGUF architecture {arch!r} is not supported (only 'llama')")

  def get(key, default=None):
    value = metadata.get(f"llama.{key}", default)
    if value is None:
      raise ValueError(f"{path}: GGUF metadata key 'llama.{key}' is missing")
    return value

  if metadata.get("llama.rope.scaling.type") not in (None, "none"):
    raise ValueError(f"{path}: GGUF rope scaling {metadata['llama.rope.scaling.type']!r} is not supported")
  hidden, heads = int(get("embedding_length")), int(get("attention.head_count"))
  tokens = metadata.get("tokenizer.ggml.tokens")
  vocab = int(metadata.get("llama.vocab_size") or (len(tokens) if tokens is not None else get("vocab_size")))
  return DecoderConfig(
      vocab_size=vocab,
      hidden_size=hidden,
      intermediate_size=int(get("feed_forward_length")),
      num_layers=int(get("block_count")),
      num_heads=heads,
      num_kv_heads=int(get("attention.head_count_kv", heads)),
      head_dim=int(get("attention.key_length", hidden // heads)),
      max_position_embeddings=int(get("context_length", 2048)),
      rms_norm_eps=float(get("attention.layer_norm_rms_epsilon")),
      rope=RopeConfig(theta=float(get("rope.freq_base", 10000.0))),
      tie_word_embeddings="output.weight" not in tensor_names,
      model_type="llama",
      bos_token_id=metadata.get("tokenizer.ggml.bos_token_id"),
      eos_token_id=metadata.get("tokenizer.ggml.eos_token_id"),
      pad_token_id=metadata.get("tokenizer.ggml.padding_token_id"),
  )


def unpermute_rope(weight: np.ndarray, num_heads: int) -> np.ndarray:
  """Inverse of llama.cpp's `permute`: `[H*D, in]` interleaved-pair rows -> rotate-half rows."""
  half = weight.shape[0] // num_heads // 2
  return weight.reshape(num_heads, half, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def hf_name_for_gguf(name: str, path: str) -> str:
  match = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", name)
  if match and match.group(2) in _LAYER_TENSORS:
    return f"model.layers.{match.group(1)}.{_LAYER_TENSORS[match.group(2)]}.weight"
  match = re.fullmatch(r"(\w+)\.weight", name)
  if match and match.group(1) in _GLOBAL_TENSORS:
    return f"{_GLOBAL_TENSORS[match.group(1)]}.weight"
  raise ValueError(f"{path}: GGUF tensor {name!r} is not supported for the llama architecture")


def read_gguf(path: str) -> tuple[DecoderConfig, ArraySource]:
  """Config and float32 tensors (dequantized, RoPE-unpermuted, HF names and layout) of a GGUF file."""
  header = gguf_header(path)
  if header.byte_order != "<":
    raise ValueError(f"{path}: big-endian GGUF tensor data is not supported")
  config = gguf_config(header.metadata, {t.name for t in header.tensors}, path)
  data = np.memmap(path, dtype=np.uint8, mode="r")
  arrays = {}
  for tensor in header.tensors:
    name = hf_name_for_gguf(tensor.name, path)
    weight = dequantize_tensor(data, tensor, path)
    if name.endswith("q_proj.weight"):
      weight = unpermute_rope(weight, config.num_heads)
    elif name.endswith("k_proj.weight"):
      weight = unpermute_rope(weight, config.num_kv_heads)
    arrays[name] = weight
  return config, ArraySource(arrays)


def dequantize_tensor(data: np.memmap, tensor: GGUFTensorInfo, path: str) -> np.ndarray:
  """float32 `tensor.shape` values of one tensor, decoded by `gguf.quants.dequantize` from the file's bytes."""
  raw = data[tensor.offset:tensor.offset + tensor.nbytes]
  try:
    values = dequantize(raw, tensor.ggml_type)
  except NotImplementedError:
    raise ValueError(f"{path}: tensor {tensor.name!r} is stored as {tensor.ggml_type.name}, which gguf cannot "
                     "dequantize") from None
  return np.array(values, dtype=np.float32).reshape(tensor.shape)  # a copy: nothing keeps the map open
