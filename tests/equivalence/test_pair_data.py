"""Reading labelled pairs (NoveltyBench's JSONL format) and its errors."""

import json

import pytest

from darling_jax.equivalence.pair_data import PairExample, read_pair_jsonl


def test_read_pair_jsonl_and_its_errors(tmp_path):
  path = tmp_path / "pairs.jsonl"
  rows = [{"generation_0": "a", "generation_1": "b", "similar": True},
          {"generation_0": "c", "generation_1": "d", "similar": 0}]
  path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
  assert read_pair_jsonl(path) == [PairExample("a", "b", 1), PairExample("c", "d", 0)]
  bad_rows = {
      r":2: missing key 'similar'": '{"generation_0": "c", "generation_1": "d"}',
      r":2: not valid JSON": "{oops",
      r":2: 'similar'=2 is not a boolean": '{"generation_0": "c", "generation_1": "d", "similar": 2}',
      r":2: 'generation_1' is a int": '{"generation_0": "c", "generation_1": 5, "similar": 1}',
  }
  for message, line in bad_rows.items():
    path.write_text(json.dumps(rows[0]) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=f"pairs.jsonl{message}"):
      read_pair_jsonl(path)
  with pytest.raises(FileNotFoundError):
    read_pair_jsonl(tmp_path / "absent.jsonl")
