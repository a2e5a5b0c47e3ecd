"""Local JSONL prompt sets (math question/answer sets, NoveltyBench prompts) as a TF-free tfds builder.

One JSON object per line (blank lines are skipped). Each record becomes one example with the features

* `prompt` (text): the first of the fields "question", "problem", "prompt" the record has (or `prompt_field`);
* `answer` (text): the final answer, "" for prompt-only sets (see below);
* `solution` (text): the worked solution (a "solution" field, or GSM8K's text before `####`), "" if none;
* `id` (text): the record's "id" or "idx" field as text, else its line number;
* `line` (int32): the 1-based line of the record in the file.

The answer comes from the first of the fields "answer", "final_answer", "solution" the record has (or
`answer_field`): a list is joined with ", " (OlympiadBench's `final_answer`); a text with `#### N` (GSM8K)
gives N, commas removed, and the text before it is the solution; a "solution" field gives the content of its
last `\\boxed{...}` and is itself the solution (MATH / Minerva). A file whose first record has an answer field
must have one in every record; a file whose first record has none is a prompt-only set (NoveltyBench).

Malformed input raises `JsonlFormatError` naming the file, the line and what is wrong (not JSON, not an
object, missing or empty prompt, missing answer, ...). Nothing is ever downloaded: the data is the local file,
and the config name holds a hash of its contents and the options, so an edited file is prepared afresh:

  builder = prepare_jsonl_prompts("/tmp/darling_data", "/work/shared/data/math/gsm8k.jsonl", split="test")
  records = builder.as_data_source("test")   # records[i]["prompt"], ["answer"] (e.g. b"18"), ["line"], ...
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from darling_jax.data.loader import prepare_offline
from darling_jax.jsonl import JsonlFormatError, jsonl_objects

PROMPT_FIELDS = ("question", "problem", "prompt")
ANSWER_FIELDS = ("answer", "final_answer", "solution")
ID_FIELDS = ("id", "idx")
_GSM8K_ANSWER_MARK = "####"
_BOXED = "\\boxed{"


def _last_boxed(text: str) -> str | None:
  """The content of the last `\\boxed{...}` in `text` (braces balanced), None if there is none."""
  start = text.rfind(_BOXED)
  if start < 0:
    return None
  depth, position = 1, start + len(_BOXED)
  for index in range(position, len(text)):
    if text[index] == "{":
      depth += 1
    elif text[index] == "}":
      depth -= 1
      if depth == 0:
        return text[position:index].strip()
  return None


def _as_text(value: Any, where: str, field: str) -> str:
  if isinstance(value, str):
    return value
  if isinstance(value, bool) or value is None or isinstance(value, dict):
    raise JsonlFormatError(
        f"{where}: field {field!r} must be text, a number or a list, got {json.dumps(value)}")
  if isinstance(value, (int, float)):
    return str(value)
  if isinstance(value, list):
    return ", ".join(_as_text(item, where, field) for item in value)
  raise JsonlFormatError(f"{where}: field {field!r} has an unsupported value {value!r}")


def _solution_text(value: Any, where: str) -> str:
  if isinstance(value, list):  # OlympiadBench: several worked solutions
    return "\n\n".join(_as_text(item, where, "solution") for item in value)
  return _as_text(value, where, "solution")


def _answer_and_solution(field: str, value: Any, where: str) -> tuple[str, str]:
  """(final answer, worked solution) from one answer field of a record."""
  if field == "solution":
    solution = _solution_text(value, where)
    answer = _last_boxed(solution)
    if answer is None:
      raise JsonlFormatError(f"{where}: field 'solution' has no \\boxed{{...}} final answer (name the answer "
                             "field with answer_field=...)")
    return answer, solution
  text = _as_text(value, where, field).strip()
  if _GSM8K_ANSWER_MARK in text:
    solution, _, answer = text.rpartition(_GSM8K_ANSWER_MARK)
    answer = answer.strip().replace(",", "")
    if not answer:
      raise JsonlFormatError(f"{where}: field {field!r} has nothing after '{_GSM8K_ANSWER_MARK}'")
    return answer, solution.strip()
  if not text:
    raise JsonlFormatError(f"{where}: field {field!r} is empty")
  return text, ""


def _first_field(record: dict[str, Any], fields: tuple[str, ...]) -> str | None:
  return next((field for field in fields if record.get(field) is not None), None)


def read_jsonl_prompts(path: str | os.PathLike[str], *, prompt_field: str | None = None,
                       answer_field: str | None = None) -> list[dict[str, Any]]:
  """The examples of a JSONL prompt file (the builder's features; see the module docstring).

  Args:
    path: The JSONL file.
    prompt_field: The prompt's field; None: the first of `PROMPT_FIELDS` each record has.
    answer_field: The answer's field (then required in every record); None: the first of `ANSWER_FIELDS`
      present, required in every record when the first record has one.

  Returns:
    One dict per record, in file order.

  Raises:
    FileNotFoundError: No file at `path`.
    JsonlFormatError: Malformed content; the message names the file, the line and the problem.
  """
  path = pathlib.Path(path)
  prompt_fields = PROMPT_FIELDS if prompt_field is None else (prompt_field,)
  answer_fields = ANSWER_FIELDS if answer_field is None else (answer_field,)
  expects_answers = None if answer_field is None else True
  examples = []
  for where, line_number, record in jsonl_objects(path):
    field = _first_field(record, prompt_fields)
    if field is None:
      raise JsonlFormatError(f"{where}: missing prompt field (looked for {' / '.join(prompt_fields)}; "
                             f"the record has {', '.join(sorted(record)) or 'no fields'})")
    prompt = record[field]
    if not isinstance(prompt, str) or not prompt.strip():
      raise JsonlFormatError(
          f"{where}: prompt field {field!r} must be non-empty text, got {json.dumps(prompt)}")

    field = _first_field(record, answer_fields)
    if expects_answers is None:
      expects_answers = field is not None
    if field is None:
      if expects_answers:
        raise JsonlFormatError(f"{where}: missing answer field (looked for {' / '.join(answer_fields)}; "
                               "earlier records have one)")
      answer, solution = "", ""
    else:
      if not expects_answers:
        raise JsonlFormatError(f"{where}: has answer field {field!r} but the first record has none: a file "
                               "is either all question/answer or all prompt-only")
      answer, solution = _answer_and_solution(field, record[field], where)
      if not solution and record.get("solution") is not None:
        solution = _solution_text(record["solution"], where)

    id_field = _first_field(record, ID_FIELDS)
    record_id = str(line_number) if id_field is None else _as_text(record[id_field], where, id_field)
    examples.append({"id": record_id, "prompt": prompt, "answer": answer, "solution": solution,
                     "line": np.int32(line_number)})
  if not examples:
    raise JsonlFormatError(f"{path}: no records (the file is empty)")
  return examples


def _safe_name(text: str) -> str:
  return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "prompts"


@dataclasses.dataclass(eq=False)
class JsonlPromptsConfig(tfds.core.BuilderConfig):
  """Which local JSONL file to read and how; the name is derived (leave it empty).

  Attributes:
    path: The JSONL file (made absolute).
    split: Name of the one split holding every record.
    prompt_field: See `read_jsonl_prompts`.
    answer_field: See `read_jsonl_prompts`.
  """

  name: str = ""
  path: str = ""
  split: str = "train"
  prompt_field: str | None = None
  answer_field: str | None = None

  def __post_init__(self):
    if not self.path:
      raise ValueError("JsonlPromptsConfig needs path=<a JSONL file>")
    path = pathlib.Path(self.path).expanduser().absolute()
    if not path.is_file():
      raise FileNotFoundError(f"no JSONL prompt file at {path}")
    self.path = str(path)
    if not isinstance(self.split, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", self.split):
      raise ValueError(f"split must be a name such as 'train' or 'test', got {self.split!r}")
    for field in ("prompt_field", "answer_field"):
      value = getattr(self, field)
      if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{field} must be a field name or None, got {value!r}")
    options = json.dumps([self.split, self.prompt_field, self.answer_field])
    digest = hashlib.sha256(path.read_bytes() + b"\0" + options.encode()).hexdigest()[:16]
    derived_name = f"{_safe_name(path.stem)}_{digest}"
    if not self.name:
      self.name = derived_name
    elif self.name != derived_name:
      raise ValueError(f"a JsonlPromptsConfig's name encodes its file and options: leave it empty (it would "
                       f"be {derived_name!r}), got {self.name!r}")
    if not self.description:
      self.description = f"Prompts from {self.path} (split {self.split!r})"


class JsonlPromptsBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """One local JSONL prompt file as a one-split dataset; see the module docstring.

  Construct it with `config=JsonlPromptsConfig(path=...)` (or use `prepare_jsonl_prompts`); it writes
  array_record files and never downloads. Not registered with `tfds.builder`: import it.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  name = "darling_jsonl_prompts"

  def __init__(self, *, data_dir: str | os.PathLike[str], config: JsonlPromptsConfig, **kwargs):
    if not isinstance(config, JsonlPromptsConfig):
      raise TypeError(f"config must be a JsonlPromptsConfig, got {type(config).__name__}")
    super().__init__(data_dir=data_dir, config=config, file_format="array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo directly, not `dataset_info_from_configs`, which reads metadata files from this folder.
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.builder_config.description,
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(),
            "prompt": tfds.features.Text(),
            "answer": tfds.features.Text(),
            "solution": tfds.features.Text(),
            "line": np.int32,
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the data is the local file.
    config = self.builder_config
    # Read (and so validate) the whole file before tfds starts writing.
    examples = read_jsonl_prompts(config.path, prompt_field=config.prompt_field,
                                  answer_field=config.answer_field)
    return {config.split: self._generate_examples(examples)}

  def _generate_examples(self, examples: list[dict[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
    for example in examples:
      yield int(example["line"]), example


def prepare_jsonl_prompts(data_dir: str | os.PathLike[str], path: str | os.PathLike[str],
                          **options: Any) -> JsonlPromptsBuilder:
  """The builder of a local JSONL prompt file, written into `data_dir` once (offline) and reused after.

  Args:
    data_dir: Directory holding prepared datasets.
    path: The JSONL file.
    **options: Other `JsonlPromptsConfig` fields: split (default "train"), prompt_field, answer_field.

  Returns:
    The prepared builder; read it with `builder.as_data_source(split)` or `prompt_loader`.

  Raises:
    FileNotFoundError: No file at `path`.
    JsonlFormatError: Malformed content (names the file, the line and the problem).
  """
  config = JsonlPromptsConfig(path=os.fspath(path), **options)
  return prepare_offline(JsonlPromptsBuilder(data_dir=data_dir, config=config))
