"""`decode_responses`: sampled rows back to texts."""

import numpy as np

from darling_jax.sampling import decode_responses
from darling_jax.tasks.countdown.tokenizer import countdown_tokenizer


def test_decode_stops_at_eos_drops_specials_and_groups():
  tokenizer = countdown_tokenizer()
  ids = tokenizer(["3+4", "5*6", "7", "(1+2)*3"], add_special_tokens=False)["input_ids"]
  eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
  width = 9
  rows = [ids[0] + [eos, 7], ids[1] + [eos], ids[2] + [pad] + ids[2], ids[3] + [eos]]
  tokens = np.full((4, width), pad, np.int32)
  mask = np.zeros((4, width), np.int32)
  for r, row in enumerate(rows):
    tokens[r, :len(row)] = row
    # the sampler's mask: generated tokens up to and including the first EOS
    end = row.index(eos) + 1 if eos in row else len(row)
    mask[r, :end] = 1
  assert decode_responses(tokenizer, tokens, mask, [eos]) == ["3+4", "5*6", "77", "(1+2)*3"]
  assert decode_responses(tokenizer, tokens, mask, [eos], group_size=2) == [["3+4", "5*6"], ["77", "(1+2)*3"]]
