"""Open-ended prompts as a DARLING task: the paper's non-verifiable setting (arXiv 2509.02534 §4: WildChat
prompts, quality from a reward model, diversity from the NoveltyBench classifier), evaluated as NoveltyBench does.

The task's settings (the run config's `task` section besides `name`):

* `train_file`, `test_file`: JSONL files of prompts (a `prompt` field, or see `darling_jax.data.jsonl_prompts`),
  e.g. NoveltyBench's `wildchat-1k.jsonl` for training and `curated.jsonl` for evaluation;
* `system_prompt`: a system message before each prompt (None: the chat template's default);
* `patience`: NoveltyBench's p of utility (1.0, DARLING's setting: the mean over the k generations of the quality
  of each class's first member).

Quality: the run's reward functions; the task's default is the reward model at `quality.reward_model` (a decoder
`*ForSequenceClassification` with one label, `darling_jax.quality.RewardModel`). Without one (none installs
offline), `quality.functions=("prompt_relevance",)` is the documented stand-in (`darling_jax.quality.relevance`:
prompt-response embedding cosine × a repetition and copy penalty; `configs/smollm2_noveltybench.py`).
Evaluation (`evaluate`), per prompt over k = `eval.num_samples` generations: NoveltyBench's greedy partition of
the pair classifier's verdicts (each response compared with the first member of each earlier class,
`evaluation.novelty.greedy_partition`), `distinct@k` = its number of classes, `utility@k` = the patience-weighted
quality of each class's first member (`novelty_utility`; NoveltyBench scores quality as reward-model deciles
1..10, here it is the run's quality as is), and the mean quality. Without a pair classifier, classes are
whitespace-normalised identical texts (`distinct_text@k`, `utility_text@k`).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from darling_jax.config_sections import check_fields, dataclass_from_section
from darling_jax.data import prepare_jsonl_prompts
from darling_jax.evaluation.novelty import greedy_partition, novelty_distinct, novelty_utility
from darling_jax.tasks.base import EvalContext, Task, TaskData


@dataclasses.dataclass(frozen=True)
class OpenEndedSettings:
  """The `task` section of an open-ended run (see the module docstring)."""

  train_file: str = ""
  test_file: str = ""
  system_prompt: str | None = None
  patience: float = 1.0

  def __post_init__(self):
    for name in ("train_file", "test_file"):
      path = getattr(self, name)
      if not path:
        raise ValueError(f"task.{name} is empty: name a JSONL file of prompts")
      if not pathlib.Path(path).expanduser().is_file():
        raise FileNotFoundError(f"task.{name} {path!r} does not exist")
    check_fields(self, "task", (("patience", 0 < self.patience <= 1, "in (0, 1]"),))


class OpenEndedTask(Task):
  """Prompts without reference answers, judged by a reward model (see the module docstring)."""

  name = "open_ended"
  needs_chat_template = True

  def __init__(self, config: Mapping[str, Any] | None = None):
    super().__init__(config)
    self.settings = dataclass_from_section(self.config, OpenEndedSettings, "task")
    self._prompt_cache: dict[tuple[int, str], list[int]] = {}

  def prepare_data(self, data_dir: pathlib.Path) -> TaskData:
    s = self.settings
    train = prepare_jsonl_prompts(data_dir, pathlib.Path(s.train_file).expanduser(), split="train")
    test = prepare_jsonl_prompts(data_dir, pathlib.Path(s.test_file).expanduser(), split="test")
    return TaskData(train=train, train_split="train", eval=test, eval_split="test")

  def prompt_ids(self, batch: dict[str, Any], tokenizer) -> list[list[int]]:
    system = self.settings.system_prompt
    rows = []
    for prompt in self.prompts(batch):
      key = (id(tokenizer), prompt)
      if key not in self._prompt_cache:
        chat = ([] if system is None else [{"role": "system", "content": system}]) + [
            {"role": "user", "content": prompt}]
        self._prompt_cache[key] = list(tokenizer.apply_chat_template(chat, add_generation_prompt=True,
                                                                     tokenize=True, return_dict=False))
      rows.append(self._prompt_cache[key])
    return rows

  def quality_functions(self):
    return [("reward_model", 1.0)]

  def reward_columns(self, batch: dict[str, Any]) -> dict[str, list]:
    return {}  # prompts only: the reward functions get the prompt and the completion

  def evaluate(self, context: EvalContext) -> dict[str, float]:
    n = context.num_samples
    qualities, distinct, utility = [], [], []
    for batch in context.batches():
      texts = context.sample(batch, n)
      quality = np.asarray(context.quality(batch, texts), np.float32)  # [B, n]
      if context.equivalence is not None:
        equivalent, _ = context.equivalence(texts)
      else:
        normalised = [[" ".join(text.split()) for text in group] for group in texts]
        equivalent = np.asarray([[[a == b for b in group] for a in group] for group in normalised])
      class_ids = greedy_partition(np.asarray(equivalent, bool))
      distinct.extend(np.asarray(novelty_distinct(class_ids)).tolist())
      utility.extend(np.asarray(novelty_utility(class_ids, quality, self.settings.patience)).tolist())
      qualities.append(quality.reshape(-1))
    if not distinct:
      raise ValueError(f"task {self.name!r}: the evaluation split gave no prompts")
    suffix = "" if context.equivalence is not None else "_text"
    return {"prompts": float(len(distinct)), "quality": float(np.mean(np.concatenate(qualities))),
            f"distinct{suffix}@{n}": float(np.mean(distinct)), f"utility{suffix}@{n}": float(np.mean(utility))}
