"""Countdown as an RL task: prompt tokens, quality reward and ground-truth equivalence classes of responses.

    task = CountdownTask(countdown_tokenizer())
    ids = task.prompt_ids(batch)                 # B lists: <bos> + "<n3><n5><n7><n2><t2><t6>:"
    task.quality(texts, batch)                   # f32 [B, G]: 1 for an exact solution, else 0 (never eval-ed)
    task.oracle_classes(texts, batch)            # int32 [B, G]: same class iff the same strategy

`batch` is a loader batch (`darling_jax.data.prompt_loader` over the Countdown builder): `prompt` (B texts),
`numbers` int32 `[B, L]`, `target` int32 `[B]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from darling_jax.tasks.countdown import strategy_id
from darling_jax.tasks.countdown_sft import countdown_prompt_ids
from darling_jax.tasks.expression import ExpressionError, canonical_form, parse_expression


def response_key(response: str, numbers: Sequence[int], target: int) -> str:
  """A response's ground-truth meaning: its strategy if correct, else its own canonical form, else its text.

  Two responses are equivalent iff their keys are equal: spellings of one correct strategy share it, and so
  do spellings of one wrong expression; unparsable outputs are equal only when their stripped texts are.
  """
  strategy = strategy_id(response, numbers, target)
  if strategy is not None:
    return "strategy:" + strategy
  try:
    return "expression:" + canonical_form(parse_expression(response.strip()))
  except ExpressionError:
    return "text:" + response.strip()


def first_member_classes(keys: Sequence[str]) -> np.ndarray:
  """int32 `[G]`: each entry labelled by the index of the first entry with an equal key."""
  first: dict[str, int] = {}
  return np.asarray([first.setdefault(key, i) for i, key in enumerate(keys)], np.int32)


class CountdownTask:
  """The Countdown task for `darling_jax.train_step.TrainStep` (see the module docstring)."""

  def __init__(self, tokenizer):
    self.tokenizer = tokenizer

  def prompt_ids(self, batch: dict[str, Any]) -> list[list[int]]:
    return [countdown_prompt_ids(self.tokenizer, [int(x) for x in numbers], int(target))
            for numbers, target in zip(batch["numbers"], batch["target"])]

  def quality(self, texts: Sequence[Sequence[str]], batch: dict[str, Any]) -> np.ndarray:
    return np.asarray([[0.0 if strategy_id(text, numbers, target) is None else 1.0 for text in group]
                       for group, numbers, target in _problems(texts, batch)], np.float32)

  def oracle_classes(self, texts: Sequence[Sequence[str]], batch: dict[str, Any]) -> np.ndarray:
    return np.stack([first_member_classes([response_key(text, numbers, target) for text in group])
                     for group, numbers, target in _problems(texts, batch)])


def _problems(texts: Sequence[Sequence[str]], batch: dict[str, Any]):
  numbers, targets = np.asarray(batch["numbers"]), np.asarray(batch["target"])
  if len(texts) != len(targets):
    raise ValueError(f"{len(texts)} groups of responses for a batch of {len(targets)} problems")
  return [(group, [int(x) for x in row], int(target)) for group, row, target in zip(texts, numbers, targets)]
