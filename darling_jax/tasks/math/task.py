"""Math as a DARLING task: question / answer prompt sets, prompts in the policy's chat template with an instruction
to put the answer in `\\boxed{}`, quality from math-verify (arXiv 2509.02534 §5: the math runs' binary reward;
prompt type "qwen-boxed" in the paper's evaluation).

The task's settings (the run config's `task` section besides `name`):

* `train_file`, `test_file`: JSONL files with a question (`question` / `problem` / `prompt`) and an answer
  (`answer` / `final_answer` / `solution`; GSM8K's `#### N` and MATH's last `\\boxed{}` are read as the answer,
  `darling_jax.data.jsonl_prompts`); or, when `train_file` is empty, `arithmetic`: options of generated arithmetic
  word problems (`ArithmeticConfig`);
* `instruction`: appended to each question (default: put the final answer in `\\boxed{}`);
* `system_prompt`: a system message (None: the chat template's default);
* `shots`: `(question, response)` pairs rendered as earlier chat turns before the question (few-shot; small
  policies learn the answer format from them).

Evaluation (`evaluate`): unbiased pass@k; the mean number of distinct final answers and of distinct correct
responses (whitespace-normalised text, and the pair classifier's classes when the run has one) per problem;
the share of responses with a readable final answer.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from darling_jax.config_sections import dataclass_from_section
from darling_jax.data import prepare_jsonl_prompts
from darling_jax.diversity import partition
from darling_jax.evaluation.pass_at_k import pass_at_k, report_ks
from darling_jax.quality.math_verify import answers_match, extracted_answer
from darling_jax.tasks.base import EvalContext, Task, TaskData
from darling_jax.tasks.math.arithmetic import ArithmeticConfig, write_arithmetic_problems

DEFAULT_INSTRUCTION = "Put your final answer in \\boxed{}."


@dataclasses.dataclass(frozen=True)
class MathSettings:
  """The `task` section of a math run (see the module docstring)."""

  train_file: str = ""
  test_file: str = ""
  arithmetic: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  instruction: str = DEFAULT_INSTRUCTION
  system_prompt: str | None = None
  shots: tuple = ()

  def __post_init__(self):
    for name in ("train_file", "test_file"):
      path = getattr(self, name)
      if path and not pathlib.Path(path).expanduser().is_file():
        raise FileNotFoundError(f"task.{name} {path!r} does not exist")
    if bool(self.train_file) != bool(self.test_file):
      raise ValueError("task.train_file and task.test_file go together (empty both for generated arithmetic)")
    for index, shot in enumerate(self.shots):
      if len(shot) != 2 or not all(isinstance(part, str) for part in shot):
        raise ValueError(f"task.shots[{index}] must be a (question, response) pair of texts, got {shot!r}")


def normalized(text: str) -> str:
  return " ".join(text.split())


class MathTask(Task):
  """Math question / answer sets checked with math-verify (see the module docstring)."""

  name = "math"
  needs_chat_template = True
  curves = (("pass_rate", "pass rate"), ("distinct_answers", "distinct answers / group"))

  def __init__(self, config: Mapping[str, Any] | None = None):
    super().__init__(config)
    self.settings = dataclass_from_section(self.config, MathSettings, "task")
    self.arithmetic = None
    if not self.settings.train_file:
      self.arithmetic = dataclass_from_section(self.settings.arithmetic, ArithmeticConfig, "task.arithmetic")
    self._prompt_cache: dict[tuple[int, str], list[int]] = {}

  def prepare_data(self, data_dir: pathlib.Path) -> TaskData:
    s = self.settings
    if self.arithmetic is not None:
      train_file, test_file = write_arithmetic_problems(pathlib.Path(data_dir) / "arithmetic", self.arithmetic)
    else:
      train_file, test_file = (str(pathlib.Path(p).expanduser()) for p in (s.train_file, s.test_file))
    train = prepare_jsonl_prompts(data_dir, train_file, split="train")
    test = prepare_jsonl_prompts(data_dir, test_file, split="test")
    for builder, split, path in ((train, "train", train_file), (test, "test", test_file)):
      first = builder.as_data_source(split)[0]
      if not first["answer"]:
        raise ValueError(f"{path} has no answers (a prompt-only file): the math task needs question / answer rows")
    return TaskData(train=train, train_split="train", eval=test, eval_split="test")

  def messages(self, question: str) -> list[dict[str, str]]:
    """The chat of one prompt: the system prompt, the shots, then the question with the instruction."""
    s = self.settings
    ask = (lambda text: f"{text} {s.instruction}".strip())
    chat = [] if s.system_prompt is None else [{"role": "system", "content": s.system_prompt}]
    for shot_question, shot_response in s.shots:
      chat += [{"role": "user", "content": ask(shot_question)}, {"role": "assistant", "content": shot_response}]
    return chat + [{"role": "user", "content": ask(question)}]

  def prompt_ids(self, batch: dict[str, Any], tokenizer) -> list[list[int]]:
    rows = []
    for question in batch["prompt"]:
      key = (id(tokenizer), str(question))
      if key not in self._prompt_cache:
        self._prompt_cache[key] = list(tokenizer.apply_chat_template(
            self.messages(str(question)), add_generation_prompt=True, tokenize=True, return_dict=False))
      rows.append(self._prompt_cache[key])
    return rows

  def quality_functions(self):
    return [("math_verify", 1.0)]

  def rollout_metrics(self, completions, quality, batch, oracle) -> dict[str, float]:
    """pass_rate (math-verify correct share, whatever the configured quality) and distinct_answers (distinct
    final answers per group, "no answer" counting as one)."""
    correct = _correct(completions, batch["answer"])
    answers = [len({extracted_answer(text) for text in group}) for group in completions]
    return {"pass_rate": float(correct.mean()), "distinct_answers": float(np.mean(answers))}

  def evaluate(self, context: EvalContext) -> dict[str, float]:
    n = context.num_samples
    correct_counts, distinct_answers, distinct_correct, classes_correct, answered, quality = [], [], [], [], [], []
    for batch in context.batches():
      texts = context.sample(batch, n)
      correct = _correct(texts, batch["answer"])
      quality.append(np.asarray(context.quality(batch, texts)).mean(axis=1))
      correct_counts.extend(correct.sum(axis=1).tolist())
      for group, ok in zip(texts, correct):
        answers = [extracted_answer(text) for text in group]
        answered.append(np.mean([a is not None for a in answers]))
        distinct_answers.append(len(set(answers)))
        distinct_correct.append(len({normalized(text) for text, good in zip(group, ok) if good}))
      if context.equivalence is not None:
        equivalent, _ = context.equivalence(texts)
        class_ids = np.asarray(partition(equivalent))
        classes_correct.extend(len(set(ids[ok])) for ids, ok in zip(class_ids, correct))
    if not correct_counts:
      raise ValueError("the math evaluation got no problems")
    counts = np.asarray(correct_counts)
    metrics = {"problems": float(len(counts))}
    for k in report_ks(n):
      metrics[f"pass@{k}"] = float(np.mean(pass_at_k(n, counts, k)))
    metrics.update({f"distinct_answers@{n}": float(np.mean(distinct_answers)),
                    f"distinct_correct@{n}": float(np.mean(distinct_correct)),
                    "answered": float(np.mean(answered)), "quality": float(np.mean(np.concatenate(quality)))})
    if classes_correct:
      metrics[f"distinct_correct_classes@{n}"] = float(np.mean(classes_correct))
    return metrics


def _correct(completions: Sequence[Sequence[str]], answers: Sequence[Any]) -> np.ndarray:
  """bool `[B, G]`: math-verify's verdict of each completion against its prompt's answer."""
  return np.asarray([[answers_match(str(answer), text) for text in group]
                     for group, answer in zip(completions, answers)], bool)
