"""Countdown problems as a TF-free tensorflow-datasets builder: array_record files read with grain.

Each example is one problem of `darling_jax.tasks.countdown.problems` with at least `min_strategies` distinct correct
strategies, found by brute-force enumeration (`enumerate_solutions`) and stored with it:

* `numbers` (int32 sequence) and `target` (int32): the problem;
* `prompt` (text): `format_prompt(numbers, target)`;
* `solutions` (sequence of text): one readable expression per distinct correct strategy (each scores 1 and the
  strategy ids are pairwise distinct), sorted by canonical form;
* `canonical_forms` (sequence of text): the canonical form of each solution, in the same order;
* `num_strategies` (int32): the number of distinct correct strategies (`len(solutions)`).

The splits are a deterministic function of the config. The test problems come from their own random stream
(seeded by `[seed, 1]`), so the test split does not change when `num_train` does; the train problems come
from the stream `[seed, 0]`, skipping any problem already drawn. A problem is its multiset of numbers and its
target, so no problem (in any order of its numbers) is in both splits or twice in one.

Nothing is ever downloaded: `prepare_countdown` writes the splits into `data_dir` once, offline, and later
calls with the same options reuse them. The config name encodes every option, so different options never
collide:

  builder = prepare_countdown("/tmp/darling_data", seed=0, num_train=1000, num_test=100)
  source = builder.as_data_source("train")   # random access; see `darling_jax.data.loader.prompt_loader`
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from darling_jax.data.loader import prepare_offline
from darling_jax.tasks.countdown.problems import (
    MAX_ENUMERATION_NUMBERS,
    checked_int,
    enumerate_solutions,
    format_prompt,
    generate_problem,
)
from darling_jax.tasks.countdown.expression import MAX_LITERAL_DIGITS

# Consecutive draws that all repeat an earlier problem before generation gives up: the settings admit too few
# distinct problems for the requested split sizes.
_MAX_REPEATED_DRAWS = 1_000
_MAX_NUMBER = 10**MAX_LITERAL_DIGITS - 1
_TRAIN_STREAM, _TEST_STREAM = 0, 1


@dataclasses.dataclass(eq=False)
class CountdownConfig(tfds.core.BuilderConfig):
  """The options of a Countdown dataset; the name is derived from them (leave it empty).

  Attributes:
    seed: Seed of both splits (non-negative int).
    num_train: Number of train problems.
    num_test: Number of test problems.
    num_numbers: Numbers per problem, in [1, MAX_ENUMERATION_NUMBERS].
    max_number: Numbers are drawn uniformly from [1, max_number].
    min_strategies: Only problems with at least this many distinct correct strategies are kept.
    target_range: Targets are drawn uniformly from [low, high] (inclusive).
  """

  name: str = ""
  seed: int = 0
  num_train: int = 1000
  num_test: int = 100
  num_numbers: int = 4
  max_number: int = 10
  min_strategies: int = 3
  target_range: tuple[int, int] = (10, 100)

  def __post_init__(self):
    self.seed = checked_int(self.seed, "seed")
    if self.seed < 0:
      raise ValueError(f"seed must be a non-negative int, got {self.seed}")
    for field in ("num_train", "num_test"):
      value = checked_int(getattr(self, field), field)
      if value < 0:
        raise ValueError(f"{field} must be a non-negative int, got {value}")
      setattr(self, field, value)
    if self.num_train + self.num_test == 0:
      raise ValueError("num_train and num_test are both 0: the dataset would be empty")
    self.num_numbers = checked_int(self.num_numbers, "num_numbers")
    if not 1 <= self.num_numbers <= MAX_ENUMERATION_NUMBERS:
      raise ValueError(f"num_numbers must be in [1, {MAX_ENUMERATION_NUMBERS}], got {self.num_numbers}")
    self.max_number = checked_int(self.max_number, "max_number")
    if not 1 <= self.max_number <= _MAX_NUMBER:
      raise ValueError(f"max_number must be in [1, {_MAX_NUMBER}], got {self.max_number}")
    self.min_strategies = checked_int(self.min_strategies, "min_strategies")
    if self.min_strategies < 1:
      raise ValueError(f"min_strategies must be >= 1, got {self.min_strategies}")
    if not isinstance(self.target_range, (tuple, list)) or len(self.target_range) != 2:
      raise ValueError(f"target_range must be a (low, high) pair, got {self.target_range!r}")
    self.target_range = tuple(checked_int(bound, "target_range bound") for bound in self.target_range)
    if not 0 <= self.target_range[0] <= self.target_range[1]:
      raise ValueError(f"target_range must satisfy 0 <= low <= high, got {self.target_range!r}")
    derived_name = self.options_name()
    if not self.name:
      self.name = derived_name
    elif self.name != derived_name:
      raise ValueError(f"a CountdownConfig's name encodes its options: leave it empty (it would be "
                       f"{derived_name!r}), got {self.name!r}")
    if not self.description:
      low, high = self.target_range
      self.description = (f"Countdown: {self.num_numbers} numbers in [1, {self.max_number}], targets in "
                          f"[{low}, {high}], >= {self.min_strategies} strategies")

  def generation_options(self) -> dict[str, Any]:
    """The keyword arguments of `generate_problem` other than `min_strategies`."""
    return {"num_numbers": self.num_numbers, "max_number": self.max_number, "target_range": self.target_range}

  def options_name(self) -> str:
    """A directory-safe name that encodes every option."""
    low, high = self.target_range
    return (f"seed{self.seed}_train{self.num_train}_test{self.num_test}_numbers{self.num_numbers}"
            f"_max{self.max_number}_min{self.min_strategies}_targets{low}to{high}")


def _problem_key(numbers: list[int], target: int) -> tuple[tuple[int, ...], int]:
  return tuple(sorted(numbers)), target


def _draw_problems(config: CountdownConfig, stream: int, count: int,
                   taken: set[tuple[tuple[int, ...], int]]) -> list[dict[str, Any]]:
  """`count` problems from the random stream `[seed, stream]`, none of whose keys is in `taken` (updated)."""
  rng = np.random.default_rng([config.seed, stream])
  problems = []
  repeated_draws = 0
  while len(problems) < count:
    problem = generate_problem(rng, min_strategies=config.min_strategies, **config.generation_options())
    key = _problem_key(problem["numbers"], problem["target"])
    if key in taken:
      repeated_draws += 1
      if repeated_draws >= _MAX_REPEATED_DRAWS:
        raise ValueError(
            f"could not find {count} distinct Countdown problems (found {len(problems)}; the last "
            f"{_MAX_REPEATED_DRAWS} draws all repeated earlier ones): {config.name} admits too few problems "
            "for the requested split sizes")
      continue
    repeated_draws = 0
    taken.add(key)
    problems.append(problem)
  return problems


def _example(numbers: list[int], target: int, canonical_forms: list[str],
             solutions: list[str]) -> dict[str, Any]:
  return {
      "numbers": np.asarray(numbers, np.int32),
      "target": np.int32(target),
      "prompt": format_prompt(numbers, target),
      "solutions": list(solutions),
      "canonical_forms": list(canonical_forms),
      "num_strategies": np.int32(len(canonical_forms)),
  }


def countdown_example(numbers: list[int], target: int) -> dict[str, Any]:
  """The stored example of one problem: prompt, every distinct strategy and their count.

  Args:
    numbers: The problem's numbers.
    target: The target.

  Returns:
    A dict with the builder's features (`numbers`, `target`, `prompt`, `solutions`, `canonical_forms`,
    `num_strategies`).
  """
  strategies = enumerate_solutions(numbers, target)
  canonical_forms = sorted(strategies)
  return _example(numbers, target, canonical_forms, [strategies[canonical] for canonical in canonical_forms])


def countdown_problems(config: CountdownConfig) -> dict[str, list[dict[str, Any]]]:
  """The examples of both splits (`{"train": [...], "test": [...]}`), a deterministic function of `config`.

  Raises:
    ValueError: The settings admit too few distinct problems for the requested sizes.
  """
  taken: set[tuple[tuple[int, ...], int]] = set()
  test = _draw_problems(config, _TEST_STREAM, config.num_test, taken)
  train = _draw_problems(config, _TRAIN_STREAM, config.num_train, taken)
  # generate_problem's `solutions` are the sorted canonical forms, `example_solutions` a spelling of each.
  return {split: [_example(problem["numbers"], problem["target"], problem["solutions"],
                           problem["example_solutions"]) for problem in problems]
          for split, problems in (("train", train), ("test", test))}


class CountdownBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Countdown problems with their distinct correct strategies; see the module docstring.

  Construct it with `config=CountdownConfig(...)` (or use `prepare_countdown`); it writes array_record files
  and never downloads. Not registered with `tfds.builder`: import it.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  name = "darling_countdown"

  def __init__(self, *, data_dir: str | os.PathLike[str], config: CountdownConfig | None = None, **kwargs):
    # No BUILDER_CONFIGS: tfds refuses a custom config named like a listed one, and our names are derived.
    if config is None:
      config = CountdownConfig()
    if not isinstance(config, CountdownConfig):
      raise TypeError(f"config must be a CountdownConfig, got {type(config).__name__}")
    super().__init__(data_dir=data_dir, config=config, file_format="array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo directly, not `dataset_info_from_configs`, which reads metadata files from this folder.
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.builder_config.description,
        features=tfds.features.FeaturesDict({
            "numbers": tfds.features.Sequence(np.int32),
            "target": np.int32,
            "prompt": tfds.features.Text(),
            "solutions": tfds.features.Sequence(tfds.features.Text()),
            "canonical_forms": tfds.features.Sequence(tfds.features.Text()),
            "num_strategies": np.int32,
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: every problem is generated.
    problems = countdown_problems(self.builder_config)
    return {split: self._generate_examples(examples) for split, examples in problems.items() if examples}

  def _generate_examples(self, examples: list[dict[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
    # tfds orders the stored records by a hash of these keys: a fixed permutation of the generation order.
    yield from enumerate(examples)


def prepare_countdown(data_dir: str | os.PathLike[str], **options: Any) -> CountdownBuilder:
  """The Countdown builder for `options`, its splits written into `data_dir` once (offline) and reused after.

  Args:
    data_dir: Directory holding prepared datasets (the data goes to
      `data_dir/darling_countdown/<config name>/1.0.0`).
    **options: `CountdownConfig` fields: seed, num_train, num_test, num_numbers, max_number, min_strategies,
      target_range.

  Returns:
    The prepared builder; read it with `builder.as_data_source(split)` or `prompt_loader`.

  Raises:
    ValueError: An invalid option, or settings that admit too few distinct problems.
    TypeError: An unknown option.
  """
  config = CountdownConfig(**options)
  return prepare_offline(CountdownBuilder(data_dir=data_dir, config=config))
