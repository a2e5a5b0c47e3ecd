"""Countdown and JSONL prompt builders (TF-free tfds, array_record) and the grain prompt loader."""

import json
import pathlib
import socket

import grain
import numpy as np
import pytest

from darling_jax.data import (
    JsonlFormatError,
    JsonlPromptsConfig,
    prepare_jsonl_prompts,
    prompt_loader,
    read_jsonl_prompts,
    shard_bounds,
)
from darling_jax.tasks.countdown import builder as countdown_builder
from darling_jax.tasks.countdown import (CountdownBuilder, CountdownConfig, countdown_problems, format_prompt,
                                        prepare_countdown, score_response, strategy_id)

SMALL = {"num_train": 12, "num_test": 6}
SHARED_DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="module", autouse=True)
def offline():
  """Any attempt to open a network connection fails the test."""
  def refuse(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args!r}")
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(socket.socket, "connect", refuse)
    patch.setattr(socket, "create_connection", refuse)
    patch.setattr(socket, "getaddrinfo", refuse)
    yield


def _records(builder, split):
  return [{key: np.asarray(value).tolist() for key, value in record.items()}
          for record in builder.as_data_source(split)]


@pytest.fixture(scope="module")
def countdown(tmp_path_factory):
  """Three builds: seed 0 twice (two directories), seed 1 once."""
  first_dir, second_dir = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
  builders = {
      "seed0": prepare_countdown(first_dir, seed=0, **SMALL),
      "seed0_again": prepare_countdown(second_dir, seed=0, **SMALL),
      "seed1": prepare_countdown(first_dir, seed=1, **SMALL),
  }
  records = {name: {split: _records(builder, split) for split in ("train", "test")}
             for name, builder in builders.items()}
  return builders, records, first_dir


def _problem_key(record):
  return tuple(sorted(record["numbers"])), record["target"]


def test_countdown_is_deterministic_from_its_seed(countdown):
  _, records, _ = countdown
  assert records["seed0"] == records["seed0_again"]
  assert records["seed0"] != records["seed1"]
  seed0, seed1 = ({_problem_key(r) for r in records[name]["train"]} for name in ("seed0", "seed1"))
  assert seed0 != seed1


def test_countdown_splits_have_their_sizes_and_are_disjoint(countdown):
  _, records, _ = countdown
  for by_split in records.values():
    train = {_problem_key(record) for record in by_split["train"]}
    test = {_problem_key(record) for record in by_split["test"]}
    assert (len(train), len(test)) == (SMALL["num_train"], SMALL["num_test"])  # no problem twice in a split
    assert not train & test


def test_countdown_records_hold_every_distinct_strategy(countdown):
  _, records, _ = countdown
  for by_split in records.values():
    for record in by_split["train"] + by_split["test"]:
      numbers, target = record["numbers"], record["target"]
      assert len(numbers) == 4 and all(1 <= number <= 10 for number in numbers) and 10 <= target <= 100
      assert record["prompt"] == format_prompt(numbers, target).encode()
      solutions = [solution.decode() for solution in record["solutions"]]
      assert record["num_strategies"] == len(solutions) >= 3
      assert all(score_response(solution, numbers, target) == 1.0 for solution in solutions)
      strategies = [strategy_id(solution, numbers, target) for solution in solutions]
      assert len(set(strategies)) == len(strategies)
      assert strategies == [canonical.decode() for canonical in record["canonical_forms"]]


def test_countdown_prepared_data_is_reused_not_regenerated(countdown, monkeypatch):
  builders, records, first_dir = countdown
  def regenerate(config):
    raise AssertionError("prepared data was regenerated")
  monkeypatch.setattr(countdown_builder, "countdown_problems", regenerate)
  again = prepare_countdown(first_dir, seed=0, **SMALL)
  assert again.data_dir == builders["seed0"].data_dir
  assert _records(again, "test") == records["seed0"]["test"]


