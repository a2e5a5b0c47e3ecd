"""Verifiable RL tasks with a ground-truth notion of "same strategy" (for measuring and rewarding diversity)."""

from darling_jax.tasks.countdown import (
    MAX_ENUMERATION_NUMBERS,
    enumerate_solutions,
    format_prompt,
    generate_problem,
    score_response,
    strategy_id,
)
from darling_jax.tasks.expression import (
    MAX_EXPRESSION_LENGTH,
    MAX_LITERAL_DIGITS,
    MAX_NESTING_DEPTH,
    BinaryOp,
    Expr,
    ExpressionError,
    Number,
    canonical_form,
    evaluate,
    parse_expression,
    used_numbers,
)

__all__ = [
    "MAX_ENUMERATION_NUMBERS",
    "MAX_EXPRESSION_LENGTH",
    "MAX_LITERAL_DIGITS",
    "MAX_NESTING_DEPTH",
    "BinaryOp",
    "Expr",
    "ExpressionError",
    "Number",
    "canonical_form",
    "enumerate_solutions",
    "evaluate",
    "format_prompt",
    "generate_problem",
    "parse_expression",
    "score_response",
    "strategy_id",
    "used_numbers",
]
