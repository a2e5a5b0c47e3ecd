"""Pair inputs for an equivalence classifier: `[CLS] a [SEP] b [SEP]`, as the official DARLING code feeds it.

The prompt is not part of the input. Each response is truncated to `(max_length - 3) // 2` tokens, so a pair
never exceeds `max_length`. For BERT-style models token_type_ids are 0 up to and including the first [SEP]
and 1 after it. Rows are right-padded with the tokenizer's pad id.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class PairFormat:
  """Special ids and length budget of pair inputs.

  cls_id / sep_id: ids put before, between and after the responses (Qwen3-Embedding uses `<|im_start|>` and
  `<|im_end|>`). pad_id: right padding. max_length: longest pair, specials included.
  """

  cls_id: int
  sep_id: int
  pad_id: int
  max_length: int = 512

  def __post_init__(self):
    if self.max_length < 3:
      raise ValueError(f"max_length must be >= 3 (room for [CLS] and two [SEP]), got {self.max_length}")

  @property
  def response_budget(self) -> int:
    """Tokens kept of each response."""
    return (self.max_length - 3) // 2

  @classmethod
  def from_tokenizer(cls, tokenizer, max_length: int = 512, *, cls_id: int | None = None,
                     sep_id: int | None = None) -> PairFormat:
    """Reads [CLS]/[SEP]/pad ids from a transformers tokenizer; pass ids for tokenizers without them."""
    cls_id = tokenizer.cls_token_id if cls_id is None else cls_id
    sep_id = tokenizer.sep_token_id if sep_id is None else sep_id
    for name, value in (("cls_id", cls_id), ("sep_id", sep_id)):
      if value is None:
        raise ValueError(f"tokenizer has no {name[:3]} token: pass {name}= explicitly")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else sep_id
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and limit < max_length:
      max_length = limit
    return cls(cls_id=int(cls_id), sep_id=int(sep_id), pad_id=int(pad_id), max_length=int(max_length))


def tokenize_responses(tokenizer, texts: Sequence[str], budget: int) -> list[list[int]]:
  """Token ids of each text, no special tokens, cut to its first `budget` tokens."""
  for i, text in enumerate(texts):
    if not isinstance(text, str):
      raise ValueError(f"response {i} is a {type(text).__name__}, not a string")
  if not texts:
    return []
  encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
  return [list(ids[:budget]) for ids in encoded]


def pair_ids(a: Sequence[int], b: Sequence[int], fmt: PairFormat) -> tuple[list[int], list[int]]:
  """`[CLS] a [SEP] b [SEP]` (each side cut to the budget) and its token_type_ids."""
  a, b = list(a[:fmt.response_budget]), list(b[:fmt.response_budget])
  ids = [fmt.cls_id, *a, fmt.sep_id, *b, fmt.sep_id]
  return ids, [0] * (len(a) + 2) + [1] * (len(b) + 1)


def pad_pairs(rows: Sequence[tuple[list[int], list[int]]], width: int,
              pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Right-pads `(ids, type_ids)` rows to `width` -> int32 input_ids, attention_mask, token_type_ids `[P, width]`."""
  ids = np.full((len(rows), width), pad_id, np.int32)
  mask = np.zeros((len(rows), width), np.int32)
  types = np.zeros((len(rows), width), np.int32)
  for r, (row_ids, row_types) in enumerate(rows):
    if len(row_ids) > width:
      raise ValueError(f"pair {r} has {len(row_ids)} tokens, more than the width {width}")
    ids[r, :len(row_ids)] = row_ids
    mask[r, :len(row_ids)] = 1
    types[r, :len(row_types)] = row_types
  return ids, mask, types


def pad_rows(rows: Sequence[Sequence[int]], width: int, pad_id: int, size: int) -> tuple[np.ndarray, np.ndarray]:
  """int32 `[size, width]` ids and mask; filler rows beyond `len(rows)` hold one real token (the pad id)."""
  ids = np.full((size, width), pad_id, np.int32)
  mask = np.zeros((size, width), np.int32)
  for r, row in enumerate(rows):
    ids[r, :len(row)] = row
    mask[r, :len(row)] = 1
  mask[len(rows):, 0] = 1
  return ids, mask
