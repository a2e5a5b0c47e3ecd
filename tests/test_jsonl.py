"""The shared JSONL reader: line numbers, blank lines, and one clear error per kind of bad line."""

import pytest

from darling_jax.jsonl import JsonlFormatError, jsonl_objects


def test_objects_come_with_their_line_numbers_and_blank_lines_are_skipped(tmp_path):
  path = tmp_path / "rows.jsonl"
  path.write_text('{"a": 1}\n\n   \n{"b": "é"}\n')
  assert list(jsonl_objects(path)) == [(f"{path}:1", 1, {"a": 1}), (f"{path}:4", 4, {"b": "é"})]


@pytest.mark.parametrize("content, message", [
    (b'{"a": 1}\n{oops\n', r"rows\.jsonl:2: not valid JSON"),
    (b'[1, 2]\n', r"rows\.jsonl:1: expected a JSON object, got list"),
    (b'{"a": 1}\n{"b": "\xff"}\n', r"rows\.jsonl:2: not valid UTF-8"),
])
def test_a_bad_line_is_named(tmp_path, content, message):
  path = tmp_path / "rows.jsonl"
  path.write_bytes(content)
  with pytest.raises(JsonlFormatError, match=message):
    list(jsonl_objects(path))


def test_a_missing_file_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="absent.jsonl"):
    next(jsonl_objects(tmp_path / "absent.jsonl"))
