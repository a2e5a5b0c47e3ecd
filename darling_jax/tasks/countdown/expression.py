"""Arithmetic expressions for the Countdown task: tokenizer, parser, AST, exact evaluation, canonical form.

Grammar (whitespace allowed between tokens)::

  expression := term (("+" | "-") term)*
  term       := factor (("*" | "×") factor)*
  factor     := INTEGER | "(" expression ")"

`-` and `−` (U+2212) are both subtraction, `*` and `×` (U+00D7) both multiplication; `+`, `-` and `*` are
left-associative and `*` binds tighter. Unary plus/minus, division and every other character are rejected, as
are integer literals with a leading zero ("07") or more than `MAX_LITERAL_DIGITS` digits. Input longer than
`MAX_EXPRESSION_LENGTH` characters or with parentheses nested deeper than `MAX_NESTING_DEPTH` is rejected before
any recursion can grow, so arbitrary model output never overflows the stack.

Canonical form (the "same strategy" relation). Two expressions are one strategy iff their canonical forms are
equal. The canonical form is computed bottom-up:

* `+` and `-` are flattened into one sum of signed terms, subtraction folding its sign into the terms of its
  right operand, so `a-(b-c)` == `a-b+c` and `(a+b)+c` == `a+(b+c)`.
* `*` is flattened into one product of factors.
* Operands of sums and products are sorted deterministically (by their canonical text).
* Signs are folded through products too: every sum used as a factor is oriented to be non-negative (a
  zero-valued sum takes the orientation with more positive terms, then the smaller text) and the flipped
  sign moves onto the enclosing signed term, so `x-(a-b)*c` == `x+(b-a)*c`. A term that equals its own
  negation (e.g. `(5-5)*3`) always carries `+`.
* Multiplication is never distributed over addition: `2*(3+4)` and `2*3+2*4` are different strategies, and
  nothing is cancelled or evaluated (`5*1` and `5` differ, as do `4+4-4` and `4`).

Equal canonical forms imply equal values and equal multisets of used numbers. For every expression with a
positive value the canonical form is itself a valid expression that parses back to the same canonical form.
"""

from __future__ import annotations

import dataclasses
from typing import Union

MAX_EXPRESSION_LENGTH = 200
MAX_NESTING_DEPTH = 16
MAX_LITERAL_DIGITS = 6

_OPERATOR_ALIASES = {"+": "+", "-": "-", "\u2212": "-", "*": "*", "\u00d7": "*"}
_WHITESPACE = frozenset(" \t\r\n")
_DIGITS = frozenset("0123456789")


class ExpressionError(ValueError):
  """A malformed expression; the message names the problem and its character position."""


@dataclasses.dataclass(frozen=True)
class Number:
  """A non-negative integer literal."""

  value: int

  def __post_init__(self):
    if not isinstance(self.value, int) or isinstance(self.value, bool) or self.value < 0:
      raise ValueError(f"Number.value must be a non-negative int, got {self.value!r}")


@dataclasses.dataclass(frozen=True)
class BinaryOp:
  """`left op right` with `op` one of "+", "-", "*"."""

  op: str
  left: Expr
  right: Expr

  def __post_init__(self):
    if self.op not in ("+", "-", "*"):
      raise ValueError(f"BinaryOp.op must be one of '+', '-', '*', got {self.op!r}")


Expr = Union[Number, BinaryOp]


@dataclasses.dataclass(frozen=True)
class _Token:
  kind: str  # "number", "operator", "(", ")" or "end"
  text: str
  position: int


def _tokenize(text: str) -> list[_Token]:
  tokens = []
  position = 0
  while position < len(text):
    char = text[position]
    if char in _WHITESPACE:
      position += 1
    elif char in _DIGITS:
      start = position
      while position < len(text) and text[position] in _DIGITS:
        position += 1
      literal = text[start:position]
      if len(literal) > MAX_LITERAL_DIGITS:
        raise ExpressionError(
            f"integer literal at position {start} has {len(literal)} digits; the limit is {MAX_LITERAL_DIGITS}")
      if len(literal) > 1 and literal[0] == "0":
        raise ExpressionError(f"integer literal {literal!r} at position {start} has a leading zero")
      tokens.append(_Token("number", literal, start))
    elif char in _OPERATOR_ALIASES:
      tokens.append(_Token("operator", _OPERATOR_ALIASES[char], position))
      position += 1
    elif char in "()":
      tokens.append(_Token(char, char, position))
      position += 1
    elif char == "/":
      raise ExpressionError(f"division '/' at position {position} is not supported")
    else:
      raise ExpressionError(f"unexpected character {char!r} at position {position}")
  tokens.append(_Token("end", "", len(text)))
  return tokens


