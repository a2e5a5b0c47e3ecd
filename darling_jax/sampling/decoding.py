"""Sampled token rows back to response texts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def decode_responses(tokenizer, tokens, mask, eos_ids: Sequence[int], group_size: int | None = None
                     ) -> list[str] | list[list[str]]:
  """The response text of each sampled row: its masked-in tokens, without EOS and special tokens.

  Args:
    tokenizer: the policy's tokenizer (`batch_decode`).
    tokens, mask: int `[R, N]`, a `SampleOutput`'s `tokens` / `mask` (the mask ends at the first EOS).
    eos_ids: the token ids that end a response.
    group_size: None for a flat list of R texts; G for R / G lists of G texts (one per prompt).
  """
  tokens, mask = np.asarray(tokens), np.asarray(mask)
  keep = (mask > 0) & ~np.isin(tokens, np.asarray(eos_ids))
  texts = tokenizer.batch_decode([row[k].tolist() for row, k in zip(tokens, keep)], skip_special_tokens=True)
  if group_size is None:
    return texts
  return [texts[i:i + group_size] for i in range(0, len(texts), group_size)]
