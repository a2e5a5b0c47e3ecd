"""Prompt data: TF-free tensorflow-datasets builders (array_record, never downloading) read with grain.

  prepare_jsonl_prompts(data_dir, path, split="test")                     # a local JSONL prompt set
  prompt_loader(builder, split, batch_size=..., seed=...)                 # sharded, resumable batches
"""

from darling_jax.data.jsonl_prompts import (
    JsonlFormatError,
    JsonlPromptsBuilder,
    JsonlPromptsConfig,
    prepare_jsonl_prompts,
    read_jsonl_prompts,
)
from darling_jax.data.loader import (
    PromptSource,
    collate_records,
    decode_record,
    prepare_offline,
    prompt_loader,
    shard_bounds,
)

__all__ = [
    "JsonlFormatError",
    "JsonlPromptsBuilder",
    "JsonlPromptsConfig",
    "PromptSource",
    "collate_records",
    "decode_record",
    "prepare_jsonl_prompts",
    "prepare_offline",
    "prompt_loader",
    "read_jsonl_prompts",
    "shard_bounds",
]
