"""Countdown: four small numbers and a target; a response is an arithmetic expression. Every problem has several
correct strategies, and two responses are the same strategy iff their canonical forms are equal, so semantic
equivalence has a ground truth (the task DARLING's main job runs on; see `darling_jax.tasks.countdown.task`).

Modules: `expression` (the safe parser and canonical forms), `problems` (generator, checker, enumeration),
`spelling` (respellings), `tokenizer` (the character tokenizer), `builder` (the TF-free tfds builder), `oracle`
(ground-truth classes), `warm_start` (the tiny policy and its supervised warm start), `classifier` (the
oracle-labelled pair classifier), `evaluation` (pass@k, distinct strategies) and `task` (`CountdownTask`).
"""

from darling_jax.tasks.countdown.builder import (
    CountdownBuilder,
    CountdownConfig,
    countdown_example,
    countdown_problems,
    prepare_countdown,
)
from darling_jax.tasks.countdown.expression import (
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
from darling_jax.tasks.countdown.problems import (
    MAX_ENUMERATION_NUMBERS,
    enumerate_solutions,
    format_prompt,
    generate_problem,
    score_response,
    strategy_id,
)
from darling_jax.tasks.countdown.task import CountdownTask, countdown_reward

__all__ = [
    "MAX_ENUMERATION_NUMBERS", "MAX_EXPRESSION_LENGTH", "MAX_LITERAL_DIGITS", "MAX_NESTING_DEPTH", "BinaryOp",
    "CountdownBuilder", "CountdownConfig", "CountdownTask", "Expr", "ExpressionError", "Number", "canonical_form",
    "countdown_example", "countdown_problems", "countdown_reward", "enumerate_solutions", "evaluate", "format_prompt",
    "generate_problem", "parse_expression", "prepare_countdown", "score_response", "strategy_id", "used_numbers",
]
