"""respell keeps the strategy and changes the text; random_expression uses each number at most once."""

import collections

import numpy as np
import pytest

from darling_jax.tasks.countdown.expression import (ExpressionError, canonical_form, evaluate, parse_expression,
                                                    used_numbers)
from darling_jax.tasks.countdown.problems import generate_problem
from darling_jax.tasks.countdown.spelling import random_expression, respell


def _generated_expressions(count: int, seed: int = 0) -> list[str]:
  """Correct solutions of random problems plus random (mostly wrong) expressions over their numbers."""
  rng = np.random.default_rng(seed)
  texts = []
  while len(texts) < count:
    problem = generate_problem(rng, num_numbers=int(rng.integers(2, 5)), max_number=10, min_strategies=1)
    texts.extend(problem["example_solutions"][:3])
    texts.extend(random_expression(problem["numbers"], rng) for _ in range(3))
  return texts[:count]


@pytest.mark.parametrize("paren_prob", [0.0, 0.2, 1.0])
def test_respell_keeps_canonical_form_and_changes_text(paren_prob):
  rng = np.random.default_rng(1)
  texts = _generated_expressions(150)
  changed = 0
  for text in texts:
    spelled = respell(text, rng, paren_prob=paren_prob)
    assert spelled != text
    assert canonical_form(parse_expression(spelled)) == canonical_form(parse_expression(text)), (text, spelled)
    assert sorted(used_numbers(parse_expression(spelled))) == sorted(used_numbers(parse_expression(text)))
    # a different form other than the whole-expression parenthesis fallback
    changed += not (spelled.startswith("(") and spelled.endswith(")") and spelled[1:-1] == text)
  assert changed / len(texts) > 0.6


def test_respell_draws_several_forms_and_keeps_subtraction():
  rng = np.random.default_rng(2)
  forms = {respell("3*4+5-2", rng, paren_prob=0.0) for _ in range(200)}
  assert forms == {"3*4+5-2", "4*3+5-2", "5+3*4-2", "5+4*3-2", "3*4-2+5", "4*3-2+5", "5-2+3*4", "5-2+4*3"} - {
      "3*4+5-2"}
  assert respell("9-2", rng, paren_prob=0.0) == "(9-2)"  # no other order: subtraction is never swapped
  assert respell(" 7 ", rng) == "(7)"


def test_respell_redundant_parentheses_keep_signs():
  rng = np.random.default_rng(3)
  for _ in range(200):
    spelled = respell("10-3-2+4*5", rng, paren_prob=1.0)
    assert canonical_form(parse_expression(spelled)) == canonical_form(parse_expression("10-3-2+4*5"))


def test_respell_rejects_bad_input():
  rng = np.random.default_rng(0)
  with pytest.raises(ExpressionError):
    respell("3+", rng)
  with pytest.raises(ValueError, match="paren_prob"):
    respell("3+4", rng, paren_prob=1.5)
  with pytest.raises(ValueError, match="rng"):
    respell("3+4", 0)


def test_random_expression_uses_each_number_at_most_once():
  rng = np.random.default_rng(4)
  wrong = 0
  for _ in range(300):
    numbers = [int(n) for n in rng.integers(1, 11, size=int(rng.integers(1, 6)))]
    text = random_expression(numbers, rng)
    expr = parse_expression(text)
    used = collections.Counter(used_numbers(expr))
    assert not used - collections.Counter(numbers), (numbers, text)
    assert sum(used.values()) >= min(2, len(numbers))
    wrong += evaluate(expr) != int(rng.integers(10, 101))
  assert wrong > 250  # usually wrong for a random target


def test_random_expression_rejects_bad_input():
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="numbers"):
    random_expression([], rng)
  with pytest.raises(ValueError, match="min_numbers"):
    random_expression([1, 2], rng, min_numbers=0)
