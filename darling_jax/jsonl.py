"""Reading JSONL files of objects, with errors that name the file and the line.

    for where, line_number, record in jsonl_objects(path):   # where = "path:line"; blank lines skipped
      ...raise JsonlFormatError(f"{where}: ...")
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterator
from typing import Any


class JsonlFormatError(ValueError):
  """A malformed JSONL file; the message names the file, the line and the problem."""


def jsonl_objects(path: str | os.PathLike[str]) -> Iterator[tuple[str, int, dict[str, Any]]]:
  """`(where, line_number, record)` for each non-blank line of `path`, in file order (lines count from 1);
  `where` is `"path:line_number"`, the prefix of every error message about that line.

  Raises:
    FileNotFoundError: No file at `path`.
    JsonlFormatError: A line that is not UTF-8, not JSON, or not a JSON object.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"no JSONL file at {path}")
  with path.open("rb") as file:
    for line_number, raw_line in enumerate(file, start=1):
      where = f"{path}:{line_number}"
      try:
        line = raw_line.decode("utf-8")
      except UnicodeDecodeError as error:
        raise JsonlFormatError(f"{where}: not valid UTF-8 ({error})") from None
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as error:
        raise JsonlFormatError(f"{where}: not valid JSON ({error})") from None
      if not isinstance(record, dict):
        raise JsonlFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
      yield where, line_number, record
