"""Surface forms of Countdown expressions: respellings of one strategy, and random expressions.

`respell` writes the same strategy (equal canonical form, see `darling_jax.tasks.countdown.expression`) another way: the
signed terms of every sum and the factors of every product are shuffled (a sum always starts with a positive
term, since there is no unary minus), and redundant parentheses are added now and then. Subtraction is never
reordered: every term keeps its sign. It supplies the warm-start policy with several spellings per solution and
the equivalence classifier with positive pairs.

`random_expression` draws an expression over a random subset of a problem's numbers (each at most once) with
random operators: usually a wrong answer, the classifier's easy negatives.

    rng = np.random.default_rng(0)
    respell("3*4+5-2", rng)               # e.g. "5+4*3-2" or "(5-2)+3*4"
    random_expression([3, 4, 5, 2], rng)  # e.g. "4-2*5"
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from darling_jax.tasks.countdown.expression import BinaryOp, Expr, Number, canonical_form, parse_expression

_OPERATORS = ("+", "-", "*")
_MAX_RESPELL_ATTEMPTS = 8


def _check_rng(rng) -> None:
  if not isinstance(rng, np.random.Generator):
    raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")


def _signed_terms(expr: Expr, sign: int = 1) -> list[tuple[int, Expr]]:
  """The flattened sum `expr` as `(sign, term)` pairs; terms are numbers or products."""
  if isinstance(expr, BinaryOp) and expr.op in "+-":
    right_sign = sign if expr.op == "+" else -sign
    return _signed_terms(expr.left, sign) + _signed_terms(expr.right, right_sign)
  return [(sign, expr)]


def _factors(expr: Expr) -> list[Expr]:
  """The flattened product `expr` as its factors; factors are numbers or sums."""
  if isinstance(expr, BinaryOp) and expr.op == "*":
    return _factors(expr.left) + _factors(expr.right)
  return [expr]


def _is_sum(expr: Expr) -> bool:
  return isinstance(expr, BinaryOp) and expr.op in "+-"


def _group(texts: list[str], joiners: list[str], rng: np.random.Generator) -> str:
  """Joins `texts[i]` with `joiners[i]` before each (joiners[0] is ""), wrapping one random run of >= 2 items
  that is not the whole list in redundant parentheses (`flip` rewrites the signs inside a run opened by '-')."""
  count = len(texts)
  length = int(rng.integers(2, count))  # 2 .. count - 1
  start = int(rng.integers(0, count - length + 1))
  pieces = []
  for i, (joiner, text) in enumerate(zip(joiners, texts)):
    if i == start:
      pieces.append(f"{joiner}(")
      pieces.append(text)
    elif start < i < start + length:
      inner = joiner
      if joiners[start] == "-":  # -(b+c) == -b-c: signs inside a run opened by '-' are flipped
        inner = {"+": "-", "-": "+"}.get(joiner, joiner)
      pieces.append(inner + text)
    else:
      pieces.append(joiner + text)
    if i == start + length - 1:
      pieces.append(")")
  return "".join(pieces)


def _render(expr: Expr, rng: np.random.Generator, paren_prob: float) -> str:
  """A random spelling of `expr` with the same canonical form (parenthesised where its context needs it is the
  caller's job: sums as factors)."""
  if isinstance(expr, Number):
    return str(expr.value)
  if expr.op == "*":
    factors = _factors(expr)
    texts = []
    for index in rng.permutation(len(factors)):
      factor = factors[index]
      text = _render(factor, rng, paren_prob)
      texts.append(f"({text})" if _is_sum(factor) else text)
    if len(texts) > 2 and rng.random() < paren_prob:
      return _group(texts, [""] + ["*"] * (len(texts) - 1), rng)
    return "*".join(texts)
  terms = _signed_terms(expr)
  order = list(rng.permutation(len(terms)))
  first = next(position for position, index in enumerate(order) if terms[index][0] > 0)
  order.insert(0, order.pop(first))  # no unary minus: a positive term leads
  texts, joiners = [], []
  for position, index in enumerate(order):
    sign, term = terms[index]
    text = _render(term, rng, paren_prob)
    if isinstance(term, BinaryOp) and rng.random() < paren_prob / 2:
      text = f"({text})"  # a redundant pair around a product term
    texts.append(text)
    joiners.append("" if position == 0 else ("+" if sign > 0 else "-"))
  if len(texts) > 2 and rng.random() < paren_prob:
    return _group(texts, joiners, rng)
  return "".join(joiner + text for joiner, text in zip(joiners, texts))


def respell(expr_text: str, rng: np.random.Generator, *, paren_prob: float = 0.2) -> str:
  """A random spelling of the same strategy that differs from `expr_text`.

  Shuffles the signed terms of each sum (a positive term first) and the factors of each product, and with
  probability `paren_prob` per sum / product adds redundant parentheses. The canonical form never changes;
  subtraction keeps its operands' signs. An expression with no other spelling by these moves (e.g. `"7"` or
  `"9-2"`) comes back wrapped in one redundant pair of parentheses, so the result always differs.

  Args:
    expr_text: a valid Countdown expression (see `darling_jax.tasks.countdown.expression`).
    rng: the random source.
    paren_prob: probability of redundant parentheses per sum or product, in [0, 1].

  Returns:
    The new spelling, over the characters `0-9 + - * ( )` (no spaces).

  Raises:
    ExpressionError: `expr_text` does not parse. ValueError: a bad `rng` or `paren_prob`.
  """
  _check_rng(rng)
  if not 0.0 <= paren_prob <= 1.0:
    raise ValueError(f"paren_prob must be in [0, 1], got {paren_prob!r}")
  expr = parse_expression(expr_text)
  original = expr_text.strip()
  canonical = canonical_form(expr)
  for _ in range(_MAX_RESPELL_ATTEMPTS):
    text = _render(expr, rng, paren_prob)
    if text != original:
      break
  else:
    text = f"({text})"
  respelled = canonical_form(parse_expression(text))
  if respelled != canonical:  # an invariant of the moves above; checked because the oracle labels depend on it
    raise AssertionError(f"respell changed the strategy: {expr_text!r} ({canonical}) -> {text!r} ({respelled})")
  return text


def _to_text(expr: Expr) -> str:
  """Minimal-parenthesis rendering (sums parenthesised as factors and as the right operand of '-')."""
  if isinstance(expr, Number):
    return str(expr.value)
  left, right = _to_text(expr.left), _to_text(expr.right)
  if expr.op == "*":
    left = f"({left})" if _is_sum(expr.left) else left
    right = f"({right})" if _is_sum(expr.right) else right
  elif expr.op == "-" and _is_sum(expr.right):
    right = f"({right})"
  return f"{left}{expr.op}{right}"


def random_expression(numbers: Sequence[int], rng: np.random.Generator, *, min_numbers: int = 2) -> str:
  """A random expression over a random subset of `numbers`, each entry used at most once (usually wrong).

  The subset size is uniform in `[min(min_numbers, len(numbers)), len(numbers)]`; the chosen numbers are
  combined in random order by a random binary tree with uniform `+ - *` operators.

  Args:
    numbers: the problem's numbers (non-negative ints), non-empty.
    rng: the random source.
    min_numbers: the fewest numbers to use (>= 1).

  Returns:
    The expression text with minimal parentheses, no spaces.
  """
  _check_rng(rng)
  numbers = [int(number) for number in numbers]
  if not numbers or any(number < 0 for number in numbers):
    raise ValueError(f"numbers must be a non-empty sequence of non-negative ints, got {numbers!r}")
  if min_numbers < 1:
    raise ValueError(f"min_numbers must be >= 1, got {min_numbers}")
  low = min(min_numbers, len(numbers))
  count = int(rng.integers(low, len(numbers) + 1))
  nodes: list[Expr] = [Number(numbers[index]) for index in rng.choice(len(numbers), size=count, replace=False)]
  while len(nodes) > 1:  # join two random neighbours: a uniformly random bracketing of the shuffled numbers
    at = int(rng.integers(0, len(nodes) - 1))
    op = _OPERATORS[int(rng.integers(0, len(_OPERATORS)))]
    nodes[at:at + 2] = [BinaryOp(op, nodes[at], nodes[at + 1])]
  return _to_text(nodes[0])
