"""The two warm-start stages of the Countdown run at micro scale: SFT of the policy, the equivalence classifier."""

import numpy as np
import pytest

from darling_jax.equivalence.encoding import PairFormat
from darling_jax.models import init_model
from darling_jax.tasks.countdown.builder import CountdownConfig, countdown_problems
from darling_jax.tasks.countdown.classifier import (
    CLASSIFIER_MAX_LENGTH,
    PAIR_KINDS,
    classifier_config,
    default_train_config,
    oracle_pairs,
    oracle_pairs_with_kinds,
    train_countdown_classifier,
)
from darling_jax.tasks.countdown.expression import canonical_form, parse_expression
from darling_jax.tasks.countdown.tokenizer import countdown_tokenizer
from darling_jax.tasks.countdown.warm_start import (
    SftConfig,
    countdown_prompt_ids,
    format_policy_prompt,
    pad_sft_batch,
    policy_config,
    sft_examples,
    train_sft,
)


@pytest.fixture(scope="module")
def problems():
  return countdown_problems(CountdownConfig(seed=3, num_train=16, num_test=4))


@pytest.fixture(scope="module")
def tokenizer():
  return countdown_tokenizer()


def test_policy_config_is_tiny_and_fits_the_task(tokenizer):
  config = policy_config()
  assert config.vocab_size == len(tokenizer) == 62
  assert 0.3e6 <= config.num_params <= 2e6
  assert config.max_position_embeddings >= 64
  assert config.eos_token_id == tokenizer.eos_token_id


def test_sft_examples_rows(problems, tokenizer):
  rows = sft_examples(problems["train"], np.random.default_rng(0), spellings_per_problem=3, tokenizer=tokenizer)
  assert len(rows) == 3 * len(problems["train"])
  for index, (ids, prompt_length) in enumerate(rows):
    problem = problems["train"][index // 3]
    assert ids[:prompt_length] == countdown_prompt_ids(tokenizer, problem["numbers"], problem["target"])
    assert tokenizer.decode(ids[1:prompt_length]) == format_policy_prompt(problem["numbers"], problem["target"])
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    response = tokenizer.decode(ids[prompt_length:-1])
    assert canonical_form(parse_expression(response)) in problem["canonical_forms"]
  batch = pad_sft_batch(rows[:2], 64, tokenizer.pad_token_id)
  assert batch["loss_mask"][0].sum() == len(rows[0].token_ids) - rows[0].prompt_length  # response + eos
  with pytest.raises(ValueError, match="max_len"):
    pad_sft_batch(rows[:1], 8, 0)


def test_policy_prompt_writes_numbers_and_target_in_digits_of_their_own(tokenizer):
  assert format_policy_prompt([3, 5, 7, 2], 26) == "<n3><n5><n7><n2><t2><t6>:"
  assert format_policy_prompt([3, 12], 0) == "<n3> <n1><n2> <t0>:"  # a space delimits multi-digit numbers
  ids = countdown_prompt_ids(tokenizer, [3, 5, 7, 2], 26)
  assert ids == [tokenizer.bos_token_id] + tokenizer.convert_tokens_to_ids(
      ["<n3>", "<n5>", "<n7>", "<n2>", "<t2>", "<t6>", ":"])
  # The policy's own digits are the only plain digits in its context: none in the prompt.
  assert not set(ids) & set(tokenizer.convert_tokens_to_ids(list("0123456789")))
  with pytest.raises(ValueError, match="target must be >= 0.*-4"):
    format_policy_prompt([3, 5], -4)
  with pytest.raises(ValueError, match="numbers must lie in"):
    format_policy_prompt([3, -5], 8)


def test_sft_examples_take_another_prompt_encoding(problems, tokenizer):
  def marked_prompt(tokenizer, numbers, target):  # any encoding: here the default one with a marker in front
    return [tokenizer.unk_token_id] + countdown_prompt_ids(tokenizer, numbers, target)

  default = sft_examples(problems["train"], np.random.default_rng(0), spellings_per_problem=2, tokenizer=tokenizer)
  marked = sft_examples(problems["train"], np.random.default_rng(0), spellings_per_problem=2, tokenizer=tokenizer,
                        prompt_ids=marked_prompt)
  for (ids, prompt_length), (marked_ids, marked_length) in zip(default, marked):
    assert marked_length == prompt_length + 1
    assert marked_ids == [tokenizer.unk_token_id] + ids  # same responses: the prompt does not consume the rng


def test_micro_sft_loss_goes_down(problems, tokenizer):
  model = init_model(policy_config(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                                   num_kv_heads=2, head_dim=16), seed=0)
  config = SftConfig(steps=30, batch_size=8, learning_rate=1e-2, warmup=3, spellings_per_problem=2, log_every=30)
  before = model.embed_tokens[...].copy()
  trained, history = train_sft(model, tokenizer, problems["train"], config, log=lambda _: None)
  losses = [h["loss"] for h in history]
  assert len(losses) == 30 and np.all(np.isfinite(losses))
  assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3])
  np.testing.assert_array_equal(model.embed_tokens[...], before)  # the caller's model is untouched
  assert not np.array_equal(trained.embed_tokens[...], before)


def test_oracle_pairs_labels_agree_with_canonical_forms(problems):
  examples, kinds = oracle_pairs_with_kinds(problems["train"], np.random.default_rng(0), 600)
  assert set(kinds) == set(PAIR_KINDS)
  labels = np.asarray([e.label for e in examples])
  for e in examples:
    same = canonical_form(parse_expression(e.text_a)) == canonical_form(parse_expression(e.text_b))
    assert e.label == int(same), e
  assert 0.4 <= labels.mean() <= 0.55
  kinds = np.asarray(kinds)
  assert labels[kinds == "positive"].all() and not labels[kinds == "strategies"].any()
  again = oracle_pairs(problems["train"], np.random.default_rng(0), 600)
  assert again == examples  # deterministic given the generator


def test_char_tokenizer_pair_format(tokenizer):
  fmt = PairFormat.from_tokenizer(tokenizer, CLASSIFIER_MAX_LENGTH)
  assert (fmt.cls_id, fmt.sep_id, fmt.pad_id) == (4, 5, 0)
  assert fmt.max_length == CLASSIFIER_MAX_LENGTH
  assert classifier_config().max_position_embeddings >= CLASSIFIER_MAX_LENGTH


@pytest.mark.parametrize("architecture", ["siamese", "cross_encoder"])
def test_micro_classifier_beats_majority(problems, architecture):
  config = classifier_config(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2)
  model, metrics = train_countdown_classifier(
      problems["train"], seed=0, num_pairs=200, eval_problems=problems["test"], num_eval_pairs=200, config=config,
      # max_length 24 (each expression cut to 10 characters): two width buckets, few compilations
      train_config=default_train_config(max_length=24, batch_size=32, epochs=10, learning_rate=1e-2),
      mix={"positive": 1.0, "random": 1.0}, architecture=architecture, log=lambda _: None)
  assert metrics["count"] == 200 and metrics["train_pairs"] == 200
  assert metrics["accuracy"] > metrics["majority_baseline"] + 0.05, metrics
  assert type(model).__name__ == {"siamese": "SiameseBertClassifier",
                                  "cross_encoder": "BertForSequenceClassification"}[architecture]
  with pytest.raises(ValueError, match="architecture must be one of"):
    train_countdown_classifier(problems["train"], num_pairs=2, architecture="siamese_net", log=lambda _: None)
