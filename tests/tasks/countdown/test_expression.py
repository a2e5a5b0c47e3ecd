"""Parser, exact evaluation and canonical form (the ground-truth "same strategy" relation)."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darling_jax.tasks.countdown import (
    MAX_EXPRESSION_LENGTH,
    MAX_NESTING_DEPTH,
    BinaryOp,
    ExpressionError,
    Number,
    canonical_form,
    evaluate,
    parse_expression,
    used_numbers,
)
from darling_jax.tasks.countdown.expression import signed_form


def canon(text: str) -> str:
  return canonical_form(parse_expression(text))


# ----------------------------------------------------------------------------------------------------------------
# Parser


def test_parses_precedence_and_left_associativity():
  assert parse_expression("3*7+5") == BinaryOp("+", BinaryOp("*", Number(3), Number(7)), Number(5))
  assert parse_expression("10-3-2") == BinaryOp("-", BinaryOp("-", Number(10), Number(3)), Number(2))
  assert parse_expression(" ( 5 + 7 ) × 2 ") == BinaryOp("*", BinaryOp("+", Number(5), Number(7)), Number(2))
  assert parse_expression("8\u22123") == BinaryOp("-", Number(8), Number(3))
  assert parse_expression("((4))") == Number(4)
  assert parse_expression("0") == Number(0)


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("   ", "empty"),
    ("(3+4", "unmatched '(' at position 0"),
    ("3+4)", "unmatched ')' at position 3"),
    ("((3)", "unmatched '('"),
    ("3+", "ends after '+'"),
    ("3*", "ends after '*'"),
    ("(3+)*2", "position 3"),
    ("3 a", "'a' at position 2"),
    ("x", "'x' at position 0"),
    ("3x4", "'x' at position 1"),
    ("-3+4", "unary '-' at position 0"),
    ("3*-4", "unary '-' at position 2"),
    ("3+(-4)", "unary '-' at position 3"),
    ("+3", "unary '+'"),
    ("8/2", "division '/' at position 1"),
    ("3.5", "'.' at position 1"),
    ("2^3", "'^'"),
    ("1234567", "7 digits"),
    ("1+9999999", "position 2"),
    ("07", "leading zero"),
    ("3 4", "expected an operator at position 2"),
    ("(3)(4)", "expected an operator at position 3"),
    ("()", "position 1"),
    ("3**4", "position 2"),
    ("3=3", "'='"),
    ("3*7+5 = 26", "'='"),
    ("\u0663", "position 0"),  # Arabic-Indic digit three is not an ASCII digit
])
def test_malformed_input_raises_expression_error(text, fragment):
  with pytest.raises(ExpressionError) as info:
    parse_expression(text)
  assert fragment in str(info.value)
  assert isinstance(info.value, ValueError)


def test_size_limits():
  assert evaluate(parse_expression("1+" * 99 + "1")) == 100  # 199 characters: deep left-nested tree is fine
  with pytest.raises(ExpressionError, match="characters long"):
    parse_expression("1+" * 100 + "1")
  with pytest.raises(ExpressionError, match="characters long"):
    parse_expression("(" * 100_000 + "1" + ")" * 100_000)
  depth = MAX_NESTING_DEPTH
  assert parse_expression("(" * depth + "1" + ")" * depth) == Number(1)
  with pytest.raises(ExpressionError, match="nested deeper"):
    parse_expression("(" * (depth + 1) + "1" + ")" * (depth + 1))
  with pytest.raises(ExpressionError, match="nested deeper"):
    parse_expression("(" * 60)
  assert parse_expression("999999") == Number(999_999)
  assert len("1+" * 99 + "1") <= MAX_EXPRESSION_LENGTH


def test_long_chains_evaluate_and_canonicalise_without_recursion_errors():
  text = "*".join(["999999"] * 28)  # 195 characters
  expr = parse_expression(text)
  assert evaluate(expr) == 999_999**28
  assert canonical_form(expr) == text
  chain = "-".join(["7"] * 100)  # 199 characters
  assert evaluate(parse_expression(chain)) == 7 - 7 * 99


def test_non_string_input_is_a_type_error():
  with pytest.raises(TypeError, match="int"):
    parse_expression(12)


@settings(max_examples=150, deadline=None, database=None)
@given(st.one_of(st.text(max_size=250), st.text(alphabet="0123456789+-*×()/ x−", max_size=80)))
def test_arbitrary_text_parses_or_raises_expression_error(text):
  try:
    expr = parse_expression(text)
  except ExpressionError:
    return
  assert isinstance(evaluate(expr), int)
  assert isinstance(canonical_form(expr), str)


def test_ast_nodes_validate_their_fields():
  with pytest.raises(ValueError, match="'/'"):
    BinaryOp("/", Number(1), Number(2))
  with pytest.raises(ValueError, match="-3"):
    Number(-3)
  with pytest.raises(TypeError, match="str"):
    evaluate("3+4")


# ----------------------------------------------------------------------------------------------------------------
# Evaluation


@pytest.mark.parametrize("text, value", [
    ("3*7+5", 26),
    ("5+(7*3)", 26),
    ("(5+7)*2", 24),
    ("10-3-2", 5),
    ("10-(3-2)", 9),
    ("2*3+4*5", 26),
    ("2*(3+4)*5", 70),
    ("3-10", -7),
    ("(3-10)*(2-5)", 21),
    ("25*24*23", 13800),
    ("0*7+1", 1),
])
def test_evaluate(text, value):
  assert evaluate(parse_expression(text)) == value


def test_used_numbers_in_order_with_repeats():
  assert used_numbers(parse_expression("(5+5)*2-5")) == [5, 5, 2, 5]
  assert used_numbers(parse_expression("7")) == [7]


# ----------------------------------------------------------------------------------------------------------------
# Canonical form: hand cases


@pytest.mark.parametrize("spellings", [
    ["3*7+5", "5+(7*3)", "(3*7)+5", "5+3*7", "((5))+(7)*(3)", "7×3+5"],
    ["(5+7)*2", "2*(7+5)", "(7+5)*2", "2*((5)+7)"],
    ["10-(7-3)", "10-7+3", "3+10-7", "(10+3)-7", "10+(3-7)"],
    ["1+2+3", "1+(2+3)", "(3+1)+2"],
    ["2*3*4", "(2*4)*3", "2*(3*4)", "4*3*2"],
    ["10-2-3", "10-(2+3)", "10-(3+2)", "(10-3)-2"],
    ["20-(7-3)*2", "20+(3-7)*2", "20-2*(7-3)", "20+2*(3-7)"],
    ["(3-10)*(2-5)", "(10-3)*(5-2)", "(5-2)*(10-3)"],
    ["6-(2-2)*3", "6+(2-2)*3"],
])
def test_same_strategy_spellings_share_a_canonical_form(spellings):
  forms = {canon(text) for text in spellings}
  assert len(forms) == 1, forms
  assert len({evaluate(parse_expression(text)) for text in spellings}) == 1


@pytest.mark.parametrize("first, second", [
    ("2*(3+4)", "2*3+2*4"),  # no distribution
    ("(5+7)*2", "5*2+7*2"),
    ("3*7+5", "(5+7)*2"),
    ("10-2+3", "10-(2+3)"),
    ("2+2", "2*2"),  # same numbers, same value
    ("(3-1)*2", "3+2-1"),
    ("5*1", "5"),
    ("4+4-4", "4"),
    ("6*(4-2)", "6*4-6*2"),
    ("(2+3-5)*4", "(5-2-3)*4"),  # value 0, but opposite signs
])
def test_different_strategies_have_different_canonical_forms(first, second):
  assert canon(first) != canon(second)


def test_canonical_form_examples():
  assert canon("5+(7*3)") == "3*7+5"
  assert canon("10-(7-3)") == "10+3-7"
  assert canon("20+(3-7)*2") == "20-(7-3)*2"
  assert canon("3-10") == "3-10"


# ----------------------------------------------------------------------------------------------------------------
# Canonical form: generated expressions and re-spellings


def random_expr(rng: np.random.Generator, num_leaves: int) -> BinaryOp | Number:
  if num_leaves == 1:
    return Number(int(rng.integers(0, 13)))
  split = int(rng.integers(1, num_leaves))
  op = str(rng.choice(["+", "-", "*"]))
  return BinaryOp(op, random_expr(rng, split), random_expr(rng, num_leaves - split))


def fully_parenthesised(expr) -> str:
  if isinstance(expr, Number):
    return str(expr.value)
  return f"({fully_parenthesised(expr.left)}{expr.op}{fully_parenthesised(expr.right)})"


def flatten(expr):
  """Test-side structure: ("num", v) | ("sum", [(sign, node)]) | ("prod", [node]), nodes never nested alike."""
  if isinstance(expr, Number):
    return ("num", expr.value)
  if expr.op == "*":
    factors = []

    def collect_factors(node):
      if isinstance(node, BinaryOp) and node.op == "*":
        collect_factors(node.left)
        collect_factors(node.right)
      else:
        factors.append(flatten(node))

    collect_factors(expr)
    return ("prod", factors)
  terms = []

  def collect_terms(node, sign):
    if isinstance(node, BinaryOp) and node.op in "+-":
      collect_terms(node.left, sign)
      collect_terms(node.right, sign if node.op == "+" else -sign)
    else:
      terms.append((sign, flatten(node)))

  collect_terms(expr, 1)
  return ("sum", terms)


def negatable(node) -> bool:
  """A sum whose negation can be written without unary minus (it has a negative term)."""
  return node[0] == "sum" and any(sign < 0 for sign, _ in node[1])


def negated(node):
  return ("sum", [(-sign, term) for sign, term in node[1]])


def maybe_wrap(text: str, rng: np.random.Generator) -> str:
  return f"({text})" if rng.random() < 0.15 else text


def spell_group(items: list[str], op: str, rng: np.random.Generator) -> str:
  """Joins operand texts with a random binary bracketing (redundant parentheses included)."""
  if len(items) == 1:
    return items[0]
  split = int(rng.integers(1, len(items)))
  left, right = spell_group(items[:split], op, rng), spell_group(items[split:], op, rng)
  right = f"({right})" if split < len(items) - 1 else right
  return maybe_wrap(f"{left}{op}{right}", rng)


def spell_signed(terms: list[tuple[int, str]], rng: np.random.Generator) -> str:
  """Spells signed terms (the first positive) with random re-association: `L+(R)` or `L-(negated R)`."""
  if len(terms) == 1:
    return terms[0][1]
  split = int(rng.integers(1, len(terms)))
  left, right = spell_signed(terms[:split], rng), terms[split:]
  if right[0][0] < 0:
    right = [(-sign, text) for sign, text in right]
    op = "-"
  else:
    op = "+"
  right_text = spell_signed(right, rng)
  if len(right) > 1 and (op == "-" or rng.random() < 0.5):
    right_text = f"({right_text})"
  return maybe_wrap(f"{left}{op}{right_text}", rng)


def spell_product(factors, rng: np.random.Generator, flips_must_be_even: bool) -> tuple[str, int]:
  """A random spelling of a product and the sign it picked up by negating some sum factors."""
  factors = list(factors)
  flippable = [i for i, factor in enumerate(factors) if negatable(factor)]
  chosen = [i for i in flippable if rng.random() < 0.5]
  if flips_must_be_even and len(chosen) % 2:
    chosen = chosen[:-1]
  for i in chosen:
    factors[i] = negated(factors[i])
  order = rng.permutation(len(factors))
  texts = []
  for i in order:
    text = spell(factors[i], rng)
    texts.append(f"({text})" if factors[i][0] == "sum" else text)
  op = str(rng.choice(["*", "×", " * "]))
  return spell_group(texts, op, rng), (-1) ** len(chosen)


def spell(node, rng: np.random.Generator) -> str:
  kind, payload = node
  if kind == "num":
    return maybe_wrap(str(payload), rng)
  if kind == "prod":
    return spell_product(payload, rng, flips_must_be_even=True)[0]
  for allow_sign_flips in (True, False):  # flipping may leave no positive term to lead; then spell without
    signed_texts = []
    for sign, term in payload:
      if term[0] == "prod":
        text, flip = spell_product(term[1], rng, flips_must_be_even=not allow_sign_flips)
        signed_texts.append((sign * flip, text))
      else:
        signed_texts.append((sign, spell(term, rng)))
    if any(sign > 0 for sign, _ in signed_texts):
      break
  order = list(rng.permutation(len(signed_texts)))
  first_positive = next(i for i in order if signed_texts[i][0] > 0)
  order.remove(first_positive)
  ordered = [signed_texts[first_positive]] + [signed_texts[i] for i in order]
  return spell_signed(ordered, rng)


def test_random_respellings_keep_canonical_form_and_value():
  rng = np.random.default_rng(0)
  checked = 0
  for _ in range(250):
    expr = random_expr(rng, int(rng.integers(1, 7)))
    form, value = canonical_form(expr), evaluate(expr)
    assert parse_expression(fully_parenthesised(expr)) == expr
    for _ in range(6):
      text = spell(flatten(expr), rng)
      respelled = parse_expression(text)
      assert evaluate(respelled) == value, text
      assert canonical_form(respelled) == form, (fully_parenthesised(expr), text)
      assert sorted(used_numbers(respelled)) == sorted(used_numbers(expr))
      checked += 1
  assert checked == 1500


def test_canonical_form_determines_value_and_numbers_and_reparses():
  rng = np.random.default_rng(1)
  by_form = collections.defaultdict(set)
  for _ in range(1500):
    expr = random_expr(rng, int(rng.integers(1, 5)))
    form, value = canonical_form(expr), evaluate(expr)
    sign, normal = signed_form(expr)
    assert sign * normal.value == value and normal.value >= 0
    by_form[form].add((value, tuple(sorted(used_numbers(expr)))))
    if value > 0:
      reparsed = parse_expression(form)
      assert canonical_form(reparsed) == form and evaluate(reparsed) == value
  assert all(len(facts) == 1 for facts in by_form.values())
