"""Generated one-step arithmetic word problems ("Anna has 7 pencils. Anna gets 5 more pencils. How many pencils
does Anna have now?"), written as question / answer JSONL files for the `math` task.

A set that small pretrained policies partly solve: SmolLM2-135M-Instruct answers GSM8K almost never, and these
in about one case of five (see README). Problems are a deterministic function of the options; the train and test
problems are disjoint (no question text in both).

    train_path, test_path = write_arithmetic_problems(directory, ArithmeticConfig(num_train=2000, num_test=100))
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np

NAMES = ("Anna", "Ben", "Carlos", "Dana", "Emma", "Finn", "Grace", "Hugo", "Iris", "Jack", "Lena", "Mia", "Noah",
         "Omar", "Priya", "Sam")
ITEMS = ("apples", "books", "cards", "coins", "cookies", "marbles", "pencils", "shells", "stickers", "stamps")
OPERATIONS = ("add", "subtract", "multiply")


@dataclasses.dataclass(frozen=True)
class ArithmeticConfig:
  """Options of the generated problems.

  Attributes:
    seed: seed of both splits.
    num_train, num_test: problems per split.
    max_operand: operands are drawn from [2, max_operand] (a difference's first operand is their sum).
    operations: a subset of `OPERATIONS`.
  """

  seed: int = 0
  num_train: int = 2000
  num_test: int = 100
  max_operand: int = 9
  operations: tuple[str, ...] = OPERATIONS

  def __post_init__(self):
    object.__setattr__(self, "operations", tuple(self.operations))
    if not self.operations or set(self.operations) - set(OPERATIONS):
      raise ValueError(f"task.arithmetic.operations must be a non-empty subset of {OPERATIONS}, got "
                       f"{self.operations}")
    for name in ("num_train", "num_test"):
      if getattr(self, name) < 1:
        raise ValueError(f"task.arithmetic.{name} must be >= 1, got {getattr(self, name)}")
    if self.max_operand < 2:
      raise ValueError(f"task.arithmetic.max_operand must be >= 2, got {self.max_operand}")
    possible = len(NAMES) * len(ITEMS) * (self.max_operand - 1) ** 2 * len(self.operations)
    if self.num_train + self.num_test > possible // 2:
      raise ValueError(f"task.arithmetic asks for {self.num_train + self.num_test} problems, too many for "
                       f"{possible} possible ones: raise max_operand or lower num_train / num_test")

  @property
  def name(self) -> str:
    return (f"seed{self.seed}_train{self.num_train}_test{self.num_test}_max{self.max_operand}_"
            + "_".join(self.operations))


def word_problem(rng: np.random.Generator, config: ArithmeticConfig) -> dict[str, str]:
  """One problem: `{"question": ..., "answer": "12"}`."""
  name = NAMES[int(rng.integers(len(NAMES)))]
  item = ITEMS[int(rng.integers(len(ITEMS)))]
  a, b = (int(x) for x in rng.integers(2, config.max_operand + 1, size=2))
  operation = config.operations[int(rng.integers(len(config.operations)))]
  if operation == "add":
    question = f"{name} has {a} {item}. {name} gets {b} more {item}. How many {item} does {name} have now?"
    answer = a + b
  elif operation == "subtract":
    question = (f"{name} has {a + b} {item}. {name} gives away {b} {item}. How many {item} does {name} have "
                "left?")
    answer = a
  else:
    question = f"{name} has {a} bags with {b} {item} in each bag. How many {item} does {name} have?"
    answer = a * b
  return {"question": question, "answer": str(answer)}


def arithmetic_problems(config: ArithmeticConfig) -> dict[str, list[dict[str, str]]]:
  """`{"train": [...], "test": [...]}`: distinct problems, test drawn first from `[seed, 1]`, train from
  `[seed, 0]` skipping every question already drawn."""
  seen: set[str] = set()
  splits = {}
  for split, stream, count in (("test", 1, config.num_test), ("train", 0, config.num_train)):
    rng = np.random.default_rng([config.seed, stream])
    problems = []
    while len(problems) < count:
      problem = word_problem(rng, config)
      if problem["question"] not in seen:
        seen.add(problem["question"])
        problems.append(problem)
    splits[split] = problems
  return splits


def write_arithmetic_problems(directory: str | os.PathLike, config: ArithmeticConfig) -> tuple[str, str]:
  """Writes `train.jsonl` and `test.jsonl` (once) under `directory/<config name>/`; returns their paths."""
  target = pathlib.Path(directory) / config.name
  paths = target / "train.jsonl", target / "test.jsonl"
  if not all(path.exists() for path in paths):
    target.mkdir(parents=True, exist_ok=True)
    splits = arithmetic_problems(config)
    for path, split in zip(paths, ("train", "test")):
      tmp = path.with_suffix(".tmp")
      tmp.write_text("".join(json.dumps(problem) + "\n" for problem in splits[split]))
      os.replace(tmp, path)
  return str(paths[0]), str(paths[1])
