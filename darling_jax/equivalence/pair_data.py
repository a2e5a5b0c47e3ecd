"""Labelled response pairs for training and scoring a pair classifier (NoveltyBench's JSONL format)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from darling_jax.jsonl import JsonlFormatError, jsonl_objects


@dataclasses.dataclass(frozen=True)
class PairExample:
  """Two responses and whether a human judged them equivalent (label 1 = similar, 0 = different)."""

  text_a: str
  text_b: str
  label: int


def read_pair_jsonl(path: str | os.PathLike, *, text_keys: tuple[str, str] = ("generation_0", "generation_1"),
                    label_key: str = "similar") -> list[PairExample]:
  """Reads labelled pairs from a JSONL file in NoveltyBench's classifier format.

  Args:
    path: one JSON object per line with the two responses and the label (bool or 0/1); blank lines are
      skipped.
    text_keys: keys of the two responses. label_key: key of the label.

  Returns:
    The pairs, in file order.

  Raises:
    FileNotFoundError: no such file. ValueError (`JsonlFormatError`): naming the file and line of a malformed
      row (`path:line: ...`).
  """
  examples = []
  for where, _, row in jsonl_objects(path):
    for key in (*text_keys, label_key):
      if key not in row:
        raise JsonlFormatError(f"{where}: missing key {key!r}")
    for key in text_keys:
      if not isinstance(row[key], str):
        raise JsonlFormatError(f"{where}: {key!r} is a {type(row[key]).__name__}, not a string")
    label = row[label_key]
    if isinstance(label, bool) or label in (0, 1):
      label = int(label)
    else:
      raise JsonlFormatError(f"{where}: {label_key!r}={label!r} is not a boolean or 0/1")
    examples.append(PairExample(row[text_keys[0]], row[text_keys[1]], label))
  if not examples:
    raise JsonlFormatError(f"{path}: no pairs")
  return examples


def labels_of(examples: Sequence[PairExample]) -> np.ndarray:
  """int32 `[N]` labels."""
  return np.asarray([e.label for e in examples], np.int32)