class _Parser:
  """Recursive descent over the token list; recursion happens only at '(' and is bounded by the depth limit."""

  def __init__(self, tokens: list[_Token]):
    self._tokens = tokens
    self._index = 0

  def _peek(self) -> _Token:
    return self._tokens[self._index]

  def _advance(self) -> _Token:
    token = self._tokens[self._index]
    self._index += 1
    return token

  def parse(self) -> Expr:
    if self._peek().kind == "end":
      raise ExpressionError("empty expression")
    expr = self._expression(depth=0)
    token = self._peek()
    if token.kind == ")":
      raise ExpressionError(f"unmatched ')' at position {token.position}")
    if token.kind != "end":
      raise ExpressionError(f"expected an operator at position {token.position}, found {token.text!r}")
    return expr

  def _expression(self, depth: int) -> Expr:
    expr = self._term(depth)
    while self._peek().kind == "operator" and self._peek().text in "+-":
      op = self._advance().text
      expr = BinaryOp(op, expr, self._term(depth))
    return expr

  def _term(self, depth: int) -> Expr:
    expr = self._factor(depth)
    while self._peek().kind == "operator" and self._peek().text == "*":
      self._advance()
      expr = BinaryOp("*", expr, self._factor(depth))
    return expr

  def _factor(self, depth: int) -> Expr:
    token = self._advance()
    if token.kind == "number":
      return Number(int(token.text))
    if token.kind == "(":
      if depth + 1 > MAX_NESTING_DEPTH:
        raise ExpressionError(
            f"parentheses nested deeper than {MAX_NESTING_DEPTH} levels at position {token.position}")
      expr = self._expression(depth + 1)
      closing = self._advance()
      if closing.kind == "end":
        raise ExpressionError(f"unmatched '(' at position {token.position}")
      if closing.kind != ")":
        raise ExpressionError(f"expected an operator or ')' at position {closing.position}, found {closing.text!r}")
      return expr
    if token.kind == "operator" and token.text in "+-":
      raise ExpressionError(f"unary {token.text!r} at position {token.position} is not allowed")
    if token.kind == "end":
      previous = self._tokens[self._index - 2]
      raise ExpressionError(
          f"expression ends after {previous.text!r} at position {previous.position}; expected a number or '('")
    raise ExpressionError(f"expected a number or '(' at position {token.position}, found {token.text!r}")


def parse_expression(text: str) -> Expr:
  """Parses a Countdown expression (grammar in the module docstring).

  Args:
    text: The expression; surrounding whitespace is ignored.

  Returns:
    The expression tree.

  Raises:
    TypeError: `text` is not a string.
    ExpressionError: The text is malformed or exceeds a size limit; the message names the problem and position.
  """
  if not isinstance(text, str):
    raise TypeError(f"parse_expression expects a str, got {type(text).__name__}")
  if len(text) > MAX_EXPRESSION_LENGTH:
    raise ExpressionError(f"expression is {len(text)} characters long; the limit is {MAX_EXPRESSION_LENGTH}")
  return _Parser(_tokenize(text)).parse()


def _check_expr(expr: object) -> None:
  if not isinstance(expr, (Number, BinaryOp)):
    raise TypeError(f"expected an expression (Number or BinaryOp), got {type(expr).__name__}")


def evaluate(expr: Expr) -> int:
  """The exact integer value of `expr`."""
  _check_expr(expr)
  if isinstance(expr, Number):
    return expr.value
  left, right = evaluate(expr.left), evaluate(expr.right)
  if expr.op == "+":
    return left + right
  if expr.op == "-":
    return left - right
  return left * right


def used_numbers(expr: Expr) -> list[int]:
  """The integer literals of `expr`, left to right (repeats included)."""
  _check_expr(expr)
  if isinstance(expr, Number):
    return [expr.value]
  return used_numbers(expr.left) + used_numbers(expr.right)


