"""The Countdown task: scoring, strategy ids, solution enumeration and problem generation."""

from __future__ import annotations

import itertools
import re
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darling_jax.tasks.countdown import (
    ExpressionError,
    Number,
    canonical_form,
    enumerate_solutions,
    evaluate,
    format_prompt,
    generate_problem,
    parse_expression,
    score_response,
    strategy_id,
)
from darling_jax.tasks.countdown.problems import RESPONSE_VERDICTS, response_verdict

NUMBERS = [3, 5, 7, 2]
TARGET = 26


# ----------------------------------------------------------------------------------------------------------------
# Scoring


@pytest.mark.parametrize("response", ["3*7+5", "5+(7*3)", "  3 × 7 + 5 \n", "(3*7)+5", "((5))+3*7", "7 * 3 + 5"])
def test_correct_responses_score_one(response):
  assert score_response(response, NUMBERS, TARGET) == 1.0


def test_scoring_rules():
  assert score_response("3*7+5", NUMBERS, TARGET) == 1.0  # 2 unused: fine
  assert score_response("(7-2)*5+3-2", NUMBERS, TARGET) == 0.0  # 2 used twice, available once
  assert score_response("5*5+1", [5, 5, 1], TARGET) == 1.0  # 5 used twice, available twice
  assert score_response("5*5+1", [5, 1, 3], TARGET) == 0.0
  assert score_response("5*5*5-99", [5, 5, 99], 26) == 0.0  # 5 three times, available twice
  assert score_response("3*7+2", NUMBERS, TARGET) == 0.0  # wrong value
  assert score_response("3*7+5", NUMBERS, 27) == 0.0  # wrong target
  assert score_response("26", NUMBERS, TARGET) == 0.0  # 26 is not available
  assert score_response("7", NUMBERS, 7) == 1.0  # a single available number is an expression
  assert score_response("3*7+5+0", NUMBERS, TARGET) == 0.0  # 0 is not available either


@pytest.mark.parametrize("response", [
    "", "   ", "abc", "3*7+5 = 26", "3*7+5.", "Expression: 3*7+5", "3*7+", "(3*7+5", "-2+3*7+5+2",
    "3*7+5/1", "1" * 300, "(" * 50 + "3" + ")" * 50, "3×7+5\x00", "\u00b3*7+5",
])
def test_malformed_responses_score_zero(response):
  assert score_response(response, NUMBERS, TARGET) == 0.0
  assert strategy_id(response, NUMBERS, TARGET) is None


@settings(max_examples=100, deadline=None, database=None)
@given(st.text(alphabet="0123457×*+-() x/", max_size=40))
def test_scoring_never_raises_on_model_output(response):
  score = score_response(response, NUMBERS, TARGET)
  assert score in (0.0, 1.0)
  assert (strategy_id(response, NUMBERS, TARGET) is None) == (score == 0.0)


@pytest.mark.parametrize("response, verdict", [
    ("3*7+5", "correct"), ("3*7+2", "wrong_value"), ("3*7+5+5", "wrong_numbers"), ("3*8+2", "wrong_numbers"),
    ("3*7+", "unparseable"), ("", "unparseable"), ("26", "wrong_numbers")])
def test_response_verdict_says_what_is_wrong(response, verdict):
  got, strategy = response_verdict(response, NUMBERS, TARGET)
  assert got == verdict and got in RESPONSE_VERDICTS
  assert strategy == strategy_id(response, NUMBERS, TARGET)
  assert (strategy is not None) == (verdict == "correct")


def test_strategy_id_is_the_canonical_form_of_correct_responses():
  assert strategy_id("5+(7*3)", NUMBERS, TARGET) == strategy_id("3*7+5", NUMBERS, TARGET) == "3*7+5"
  assert strategy_id("(5-3)*(7+2)+5", [5, 3, 7, 2, 5], 23) == canonical_form(parse_expression("(7+2)*(5-3)+5"))
  assert strategy_id("3*7+2", NUMBERS, TARGET) is None


