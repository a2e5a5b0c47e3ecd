"""The Countdown task: reach a target with + - * over a multiset of small integers.

A problem is a list of numbers and a target. A response is one arithmetic expression (grammar in
`darling_jax.tasks.countdown.expression`): the whole response, stripped of surrounding whitespace, must be the
expression; any other text makes it malformed. It may use each number at most as often as it appears in the
problem and need not use all of them. Its quality is 1 when it evaluates exactly to the target, else 0. Two
correct responses are the same strategy iff their canonical forms are equal.
"""

from __future__ import annotations

import collections
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from darling_jax.tasks.countdown.expression import (
    MAX_LITERAL_DIGITS,
    ExpressionError,
    SignedForm,
    combine_forms,
    evaluate,
    number_form,
    parse_expression,
    render_canonical,
    signed_form,
    used_numbers,
)

MAX_ENUMERATION_NUMBERS = 6
_MAX_NUMBER = 10**MAX_LITERAL_DIGITS - 1
_MAX_GENERATION_ATTEMPTS = 10_000


def checked_int(value: Any, name: str) -> int:
  """`value` as an int (any integer type but bool), else a ValueError naming `name`."""
  if isinstance(value, bool):
    raise ValueError(f"{name} must be an int, got {value!r}")
  try:
    return operator.index(value)
  except TypeError:
    raise ValueError(f"{name} must be an int, got {value!r}") from None


def _check_numbers(numbers: Sequence[int]) -> list[int]:
  if isinstance(numbers, (str, bytes)) or not isinstance(numbers, (Sequence, np.ndarray)):
    raise ValueError(f"numbers must be a sequence of ints, got {numbers!r}")
  checked = [checked_int(number, "each number") for number in numbers]
  if not checked:
    raise ValueError("numbers must not be empty")
  bad = [number for number in checked if not 0 <= number <= _MAX_NUMBER]
  if bad:
    raise ValueError(f"numbers must lie in [0, {_MAX_NUMBER}] (writable as literals), got {bad[0]} in {checked}")
  return checked


def check_prompt_numbers(numbers: Sequence[int], target: int) -> tuple[list[int], int]:
  """`(numbers, target)` as Python ints; a clear `ValueError` for numbers outside [0, 999999] or non-ints."""
  return _check_numbers(numbers), checked_int(target, "target")


def format_prompt(numbers: Sequence[int], target: int) -> str:
  """The readable prompt (the datasets' `prompt` field), e.g. `"Numbers: 3 5 7 2 Target: 26 Expression:"`.
  The policy reads a compact token form of it (`darling_jax.tasks.countdown.warm_start.format_policy_prompt`)."""
  numbers, target = check_prompt_numbers(numbers, target)
  return f"Numbers: {' '.join(str(number) for number in numbers)} Target: {target} Expression:"


RESPONSE_VERDICTS = ("correct", "wrong_value", "wrong_numbers", "unparseable")


def response_verdict(response: str, numbers: Sequence[int], target: int) -> tuple[str, str | None]:
  """What is right or wrong with a response: `(verdict, canonical form of a correct response or None)`.

  Verdicts (`RESPONSE_VERDICTS`), checked in this order:
    * `"unparseable"`: the whole response, stripped of surrounding whitespace, is not an expression;
    * `"wrong_numbers"`: it uses a number more often than `numbers` holds it (or one not in `numbers`);
    * `"wrong_value"`: it uses the numbers correctly but does not evaluate to `target`;
    * `"correct"`.

  Raises:
    TypeError: `response` is not a string.
    ValueError: `numbers` or `target` is invalid (never for anything in `response`).
  """
  numbers = _check_numbers(numbers)
  target = checked_int(target, "target")
  if not isinstance(response, str):
    raise TypeError(f"response must be a str, got {type(response).__name__}")
  try:
    expr = parse_expression(response.strip())
  except ExpressionError:
    return "unparseable", None
  if collections.Counter(used_numbers(expr)) - collections.Counter(numbers):
    return "wrong_numbers", None
  if evaluate(expr) != target:
    return "wrong_value", None
  return "correct", render_canonical(signed_form(expr))