def test_countdown_test_split_does_not_depend_on_num_train():
  small = countdown_problems(CountdownConfig(num_train=2, num_test=3))
  large = countdown_problems(CountdownConfig(num_train=5, num_test=3))
  assert [p["prompt"] for p in small["test"]] == [p["prompt"] for p in large["test"]]


def test_countdown_config_name_encodes_the_options():
  names = {CountdownConfig(**options).name for options in
           ({}, {"seed": 1}, {"num_train": 5}, {"num_test": 5}, {"num_numbers": 5}, {"max_number": 12},
            {"min_strategies": 4}, {"target_range": (10, 50)})}
  assert len(names) == 8
  with pytest.raises(ValueError, match="leave it empty"):
    CountdownConfig(name="mine", seed=0)
  for bad in ({"seed": -1}, {"num_train": 0, "num_test": 0}, {"num_numbers": 7}, {"max_number": 0},
              {"min_strategies": 0}, {"target_range": (5, 1)}, {"num_train": 2.5}):
    with pytest.raises(ValueError):
      CountdownConfig(**bad)


def test_countdown_with_too_few_possible_problems_fails_clearly():
  config = CountdownConfig(num_train=10, num_test=0, num_numbers=2, max_number=2, min_strategies=1,
                           target_range=(3, 4))
  with pytest.raises(ValueError, match="too few problems"):
    countdown_problems(config)


# JSONL prompt sets.


def _write(path, lines):
  path.write_text("".join(line + "\n" for line in lines))
  return path


def test_jsonl_question_answer_file(tmp_path):
  path = _write(tmp_path / "tiny.jsonl", [
      json.dumps({"question": "1+1?", "answer": "It is 1+1 = 2.\n#### 2", "idx": 7}),
      "",
      json.dumps({"question": "How many?", "answer": "Count.\n#### 1,250"}),
      json.dumps({"problem": "Square 3.", "answer": 9}),
  ])
  builder = prepare_jsonl_prompts(tmp_path / "data", path, split="test")
  source = builder.as_data_source("test")
  records = sorted((record for record in source), key=lambda record: record["line"])
  assert [record["prompt"] for record in records] == [b"1+1?", b"How many?", b"Square 3."]
  assert [record["answer"] for record in records] == [b"2", b"1250", b"9"]
  assert [record["solution"] for record in records] == [b"It is 1+1 = 2.", b"Count.", b""]
  assert [record["id"] for record in records] == [b"7", b"3", b"4"]
  assert [int(record["line"]) for record in records] == [1, 3, 4]


def test_jsonl_solutions_and_prompt_only_files(tmp_path):
  math = _write(tmp_path / "math.jsonl", [
      json.dumps({"problem": "p", "solution": "So $x=\\boxed{\\frac{1}{2}}$."}),
      json.dumps({"question": "q", "final_answer": ["3", "4"], "solution": ["a", "b"]}),
  ])
  assert [(r["answer"], r["solution"]) for r in read_jsonl_prompts(math)] == [
      ("\\frac{1}{2}", "So $x=\\boxed{\\frac{1}{2}}$."), ("3, 4", "a\n\nb")]
  prompts = _write(tmp_path / "prompts.jsonl", [json.dumps({"id": "a", "prompt": "Tell a story."})])
  assert read_jsonl_prompts(prompts)[0]["answer"] == ""


