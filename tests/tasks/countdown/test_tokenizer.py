"""The character-level Countdown tokenizer: fixed small vocabulary, exact round trip, save/load."""

import numpy as np
import pytest
import transformers

from darling_jax.equivalence.encoding import PairFormat, tokenize_responses
from darling_jax.tasks.countdown import enumerate_solutions, format_prompt, generate_problem
from darling_jax.tasks.countdown.tokenizer import (COUNTDOWN_ALPHABET, NUMBER_DIGITS, SPECIAL_TOKENS, TARGET_DIGITS,
                                              countdown_tokenizer)


@pytest.fixture(scope="module")
def tokenizer():
  return countdown_tokenizer()


@pytest.fixture(scope="module")
def task_texts():
  """Every prompt, readable solution and canonical form of a few generated problems."""
  rng = np.random.default_rng(0)
  texts = []
  for num_numbers, max_number in ((3, 10), (4, 10), (4, 25), (5, 12)):
    for _ in range(3):
      problem = generate_problem(rng, num_numbers=num_numbers, max_number=max_number, min_strategies=2)
      strategies = enumerate_solutions(problem["numbers"], problem["target"])
      texts += [format_prompt(problem["numbers"], problem["target"]), *strategies, *strategies.values()]
  return texts


def test_vocabulary_is_small_with_fixed_special_ids(tokenizer):
  assert len(tokenizer) == tokenizer.vocab_size == len(SPECIAL_TOKENS) + len(COUNTDOWN_ALPHABET) + 20 == 62
  assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id,
          tokenizer.cls_token_id, tokenizer.sep_token_id) == (0, 1, 2, 3, 4, 5)
  assert tokenizer.convert_ids_to_tokens(list(range(6))) == list(SPECIAL_TOKENS)


def test_round_trip_of_every_task_text(tokenizer, task_texts):
  ids = tokenizer(task_texts, add_special_tokens=False)["input_ids"]
  for text, text_ids in zip(task_texts, ids):
    assert len(text_ids) == len(text) and tokenizer.unk_token_id not in text_ids
    assert tokenizer.decode(text_ids) == text
  assert tokenizer.batch_decode(ids) == task_texts
  spaced = " 3 * (7+5)\n= 36 "
  assert tokenizer.decode(tokenizer(spaced, add_special_tokens=False)["input_ids"]) == spaced


def test_prompt_digits_are_whole_tokens_that_decode_as_written(tokenizer):
  digits = NUMBER_DIGITS + TARGET_DIGITS
  assert tokenizer.convert_tokens_to_ids(list(digits)) == list(range(42, 62))
  ids = tokenizer("<n3> <n1><n2> <t2><t6>:", add_special_tokens=False)["input_ids"]
  assert tokenizer.convert_ids_to_tokens(ids) == ["<n3>", " ", "<n1>", "<n2>", " ", "<t2>", "<t6>", ":"]
  # Not special: a response that writes one keeps it when decoded as the sampler does, and then does not parse.
  response = tokenizer("3*<n7>+5", add_special_tokens=False)["input_ids"]
  assert tokenizer.batch_decode([response], skip_special_tokens=True) == ["3*<n7>+5"]
  assert tokenizer("<n>", add_special_tokens=False)["input_ids"][0] == tokenizer.unk_token_id  # only whole tokens


def test_special_tokens_and_unknown_characters(tokenizer):
  text = format_prompt([3, 5], 8)
  ids = tokenizer(text)["input_ids"]
  assert ids[0] == tokenizer.bos_token_id
  assert ids[1:] == tokenizer(text, add_special_tokens=False)["input_ids"]
  assert tokenizer.decode(ids, skip_special_tokens=True) == text
  assert tokenizer.decode(ids + [tokenizer.eos_token_id]) == "<bos>" + text + "<eos>"
  assert tokenizer("8/2 #", add_special_tokens=False)["input_ids"] == [
      tokenizer.convert_tokens_to_ids("8"), tokenizer.unk_token_id, tokenizer.convert_tokens_to_ids("2"),
      tokenizer.convert_tokens_to_ids(" "), tokenizer.unk_token_id]
  padded = tokenizer(["1+2", "10"], add_special_tokens=False, padding=True)
  assert padded["input_ids"][1][-1] == tokenizer.pad_token_id and padded["attention_mask"][1] == [1, 1, 0]


def test_save_and_load(tokenizer, task_texts, tmp_path):
  tokenizer.save_pretrained(tmp_path)
  # `transformers.AutoTokenizer` (what `load_tokenizer` uses) loads the same files, but its first call imports
  # torch through transformers' configuration code (tens of seconds here): the test uses the class directly.
  loaded = transformers.PreTrainedTokenizerFast.from_pretrained(tmp_path, local_files_only=True)
  assert loaded.get_vocab() == tokenizer.get_vocab()
  assert (loaded.pad_token_id, loaded.bos_token_id, loaded.eos_token_id, loaded.cls_token_id,
          loaded.sep_token_id) == (0, 1, 2, 4, 5)
  ids = loaded(task_texts, add_special_tokens=False)["input_ids"]
  assert ids == tokenizer(task_texts, add_special_tokens=False)["input_ids"]
  assert loaded.batch_decode(ids) == task_texts
  assert loaded(task_texts[0])["input_ids"][0] == loaded.bos_token_id
  policy_prompt = "<n3> <n5> <t2><t6>:"
  assert loaded(policy_prompt, add_special_tokens=False)["input_ids"] == tokenizer(
      policy_prompt, add_special_tokens=False)["input_ids"]


def test_formats_classifier_pairs(tokenizer):
  fmt = PairFormat.from_tokenizer(tokenizer, max_length=32)
  assert (fmt.cls_id, fmt.sep_id, fmt.pad_id) == (4, 5, 0)
  expected = tokenizer("3*7", add_special_tokens=False)["input_ids"]
  assert tokenize_responses(tokenizer, ["3*7+5"], budget=3) == [expected]