def strategy_id(response: str, numbers: Sequence[int], target: int) -> str | None:
  """The canonical form of a correct response, None for a wrong or malformed one.

  A response is correct when the whole of it, stripped of surrounding whitespace, parses as an expression that
  uses each number at most as often as `numbers` holds it and evaluates exactly to `target` (see
  `response_verdict`).

  Raises:
    TypeError: `response` is not a string.
    ValueError: `numbers` or `target` is invalid (never for anything in `response`).
  """
  return response_verdict(response, numbers, target)[1]


def score_response(response: str, numbers: Sequence[int], target: int) -> float:
  """1.0 for a correct response (see `strategy_id`), else 0.0.

  Nothing in `response` raises: malformed, wrong or over-long output scores 0.0. Only a non-string `response`
  (TypeError) or invalid `numbers` / `target` (ValueError) raise.
  """
  return 0.0 if strategy_id(response, numbers, target) is None else 1.0


class _Candidate:
  """One strategy over a sub-multiset of the numbers: its signed normal form and a readable spelling."""

  __slots__ = ("signed", "value", "text", "is_sum", "non_negative")

  def __init__(self, signed: SignedForm, text: str, is_sum: bool, non_negative: bool):
    self.signed = signed
    self.value = signed[0] * signed[1].value
    self.text = text
    self.is_sum = is_sum
    self.non_negative = non_negative  # every intermediate value of `text` is >= 0

  @property
  def key(self) -> tuple[int, str]:
    return self.signed[0], self.signed[1].text


def _combine(op: str, left: _Candidate, right: _Candidate) -> _Candidate:
  if op == "*":
    left_text = f"({left.text})" if left.is_sum else left.text
    right_text = f"({right.text})" if right.is_sum else right.text
  else:
    left_text = left.text
    right_text = f"({right.text})" if op == "-" and right.is_sum else right.text
  signed = combine_forms(op, left.signed, right.signed)
  candidate = _Candidate(signed, f"{left_text}{op}{right_text}", op != "*", left.non_negative and right.non_negative)
  candidate.non_negative = candidate.non_negative and candidate.value >= 0
  return candidate


def _keep(pool: dict, key: Any, candidate: _Candidate) -> None:
  """Adds `candidate` under `key`, replacing a spelling with a negative intermediate by one without."""
  existing = pool.get(key)
  if existing is None or (candidate.non_negative and not existing.non_negative):
    pool[key] = candidate


_OPERATIONS = (
    ("+", lambda a, b: a + b, False),
    ("-", lambda a, b: a - b, False),
    ("-", lambda a, b: b - a, True),
    ("*", lambda a, b: a * b, False),
)


def enumerate_solutions(numbers: Sequence[int], target: int,
                        max_solutions: int | None = None) -> dict[str, str]:
  """Every distinct correct strategy: canonical form -> one readable expression string.

  Brute force over sub-multisets: every expression over a sub-multiset is some `left op right` over a split of it
  into two parts, so all strategies of each sub-multiset are built from those of its parts, keeping one spelling per
  canonical form. Intermediates may be negative (`3-10+20` is a valid response without unary minus), so the
  search is complete: it finds every canonical form any valid response can have. Spellings whose intermediates
  stay non-negative are preferred. The readable strings use `*` and minimal parentheses and parse back to their
  canonical form.

  Args:
    numbers: The problem's numbers (a multiset of non-negative ints), at most `MAX_ENUMERATION_NUMBERS`.
    target: The target value.
    max_solutions: If given, return only the first this many strategies.

  Returns:
    Canonical form -> expression, in enumeration order (strategies using fewer numbers first).

  Raises:
    ValueError: Invalid numbers (more than `MAX_ENUMERATION_NUMBERS`, negative, too large), target or max_solutions.
  """
  numbers = _check_numbers(numbers)
  target = checked_int(target, "target")
  if len(numbers) > MAX_ENUMERATION_NUMBERS:
    raise ValueError(f"enumerate_solutions supports at most {MAX_ENUMERATION_NUMBERS} numbers, got {len(numbers)}")
  if max_solutions is not None and checked_int(max_solutions, "max_solutions") < 1:
    raise ValueError(f"max_solutions must be a positive int or None, got {max_solutions!r}")

  full_mask = (1 << len(numbers)) - 1
  pools_by_multiset: dict[tuple[int, ...], dict] = {}
  pools: dict[int, dict] = {}
  solutions: dict[str, _Candidate] = {}
  for mask in sorted(range(1, full_mask + 1), key=lambda m: (bin(m).count("1"), m)):
    multiset = tuple(sorted(numbers[i] for i in range(len(numbers)) if mask >> i & 1))
    pool = pools_by_multiset.get(multiset)
    if pool is None:
      pool = {}
      if len(multiset) == 1:
        candidate = _Candidate(number_form(multiset[0]), str(multiset[0]), False, True)
        pool[candidate.key] = candidate
      lowest_bit = mask & -mask
      part = (mask - 1) & mask
      while part:
        if part & lowest_bit:
          for left in pools[part].values():
            for right in pools[mask ^ part].values():
              for op, apply, swapped in _OPERATIONS:
                if mask == full_mask and apply(left.value, right.value) != target:
                  continue  # the full multiset is never split again: only its solutions matter
                candidate = _combine(op, right, left) if swapped else _combine(op, left, right)
                _keep(pool, candidate.key, candidate)
        part = (part - 1) & mask
      pools_by_multiset[multiset] = pool
    pools[mask] = pool
    for candidate in pool.values():
      if candidate.value == target:
        _keep(solutions, render_canonical(candidate.signed), candidate)

  found = {canonical: candidate.text for canonical, candidate in solutions.items()}
  if max_solutions is not None:
    found = dict(list(found.items())[:max_solutions])
  return found


