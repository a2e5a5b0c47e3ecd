import json

import pytest

from darling_jax.models import load_pretrained, load_tokenizer
from darling_jax.stages import ClassifierSettings, PolicySettings, eos_ids_of
from tests.chat_fixtures import policy_directory


def test_eos_ids_come_from_the_tokenizer_the_config_and_generation_config(tmp_path):
  directory = policy_directory(tmp_path / "policy")
  model, tokenizer = load_pretrained(directory), load_tokenizer(directory)
  assert eos_ids_of(tokenizer, model, directory) == (257,)
  (tmp_path / "policy" / "generation_config.json").write_text(json.dumps({"eos_token_id": [257, 7]}))
  assert eos_ids_of(tokenizer, model, directory) == (257, 7)


def test_settings_errors_name_the_key(tmp_path):
  with pytest.raises(ValueError, match="policy.dtype"):
    PolicySettings(dtype="float16")
  with pytest.raises(FileNotFoundError, match="classifier.path"):
    ClassifierSettings(path=str(tmp_path / "none"))
  pairs = tmp_path / "pairs.jsonl"
  pairs.write_text("{}\n")
  with pytest.raises(ValueError, match="classifier.encoder is empty"):
    ClassifierSettings(train_pairs=str(pairs))
  with pytest.raises(ValueError, match="classifier.threshold"):
    ClassifierSettings(threshold=1.5)
