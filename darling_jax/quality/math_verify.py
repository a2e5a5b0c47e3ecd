"""`math_verify_reward`: 1.0 when a completion's final answer equals the reference answer, else 0.0, checked with
the PyPI package `math-verify` (arXiv 2509.02534 §5: the math runs' binary reward; the official code calls
`math_verify.parse` + `verify`, `verl/verl/utils/reward_score/__init__.py`).

Equivalent forms count: `\\boxed{\\frac{1}{2}}` equals `0.5`, `\\boxed{1,000}` equals `1000`. A completion is read
only through math-verify's LaTeX extraction (`\\boxed{...}`, `$...$`, "final answer is ..."), which parses LaTeX
with a grammar; its plain-expression extraction, which hands text to sympy's `parse_expr` (an `eval`), is used
for the trusted reference answers only, so model output is never executed. Parsing and comparing each get a
timeout (math-verify's `signal.alarm`, main thread only), so a pathological expression such as
`\\boxed{9^{9^{9^{9}}}}` costs seconds, not minutes; an empty, unparseable or timed-out completion scores 0.0.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from typing import Any

TIMEOUT_SECONDS = 3

# math-verify logs each timeout and parse failure; the reward already records them as 0.0.
logging.getLogger("math_verify").setLevel(logging.CRITICAL)


def _math_verify():
  try:
    import math_verify
  except ImportError as error:
    raise ImportError("math_verify_reward needs the PyPI package math-verify (a dependency of darling_jax): "
                      "pip install math-verify") from error
  return math_verify


@functools.lru_cache(maxsize=4096)
def parse_reference(answer: str) -> tuple:
  """math-verify's parse of a trusted reference answer (plain, `$...$` or `\\boxed{}`), cached."""
  mv = _math_verify()
  answer = str(answer).strip()
  for text in (answer, f"${answer}$", f"\\boxed{{{answer}}}"):
    parsed = mv.parse(text, parsing_timeout=TIMEOUT_SECONDS)
    if parsed:
      return tuple(parsed)
  return ()


def parse_completion(completion: str) -> list:
  """math-verify's LaTeX-only parse of a model completion (never `eval`-ed; see the module docstring)."""
  mv = _math_verify()
  config = [mv.LatexExtractionConfig(boxed_match_priority=0)]
  try:
    return mv.parse(completion, extraction_config=config, parsing_timeout=TIMEOUT_SECONDS)
  except Exception:  # noqa: BLE001 - any failure to read an answer is a wrong answer
    return []


@functools.lru_cache(maxsize=65536)
def answers_match(reference: str, completion: str) -> bool:
  """Whether `completion`'s final answer equals `reference` under math-verify (timeouts give False; cached, so a
  trainer's metrics and its reward check each completion once)."""
  gold = parse_reference(reference)
  if not gold or not completion or not completion.strip():
    return False
  predicted = parse_completion(completion)
  if not predicted:
    return False
  try:
    return bool(_math_verify().verify(list(gold), predicted, timeout_seconds=TIMEOUT_SECONDS))
  except Exception:  # noqa: BLE001
    return False


@functools.lru_cache(maxsize=65536)
def extracted_answer(completion: str) -> str | None:
  """The completion's final answer as math-verify reads it (its string form), None if there is none."""
  predicted = parse_completion(completion) if completion and completion.strip() else []
  return str(predicted[-1]) if predicted else None


def math_verify_reward(prompts: Sequence[str], completions: Sequence[str], *, answer: Sequence[Any],
                       **_: Any) -> list[float]:
  """TRL-style reward function: 1.0 where the completion's answer equals `answer` (math-verify), else 0.0.

  Args:
    prompts: the prompts (unused).
    completions: the completion texts.
    answer: the reference answer of each completion (the dataset's `answer` column, repeated per completion).

  Raises:
    RuntimeError: called outside the main thread (math-verify's timeouts use `signal.alarm`).
  """
  del prompts
  if threading.current_thread() is not threading.main_thread():
    raise RuntimeError("math_verify_reward must run in the main thread: math-verify's timeouts use signal.alarm")
  if len(answer) != len(completions):
    raise ValueError(f"math_verify_reward got {len(answer)} answers for {len(completions)} completions")
  return [1.0 if answers_match(str(ref), text) else 0.0 for ref, text in zip(answer, completions)]