@pytest.mark.parametrize("numbers, target, message", [
    ([], 5, "empty"),
    ([-1, 2], 5, "-1"),
    ([1.5, 2], 5, "1.5"),
    ([True, 2], 5, "True"),
    ("123", 5, "'123'"),
    ([1, 2], 2.5, "2.5"),
    ([1, 10**7], 5, "10000000"),
])
def test_bad_problem_arguments_raise_value_error(numbers, target, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    score_response("1+2", numbers, target)


def test_response_must_be_a_string():
  with pytest.raises(TypeError, match="bytes"):
    score_response(b"3*7+5", NUMBERS, TARGET)


def test_numpy_inputs_are_accepted():
  assert score_response("3*7+5", np.array(NUMBERS), np.int64(TARGET)) == 1.0


def test_format_prompt():
  assert format_prompt([3, 5, 7, 2], 26) == "Numbers: 3 5 7 2 Target: 26 Expression:"
  with pytest.raises(ValueError, match="-4"):
    format_prompt([3, -4], 26)


# ----------------------------------------------------------------------------------------------------------------
# Enumeration


def all_expression_texts(numbers: list[int]) -> set[str]:
  """Every fully parenthesised expression over every ordered selection of the numbers (independent of the DP)."""

  def trees(values: tuple[int, ...]) -> list[str]:
    if len(values) == 1:
      return [str(values[0])]
    texts = []
    for split in range(1, len(values)):
      for left in trees(values[:split]):
        for right in trees(values[split:]):
          texts.extend(f"({left}{op}{right})" for op in "+-*")
    return texts

  selections = {tuple(numbers[i] for i in order) for size in range(1, len(numbers) + 1)
                for order in itertools.permutations(range(len(numbers)), size)}
  return {text for selection in selections for text in trees(selection)}


def brute_force_strategies(numbers: list[int], target: int) -> set[str]:
  strategies = set()
  for text in all_expression_texts(numbers):
    expr = parse_expression(text)
    if evaluate(expr) == target:
      strategies.add(canonical_form(expr))
  return strategies


@pytest.mark.parametrize("numbers, target", [
    ([3, 5, 7], 26),
    ([2, 3, 4], 10),
    ([5, 5, 2], 0),  # self-negating and zero-valued sums
    ([4, 4, 1], 4),
    ([2, 2, 2], 4),
    ([3, 8, 1], 5),
    ([6, 1, 9], 3),  # needs a negative intermediate or a sign fold: e.g. 9-6*1
    ([3, 5, 7, 2], 26),
    ([1, 2, 3, 4], 10),
    ([2, 2, 3, 7], 19),
])
def test_enumeration_matches_independent_brute_force(numbers, target):
  assert set(enumerate_solutions(numbers, target)) == brute_force_strategies(numbers, target)


def check_solutions(numbers: list[int], target: int, solutions: dict[str, str]) -> None:
  for canonical, text in solutions.items():
    expr = parse_expression(text)
    assert canonical_form(expr) == canonical
    assert evaluate(expr) == target
    assert score_response(text, numbers, target) == 1.0
    assert strategy_id(text, numbers, target) == canonical


def test_enumerated_examples_parse_back_to_their_strategy():
  rng = np.random.default_rng(3)
  for _ in range(20):
    numbers = [int(x) for x in rng.integers(1, 13, size=int(rng.integers(2, 6)))]
    target = int(rng.integers(1, 60))
    solutions = enumerate_solutions(numbers, target)
    assert len(set(solutions)) == len(solutions)
    check_solutions(numbers, target, solutions)


def non_negative_intermediates(expr) -> bool:
  if isinstance(expr, Number):
    return True
  return evaluate(expr) >= 0 and non_negative_intermediates(expr.left) and non_negative_intermediates(expr.right)


def test_enumeration_examples_and_order():
  assert enumerate_solutions([3, 5, 7, 2], 26) == {"3*7+5": "3*7+5"}
  solutions = enumerate_solutions([1, 2, 3, 4], 24)
  assert list(solutions) == ["2*3*4", "1*2*3*4", "(1+2+3)*4", "(1+3)*(2+4)"]  # fewer numbers first
  assert list(enumerate_solutions([1, 2, 3, 4], 24).items()) == list(solutions.items())  # deterministic
  assert list(enumerate_solutions([1, 2, 3, 4], 24, max_solutions=2)) == ["2*3*4", "1*2*3*4"]
  assert enumerate_solutions([2, 9], 7) == {"9-2": "9-2"}
  assert enumerate_solutions([2, 9], 100) == {}
  assert enumerate_solutions([2, 9], 9) == {"9": "9"}
  assert set(enumerate_solutions([6, 1, 9], 3)) == {"9-6", "(9-6)*1", "9-1*6", "1*9-6"}


def test_examples_have_non_negative_intermediates():
  # Every strategy with a non-negative value has such a spelling, and the enumeration prefers it.
  rng = np.random.default_rng(5)
  for _ in range(15):
    numbers = [int(x) for x in rng.integers(1, 10, size=4)]
    target = int(rng.integers(0, 40))
    for text in enumerate_solutions(numbers, target).values():
      assert non_negative_intermediates(parse_expression(text)), (numbers, target, text)


def test_enumeration_argument_errors():
  with pytest.raises(ValueError, match="at most 6"):
    enumerate_solutions([1] * 7, 5)
  with pytest.raises(ValueError, match="max_solutions"):
    enumerate_solutions([1, 2], 3, max_solutions=0)
  with pytest.raises(ValueError, match="empty"):
    enumerate_solutions([], 3)


def test_enumeration_speed():
  rng = np.random.default_rng(4)
  for size, budget_s in ((4, 0.1), (5, 2.0)):
    numbers = [int(x) for x in rng.integers(1, 26, size=size)]
    seconds = []
    for _ in range(3):  # the best of three, so a busy machine does not fail the test
      start = time.perf_counter()
      enumerate_solutions(numbers, 100)
      seconds.append(time.perf_counter() - start)
    assert min(seconds) < budget_s, (size, numbers, seconds)


# ----------------------------------------------------------------------------------------------------------------
# Problem generation


def test_generate_problem_is_deterministic_and_has_enough_strategies():
  problems = [generate_problem(np.random.default_rng(seed)) for seed in range(6)]
  assert generate_problem(np.random.default_rng(2)) == problems[2]
  assert len({(tuple(p["numbers"]), p["target"]) for p in problems}) > 1
  for problem in problems:
    assert set(problem) == {"numbers", "target", "solutions", "example_solutions", "example_solution"}
    numbers, target = problem["numbers"], problem["target"]
    assert len(numbers) == 4 and all(1 <= n <= 10 for n in numbers) and 10 <= target <= 100
    assert target not in numbers
    assert len(problem["solutions"]) >= 3
    assert problem["solutions"] == sorted(enumerate_solutions(numbers, target))
    assert problem["example_solution"] == problem["example_solutions"][0]
    check_solutions(numbers, target, dict(zip(problem["solutions"], problem["example_solutions"])))


def test_generate_problem_settings():
  rng = np.random.default_rng(7)
  problem = generate_problem(rng, num_numbers=5, max_number=12, min_strategies=8, target_range=(50, 60))
  assert len(problem["numbers"]) == 5 and 50 <= problem["target"] <= 60 and len(problem["solutions"]) >= 8
  state = np.random.default_rng(8)
  first = [generate_problem(state, min_strategies=2) for _ in range(3)]
  state = np.random.default_rng(8)
  assert [generate_problem(state, min_strategies=2) for _ in range(3)] == first
  assert all(len(problem["solutions"]) >= 2 for problem in first)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_numbers=0), "num_numbers"),
    (dict(num_numbers=7), "num_numbers"),
    (dict(max_number=0), "max_number"),
    (dict(min_strategies=0), "min_strategies"),
    (dict(target_range=(50, 10)), "target_range"),
    (dict(target_range=5), "target_range"),
    (dict(num_numbers=1, min_strategies=2), "no problem"),
])
def test_generate_problem_argument_errors(kwargs, message):
  with pytest.raises(ValueError, match=message):
    generate_problem(np.random.default_rng(0), **kwargs)


def test_generate_problem_needs_a_generator():
  with pytest.raises(ValueError, match="Generator"):
    generate_problem(0)


def test_expression_error_is_a_value_error():
  assert issubclass(ExpressionError, ValueError)
