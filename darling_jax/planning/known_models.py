"""The `config.json` of the checkpoints the paper's configs name, so a run can be planned without the weights.

`darling_jax.plan` reads a checkpoint's own `config.json` (or `.gguf` header) when the path exists; where it does
not (planning on a laptop before the weights are copied to the pod), the path's last component is looked up
here. Values are those of the public Hugging Face repositories (only the keys that shape the model).
"""

from __future__ import annotations

import copy
from typing import Any

_QWEN3_4B = dict(model_type="qwen3", vocab_size=151936, hidden_size=2560, intermediate_size=9728,
                 num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                 max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
                 bos_token_id=151643, eos_token_id=151643)
_LLAMA31_8B = dict(model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                   num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                   max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
                   rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                     original_max_position_embeddings=8192),
                   tie_word_embeddings=False, bos_token_id=128000, eos_token_id=[128001, 128008, 128009])

KNOWN_MODELS: dict[str, dict[str, Any]] = {
    # The paper's math policy (arXiv 2509.02534 §5) and its math pair classifier (Qwen3-Embedding-4B with a
    # two-label head: the official `dogtooth/qwen3-4b-emb-finetuned-step-70-hf`).
    "Qwen3-4B-Base": dict(_QWEN3_4B, architectures=["Qwen3ForCausalLM"]),
    "qwen3-4b-emb-finetuned-step-70-hf": dict(_QWEN3_4B, architectures=["Qwen3ForSequenceClassification"],
                                              vocab_size=151665, max_position_embeddings=40960, num_labels=2,
                                              pad_token_id=151643),
    # The paper's WildChat policy (§4), its reward model (Athene-RM-8B: Llama-3.1-8B with a one-value head) and
    # the NoveltyBench pair classifier (ModernBERT-base, `dogtooth/similarity-classifier-f168-hf`).
    "Llama-3.1-8B-Instruct": dict(_LLAMA31_8B, architectures=["LlamaForCausalLM"]),
    "Athene-RM-8B": dict(_LLAMA31_8B, architectures=["LlamaForSequenceClassification"], num_labels=1,
                         pad_token_id=128002),
    "similarity-classifier-f168-hf": dict(
        model_type="modernbert", architectures=["ModernBertForSequenceClassification"], vocab_size=50368,
        hidden_size=768, intermediate_size=1152, num_hidden_layers=22, num_attention_heads=12,
        global_attn_every_n_layers=3, local_attention=128, max_position_embeddings=8192,
        global_rope_theta=160000.0, local_rope_theta=10000.0, norm_eps=1e-5, classifier_pooling="mean",
        num_labels=2, pad_token_id=50283, cls_token_id=50281, sep_token_id=50282),
}


def known_model_config(name: str) -> dict[str, Any] | None:
  """A copy of the `config.json` dict of the checkpoint called `name` (a path's last component), or None."""
  config = KNOWN_MODELS.get(name)
  return copy.deepcopy(config) if config is not None else None
