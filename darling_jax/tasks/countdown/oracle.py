"""Countdown's ground truth of "the same response": strategies for correct expressions, canonical forms otherwise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from darling_jax.tasks.countdown.expression import ExpressionError, canonical_form, parse_expression
from darling_jax.tasks.countdown.problems import strategy_id


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
