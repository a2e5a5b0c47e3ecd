import time

import pytest

from darling_jax.quality.math_verify import extracted_answer, math_verify_reward


@pytest.mark.parametrize("completion, answer, expected", [
    ("So the total is \\boxed{\\frac{1}{2}}.", "0.5", 1.0),
    ("\\boxed{0.5}", "1/2", 1.0),
    ("There are \\boxed{1,000} marbles.", "1000", 1.0),
    ("The answer is $12$.", "12", 1.0),
    ("\\boxed{72 apples}", "72", 1.0),
    ("\\boxed{13}", "12", 0.0),
    ("The answer is 12.", "12", 0.0),       # no LaTeX answer: plain text is not read (see the module docstring)
    ("", "12", 0.0),
    ("   ", "12", 0.0),
    ("\\boxed{", "12", 0.0),
    ("\\boxed{__import__('os').system('echo pwned')}", "0", 0.0),
    ("x = 1; import os; os.remove('/tmp/x')", "1", 0.0),
])
def test_answers_equal_under_math_verify(completion, answer, expected):
  assert math_verify_reward(["q"], [completion], answer=[answer]) == [expected]


def test_gsm8k_and_latex_references():
  completions = ["\\boxed{18}", "\\boxed{\\sqrt{2}}", "\\boxed{2^{10}}"]
  assert math_verify_reward(["q"] * 3, completions, answer=["18", "\\sqrt{2}", "1024"]) == [1.0, 1.0, 1.0]


def test_a_pathological_expression_costs_seconds_not_minutes():
  started = time.perf_counter()
  assert math_verify_reward(["q"], ["\\boxed{9^{9^{9^{9}}}}"], answer=["3"]) == [0.0]
  assert time.perf_counter() - started < 20


def test_extracted_answer_and_argument_errors():
  assert extracted_answer("so \\boxed{7}") == "7" and extracted_answer("no answer here") is None
  with pytest.raises(ValueError, match="2 answers for 1 completions"):
    math_verify_reward(["q"], ["\\boxed{1}"], answer=["1", "2"])