@pytest.mark.parametrize("lines, message", [
    (['{"question": "q", "answer": "1"}', '{"question": "q2", "answer": '], r"bad\.jsonl:2: not valid JSON"),
    (['["question", "answer"]'], r"bad\.jsonl:1: expected a JSON object"),
    (['{"question": "q", "answer": "1"}', '{"text": "q"}'],
     r"bad\.jsonl:2: missing prompt field \(looked for question / problem / prompt; the record has text\)"),
    (['{"question": "q", "answer": "1"}', '{"question": "q", "answer": "2"}', '{"question": "q3"}'],
     r"bad\.jsonl:3: missing answer field"),
    (['{"prompt": "q"}', '{"prompt": "q", "answer": "2"}'], r"bad\.jsonl:2: has answer field 'answer'"),
    (['{"question": "  ", "answer": "1"}'], r"bad\.jsonl:1: prompt field 'question' must be non-empty text"),
    (['{"problem": "p", "solution": "no box"}'], r"bad\.jsonl:1: field 'solution' has no \\boxed"),
    (['{"question": "q", "answer": "work\\n#### "}'],
     r"bad\.jsonl:1: field 'answer' has nothing after '####'"),
    ([], r"bad\.jsonl: no records"),
])
def test_jsonl_bad_files_name_file_line_and_problem(tmp_path, lines, message):
  path = _write(tmp_path / "bad.jsonl", lines)
  with pytest.raises(JsonlFormatError, match=message):
    read_jsonl_prompts(path)


def test_jsonl_bad_file_fails_preparation_and_leaves_nothing(tmp_path):
  path = _write(tmp_path / "bad.jsonl", ['{"question": "q", "answer": "1"}', '{"question": "q2"}'])
  with pytest.raises(JsonlFormatError, match=r"bad\.jsonl:2: missing answer field"):
    prepare_jsonl_prompts(tmp_path / "data", path)
  assert not list((tmp_path / "data").glob("darling_jsonl_prompts/*/1.0.0"))
  with pytest.raises(FileNotFoundError, match="missing.jsonl"):
    prepare_jsonl_prompts(tmp_path / "data", tmp_path / "missing.jsonl")


def test_jsonl_config_name_changes_with_file_and_options(tmp_path):
  path = _write(tmp_path / "set.jsonl", ['{"prompt": "a"}'])
  names = {JsonlPromptsConfig(path=str(path)).name, JsonlPromptsConfig(path=str(path), split="test").name}
  _write(path, ['{"prompt": "b"}'])
  names.add(JsonlPromptsConfig(path=str(path)).name)
  assert len(names) == 3 and all(name.startswith("set_") for name in names)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared data folder absent")
def test_jsonl_shared_gsm8k_and_noveltybench(tmp_path):
  gsm8k = prepare_jsonl_prompts(tmp_path, SHARED_DATA / "math" / "gsm8k.jsonl", split="test")
  source = gsm8k.as_data_source("test")
  assert len(source) == 1319
  first = next(record for record in source if int(record["line"]) == 1)
  assert first["answer"] == b"18" and first["prompt"].startswith(b"Janet")
  curated = prepare_jsonl_prompts(tmp_path, SHARED_DATA / "noveltybench" / "curated.jsonl")
  records = list(curated.as_data_source("train"))
  assert len(records) == 100 and all(record["answer"] == b"" and record["prompt"] for record in records)


# The grain loader.


def _prompts(batches):
  return [prompt for batch in batches for prompt in batch["prompt"]]