def generate_problem(rng: np.random.Generator, *, num_numbers: int = 4, max_number: int = 10,
                     min_strategies: int = 3, target_range: tuple[int, int] = (10, 100)) -> dict[str, Any]:
  """Draws numbers and a target until the target has at least `min_strategies` distinct correct strategies.

  Numbers are uniform in [1, max_number] (repeats allowed) and the target uniform in `target_range` (inclusive);
  a target equal to one of the numbers is redrawn, since copying it would be a trivial answer. The result is a
  deterministic function of the generator state.

  Returns:
    `numbers` (list of ints), `target` (int), `solutions` (sorted canonical forms of all correct strategies),
    `example_solutions` (one readable expression per entry of `solutions`) and `example_solution` (the first).

  Raises:
    ValueError: A bad argument, or no problem satisfying the settings within 10,000 draws.
  """
  if not isinstance(rng, np.random.Generator):
    raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
  num_numbers = checked_int(num_numbers, "num_numbers")
  if not 1 <= num_numbers <= MAX_ENUMERATION_NUMBERS:
    raise ValueError(f"num_numbers must be in [1, {MAX_ENUMERATION_NUMBERS}], got {num_numbers}")
  max_number = checked_int(max_number, "max_number")
  if not 1 <= max_number <= _MAX_NUMBER:
    raise ValueError(f"max_number must be in [1, {_MAX_NUMBER}], got {max_number}")
  min_strategies = checked_int(min_strategies, "min_strategies")
  if min_strategies < 1:
    raise ValueError(f"min_strategies must be >= 1, got {min_strategies}")
  if not isinstance(target_range, (tuple, list)) or len(target_range) != 2:
    raise ValueError(f"target_range must be a (low, high) pair, got {target_range!r}")
  low, high = (checked_int(bound, "target_range bound") for bound in target_range)
  if not 0 <= low <= high:
    raise ValueError(f"target_range must satisfy 0 <= low <= high, got {target_range!r}")

  for _ in range(_MAX_GENERATION_ATTEMPTS):
    numbers = [int(number) for number in rng.integers(1, max_number + 1, size=num_numbers)]
    target = int(rng.integers(low, high + 1))
    if target in numbers:
      continue
    solutions = enumerate_solutions(numbers, target)
    if len(solutions) >= min_strategies:
      canonical_forms = sorted(solutions)
      examples = [solutions[canonical] for canonical in canonical_forms]
      return {
          "numbers": numbers,
          "target": target,
          "solutions": canonical_forms,
          "example_solutions": examples,
          "example_solution": examples[0],
      }
  raise ValueError(
      f"no problem with >= {min_strategies} strategies in {_MAX_GENERATION_ATTEMPTS} draws (num_numbers="
      f"{num_numbers}, max_number={max_number}, target_range={target_range!r})")
