import json

import numpy as np

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
  with pytest.raises(ValueError, match="policy.param_dtype"):
    PolicySettings(param_dtype="float64")
  assert PolicySettings(dtype="bfloat16", param_dtype="float32").dtypes()["param_dtype"].__name__ == "float32"
  with pytest.raises(FileNotFoundError, match="classifier.path"):
    ClassifierSettings(path=str(tmp_path / "none"))
  pairs = tmp_path / "pairs.jsonl"
  pairs.write_text("{}\n")
  with pytest.raises(ValueError, match="classifier.encoder is empty"):
    ClassifierSettings(train_pairs=str(pairs))
  with pytest.raises(ValueError, match="classifier.threshold"):
    ClassifierSettings(threshold=1.5)


def test_classifier_stage_fits_a_bi_encoder_on_pairs_caches_it_and_loads_one_by_path(tmp_path):
  from darling_jax.equivalence import BiEncoderClassifier
  from darling_jax.stages import classifier_stage
  from darling_jax.tasks import make_task
  from tests.chat_fixtures import bi_encoder_directory
  encoder = bi_encoder_directory(tmp_path / "encoder")  # any BERT directory serves as the encoder
  words = ["apple", "river", "stone", "cloud", "green", "music", "paper", "light", "storm", "glass"]
  rng = np.random.default_rng(0)
  rows = []
  for n in range(30):
    a = list(rng.choice(words, 12))
    b = list(rng.permutation(a)) if n % 3 == 0 else list(rng.choice(words[5:], 12))
    rows.append({"generation_0": " ".join(a), "generation_1": " ".join(b), "similar": int(n % 3 == 0)})
  pairs = tmp_path / "pairs.jsonl"
  pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
  task = make_task({"name": "math"})
  settings = ClassifierSettings(train_pairs=str(pairs), encoder=encoder, train={"l2": 0.5})
  logged = []
  equivalence, info = classifier_stage(tmp_path / "run" / "classifier", settings, task, None, seed=0,
                                       log=logged.append)
  assert isinstance(equivalence, BiEncoderClassifier) and info["kind"] == "bi_encoder"
  assert info["pairs"] == 30 and 0.5 <= info["train_balanced_accuracy"] <= 1 and info["max_length"] == 128  # the encoder has 128 positions
  assert any("bi-encoder head fitted on 30 pairs" in line for line in logged)
  again, _ = classifier_stage(tmp_path / "run" / "classifier", settings, task, None, seed=0, log=logged.append)
  assert logged[-1].startswith("classifier: reusing")
  groups = [[r["generation_0"], r["generation_1"]] for r in rows[:4]]
  np.testing.assert_array_equal(again.probabilities(groups), equivalence.probabilities(groups))
  by_path, info = classifier_stage(tmp_path / "unused", ClassifierSettings(path=str(tmp_path / "run" / "classifier"),
                                                                           threshold=0.7), task, None, seed=0,
                                   log=logged.append)
  assert isinstance(by_path, BiEncoderClassifier) and by_path.threshold == 0.7
  with pytest.raises(ValueError, match="classifier.kind"):
    ClassifierSettings(kind="siamese")
  with pytest.raises(ValueError, match=r"classifier.train has keys \['epochs'\]"):  # at start-up
    ClassifierSettings(train_pairs=str(pairs), encoder=encoder, train={"epochs": 1})