class NormalForm:
  """One node of the canonical form: a number, a sum of signed terms, or a product of factors.

  Sums hold `(sign, term)` pairs whose terms are numbers or products; products hold numbers or sums. Sums used
  as factors are oriented (see the module docstring), so every `NormalForm` has a non-negative `value`.
  `text` is the canonical rendering; two forms are equal iff their texts are.
  """

  __slots__ = ("kind", "parts", "text", "value", "self_negating")

  def __init__(self, kind: str, parts: tuple, text: str, value: int, self_negating: bool):
    self.kind = kind
    self.parts = parts
    self.text = text
    self.value = value
    self.self_negating = self_negating

  @property
  def factor_text(self) -> str:
    """The text as a factor of a product: sums are parenthesised."""
    return f"({self.text})" if self.kind == "sum" else self.text


SignedForm = tuple[int, NormalForm]


def number_form(value: int) -> SignedForm:
  """The signed normal form of an integer literal."""
  return 1, NormalForm("number", (), str(value), value, False)


def _sum_text(positive_texts: list[str], negative_texts: list[str]) -> str:
  return "+".join(positive_texts) + "".join("-" + text for text in negative_texts)


def _make_sum(signed_terms: list[SignedForm]) -> SignedForm:
  terms = [(1 if term.self_negating else sign, term) for sign, term in signed_terms]
  terms.sort(key=lambda signed: (signed[0] < 0, signed[1].text))
  positive = [term.text for sign, term in terms if sign > 0]
  negative = [term.text for sign, term in terms if sign < 0]
  value = sum(sign * term.value for sign, term in terms)
  text = _sum_text(positive, negative)
  self_negating = positive == negative
  flip = value < 0
  if value == 0 and not self_negating:
    flip = len(negative) > len(positive) or (
        len(negative) == len(positive) and _sum_text(negative, positive) < text)
  if flip:
    terms = [(-sign, term) for sign, term in terms]
    terms.sort(key=lambda signed: (signed[0] < 0, signed[1].text))
    text, value = _sum_text(negative, positive), -value
  return (-1 if flip else 1), NormalForm("sum", tuple(terms), text, value, self_negating)


def _make_product(sign: int, factors: list[NormalForm]) -> SignedForm:
  factors.sort(key=lambda factor: factor.factor_text)
  value = 1
  for factor in factors:
    value *= factor.value
  self_negating = any(factor.self_negating for factor in factors)
  text = "*".join(factor.factor_text for factor in factors)
  return (1 if self_negating else sign), NormalForm("product", tuple(factors), text, value, self_negating)


def _signed_terms(sign: int, form: NormalForm) -> list[SignedForm]:
  if form.kind == "sum":
    return [(sign * term_sign, term) for term_sign, term in form.parts]
  return [(sign, form)]


def combine_forms(op: str, left: SignedForm, right: SignedForm) -> SignedForm:
  """The signed normal form of `left op right`, from the signed normal forms of the operands."""
  (left_sign, left_form), (right_sign, right_form) = left, right
  if op == "+":
    return _make_sum(_signed_terms(left_sign, left_form) + _signed_terms(right_sign, right_form))
  if op == "-":
    return _make_sum(_signed_terms(left_sign, left_form) + _signed_terms(-right_sign, right_form))
  if op == "*":
    left_factors = list(left_form.parts) if left_form.kind == "product" else [left_form]
    right_factors = list(right_form.parts) if right_form.kind == "product" else [right_form]
    return _make_product(left_sign * right_sign, left_factors + right_factors)
  raise ValueError(f"op must be one of '+', '-', '*', got {op!r}")


def signed_form(expr: Expr) -> SignedForm:
  """`(sign, form)` with `evaluate(expr) == sign * form.value`, equal for expressions of one strategy."""
  _check_expr(expr)
  if isinstance(expr, Number):
    return number_form(expr.value)
  return combine_forms(expr.op, signed_form(expr.left), signed_form(expr.right))


def render_canonical(signed: SignedForm) -> str:
  """The canonical string of a signed form: the sign is folded into a top-level sum, else written as '-'."""
  sign, form = signed
  if form.kind != "sum":
    return form.text if sign > 0 else "-" + form.text
  positive = sorted(term.text for term_sign, term in form.parts if term_sign * sign > 0)
  negative = sorted(term.text for term_sign, term in form.parts if term_sign * sign < 0)
  return _sum_text(positive, negative)


def canonical_form(expr: Expr) -> str:
  """The canonical string of `expr`; equal for two expressions iff they are the same strategy.

  The equivalence is defined in the module docstring. For expressions with a positive value the string is itself
  a valid expression with the same canonical form; it starts with '-' only for values <= 0.
  """
  return render_canonical(signed_form(expr))
