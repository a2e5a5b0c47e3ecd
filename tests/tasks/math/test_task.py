import json
import re

import numpy as np
import pytest

from darling_jax.data import prompt_loader
from darling_jax.tasks import EvalContext, make_task
from darling_jax.tasks.math import ArithmeticConfig, arithmetic_problems
from tests.chat_fixtures import chat_tokenizer

SHOT = ("Kim has 2 pens. Kim gets 3 more pens. How many pens does Kim have now?", "2 + 3 = 5. \\boxed{5}")


def _solve(question: str) -> int:
  numbers = [int(x) for x in re.findall(r"\d+", question)]
  if "more" in question:
    return numbers[0] + numbers[1]
  if "gives away" in question:
    return numbers[0] - numbers[1]
  return numbers[0] * numbers[1]


def test_arithmetic_problems_are_deterministic_disjoint_and_right():
  config = ArithmeticConfig(seed=3, num_train=300, num_test=40)
  problems = arithmetic_problems(config)
  assert problems == arithmetic_problems(config) and problems != arithmetic_problems(ArithmeticConfig(seed=4))
  assert len(problems["train"]) == 300 and len(problems["test"]) == 40
  train, test = ({p["question"] for p in problems[s]} for s in ("train", "test"))
  assert len(train) == 300 and not train & test
  for problem in problems["train"] + problems["test"]:
    assert int(problem["answer"]) == _solve(problem["question"])
  smaller = arithmetic_problems(ArithmeticConfig(seed=3, num_train=10, num_test=40))
  assert smaller["test"] == problems["test"]  # the test split does not depend on num_train


def test_settings_errors_name_the_key(tmp_path):
  with pytest.raises(ValueError, match=r"task.bogus"):
    make_task({"name": "math", "bogus": 1})
  with pytest.raises(FileNotFoundError, match="task.train_file"):
    make_task({"name": "math", "train_file": str(tmp_path / "none.jsonl"), "test_file": str(tmp_path / "x")})
  with pytest.raises(ValueError, match="task.arithmetic.operations"):
    make_task({"name": "math", "arithmetic": {"operations": ("divide",)}})
  with pytest.raises(ValueError, match=r"task.shots\[0\]"):
    make_task({"name": "math", "shots": (("only a question",),)})
  with pytest.raises(ValueError, match="unknown task 'nope'"):
    make_task({"name": "nope"})


def test_jsonl_files_prompts_and_chat_template(tmp_path):
  train_file, test_file = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
  train_file.write_text("".join(json.dumps({"question": f"What is {i} + 1?", "answer": f"Work.\n#### {i + 1}"}) + "\n"
                                for i in range(5)))
  test_file.write_text(json.dumps({"problem": "Big?", "solution": "It is \\boxed{1,000}."}) + "\n")
  task = make_task({"name": "math", "train_file": str(train_file), "test_file": str(test_file),
                    "system_prompt": "Be brief.", "shots": (SHOT,)})
  data = task.prepare_data(tmp_path / "data")
  batch = next(iter(prompt_loader(data.train, data.train_split, batch_size=5, seed=0, shuffle=False)))
  assert {q: a for q, a in zip(batch["prompt"], batch["answer"])} == {f"What is {i} + 1?": str(i + 1)
                                                                        for i in range(5)}
  tokenizer = chat_tokenizer()
  text = tokenizer.decode(task.prompt_ids({"prompt": ["What is 0 + 1?"]}, tokenizer)[0])
  assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                  f"<|im_start|>user\n{SHOT[0]} Put your final answer in \\boxed{{}}.<|im_end|>\n"
                  f"<|im_start|>assistant\n{SHOT[1]}<|im_end|>\n"
                  "<|im_start|>user\nWhat is 0 + 1? Put your final answer in \\boxed{}.<|im_end|>\n"
                  "<|im_start|>assistant\n")
  eval_batch = next(iter(prompt_loader(data.eval, data.eval_split, batch_size=1, seed=0, shuffle=False)))
  assert eval_batch["answer"] == ["1,000"]
  with pytest.raises(ValueError, match="has no chat template"):
    task.check_tokenizer(chat_tokenizer(chat_template=False), "a/model")
  prompt_only = tmp_path / "prompts.jsonl"
  prompt_only.write_text(json.dumps({"prompt": "Name a colour."}) + "\n")
  with pytest.raises(ValueError, match="has no answers"):
    make_task({"name": "math", "train_file": str(prompt_only), "test_file": str(prompt_only)}).prepare_data(
        tmp_path / "data2")


def test_evaluation_and_rollout_metrics_from_given_responses():
  task = make_task({"name": "math"})
  batch = {"prompt": ["a?", "b?"], "answer": ["4", "10"]}
  responses = [["\\boxed{4}", "so \\boxed{4}", "\\boxed{5}", "nothing"],
               ["\\boxed{9}", "\\boxed{9}", "\\boxed{9}", "\\boxed{10}"]]
  metrics = task.rollout_metrics(responses, None, batch, None)
  assert metrics == {"pass_rate": 3 / 8, "distinct_answers": 2.5}  # {4, 5, None} and {9, 10}
  context = EvalContext(sample=lambda b, n: responses, quality=lambda b, texts: np.zeros((2, 4)),
                        batches=lambda: [batch], num_samples=4)
  result = task.evaluate(context)
  assert result["problems"] == 2 and result["pass@1"] == pytest.approx(3 / 8)
  assert result["pass@4"] == 1.0 and result["pass@2"] == pytest.approx((5 / 6 + 1 / 2) / 2)
  assert result["distinct_answers@4"] == 2.5 and result["distinct_correct@4"] == 1.5
  assert result["answered"] == pytest.approx(7 / 8)