def test_loader_batches(countdown):
  builders, records, _ = countdown
  builder = builders["seed0"]
  batches = list(prompt_loader(builder, "train", batch_size=4, seed=0, num_epochs=1, shard_index=0,
                               shard_count=1))
  assert len(batches) == 3
  for batch in batches:
    assert set(batch) == {"numbers", "target", "prompt", "solutions", "canonical_forms", "num_strategies"}
    assert batch["numbers"].shape == (4, 4) and batch["target"].shape == (4,)
    assert batch["numbers"].dtype == batch["target"].dtype == batch["num_strategies"].dtype == np.int32
    assert len(batch["prompt"]) == 4 and all(isinstance(prompt, str) for prompt in batch["prompt"])
    assert all(isinstance(solution, str) for solutions in batch["solutions"] for solution in solutions)
  all_prompts = sorted(record["prompt"].decode() for record in records["seed0"]["train"])
  assert sorted(_prompts(batches)) == all_prompts
  unshuffled = _prompts(prompt_loader(builder, "train", batch_size=4, seed=0, shuffle=False, num_epochs=1,
                                      shard_index=0, shard_count=1))
  assert unshuffled == [record["prompt"].decode() for record in records["seed0"]["train"]]
  assert _prompts(batches) != unshuffled
  sizes = [len(b["prompt"]) for b in prompt_loader(builder, "train", batch_size=5, seed=0, num_epochs=1,
                                                   shard_index=0, shard_count=1)]
  assert sizes == [5, 5, 2]
  sizes = [len(b["prompt"]) for b in prompt_loader(builder, "train", batch_size=5, seed=0, num_epochs=1,
                                                   drop_remainder=True, shard_index=0, shard_count=1)]
  assert sizes == [5, 5]
  two_epochs = _prompts(prompt_loader(builder, "train", batch_size=4, seed=0, num_epochs=2, shard_index=0,
                                      shard_count=1))
  first_epoch, second_epoch = two_epochs[:12], two_epochs[12:]
  assert sorted(first_epoch) == sorted(second_epoch) == all_prompts and first_epoch != second_epoch
  forever = iter(prompt_loader(builder, "train", batch_size=1, seed=0, shard_index=0, shard_count=1))
  assert [next(forever)["prompt"][0] for _ in range(13)][12] in all_prompts  # one record per batch, repeating


@pytest.mark.parametrize("split, shard_count", [("train", 2), ("test", 4)])
def test_loader_shards_cover_the_split_without_overlap(countdown, split, shard_count):
  builders, records, _ = countdown
  shards = [_prompts(prompt_loader(builders["seed0"], split, batch_size=2, seed=3, num_epochs=1,
                                   shard_index=index, shard_count=shard_count))
            for index in range(shard_count)]
  seen = [prompt for shard in shards for prompt in shard]
  assert len(seen) == len(set(seen))
  assert sorted(seen) == sorted(record["prompt"].decode() for record in records["seed0"][split])
  bounds = [shard_bounds(len(seen), index, shard_count) for index in range(shard_count)]
  assert [len(shard) for shard in shards] == [end - start for start, end in bounds]


def test_loader_state_restores_exactly(countdown, tmp_path):
  builders, _, first_dir = countdown
  def loader(builder):
    return prompt_loader(builder, "train", batch_size=5, seed=11, shard_index=1, shard_count=2)
  iterator = iter(loader(builders["seed0"]))
  for _ in range(3):
    next(iterator)
  state = json.loads(json.dumps(iterator.get_state()))
  expected = [next(iterator) for _ in range(4)]  # runs across epoch boundaries of the 6-record shard

  reopened = CountdownBuilder(data_dir=first_dir, config=CountdownConfig(seed=0, **SMALL))
  resumed = iter(loader(reopened))
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    assert got["prompt"] == want["prompt"]
    np.testing.assert_array_equal(got["numbers"], want["numbers"])

  # The orbax route: grain's checkpoint handler writes and restores the same state.
  handler = grain.checkpoint.CheckpointHandler()
  original = iter(loader(builders["seed0"]))
  next(original)
  handler.save(tmp_path, item=original)
  expected = next(original)
  restored = handler.restore(tmp_path, item=iter(loader(reopened)))
  assert next(restored)["prompt"] == expected["prompt"]


def test_loader_rejects_bad_arguments(countdown):
  builder = countdown[0]["seed0"]
  with pytest.raises(ValueError, match="Unknown split 'validation'"):
    prompt_loader(builder, "validation", batch_size=2, seed=0)
  with pytest.raises(ValueError, match="batch_size"):
    prompt_loader(builder, "train", batch_size=0, seed=0)
  with pytest.raises(ValueError, match="shard_index"):
    prompt_loader(builder, "train", batch_size=2, seed=0, shard_index=2, shard_count=2)
  with pytest.raises(ValueError, match="fewer records"):
    prompt_loader(builder, "test", batch_size=2, seed=0, shard_index=0, shard_count=7)
