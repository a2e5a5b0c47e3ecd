"""The Countdown equivalence classifier: a tiny BERT over the character tokenizer, trained on oracle labels.

DARLING partitions a prompt's responses with a learned "same answer?" classifier. For Countdown the ground
truth is known: two expressions are one strategy iff their canonical forms are equal
(`darling_jax.tasks.countdown.expression.canonical_form`). A wrong expression has a canonical form too, so two spellings
of the same wrong expression are also equivalent. This module draws labelled pairs of expressions as the policy
writes them and trains a small classifier to reproduce the oracle, so the RL run exercises the learned-classifier
path of the paper while its verdicts can be checked exactly.

Pairs (`oracle_pairs`) mix, per pair, one problem and one kind:

* `positive` (`positive_fraction`): two random spellings (`respell`) of one expression, a correct strategy or
  a random expression over the problem's numbers;
* `strategies`: two different correct strategies of the problem (hard negatives: same value, often the same
  numbers), each in a random spelling;
* `mutant`: an expression and a one-edit variant of it (an operator changed or two numbers swapped), usually a
  different strategy with almost the same text;
* `random`: a correct strategy or a random expression against a random expression.

Every label comes from the oracle, never from the kind (`label = canonical forms equal`).

    model, metrics = train_countdown_classifier(problems["train"], eval_problems=problems["test"])
    CrossEncoderClassifier(model, countdown_tokenizer(), max_length=CLASSIFIER_MAX_LENGTH,
                          short_answer_max_words=None)   # expressions are one "word": turn the rule off
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from flax import nnx

from darling_jax.classifiers import BertClassifierConfig, init_classifier
from darling_jax.classifiers.siamese import SiameseBertClassifier
from darling_jax.equivalence.pair_data import PairExample
from darling_jax.equivalence.pair_metrics import classification_metrics, pair_probabilities
from darling_jax.equivalence.siamese import SiameseClassifier, train_siamese_classifier
from darling_jax.equivalence.training import TrainConfig, train_pair_classifier
from darling_jax.tasks.countdown.tokenizer import PAD, countdown_tokenizer, countdown_vocab
from darling_jax.tasks.countdown.expression import canonical_form, parse_expression
from darling_jax.tasks.countdown.spelling import random_expression, respell

# Longest pair in tokens: `[CLS] a [SEP] b [SEP]`, each expression cut to (64 - 3) // 2 = 30 characters (the
# default problems' solutions have at most 13, respelled ones about 20).
CLASSIFIER_MAX_LENGTH = 64
CLASSIFIER_ARCHITECTURES = ("siamese", "cross_encoder")
PAIR_KINDS = ("positive", "strategies", "mutant", "random")
_DEFAULT_MIX = {"positive": 0.45, "strategies": 0.3, "mutant": 0.1, "random": 0.15}


def classifier_config(**overrides) -> BertClassifierConfig:
  """The default Countdown equivalence classifier: a 2-layer BERT, hidden 64, over the 62-token Countdown
  vocabulary, `CLASSIFIER_MAX_LENGTH` positions, 2 labels (0 = different, 1 = same strategy). `overrides`
  replace fields."""
  vocab = countdown_vocab()
  defaults = dict(vocab_size=len(vocab), hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256,
                  num_labels=2, max_position_embeddings=CLASSIFIER_MAX_LENGTH, pad_token_id=vocab[PAD])
  return BertClassifierConfig(**(defaults | overrides))


def oracle_label(text_a: str, text_b: str) -> int:
  """1 iff the two expressions have equal canonical forms (both must parse)."""
  return int(canonical_form(parse_expression(text_a)) == canonical_form(parse_expression(text_b)))


def _mutate(text: str, rng: np.random.Generator) -> str:
  """One edit of a valid expression: an operator replaced, or two numbers swapped (the result parses)."""
  chars = list(text)
  operators = [i for i, c in enumerate(chars) if c in "+-*"]
  numbers = []  # (start, end) of each literal
  i = 0
  while i < len(chars):
    if chars[i].isdigit():
      start = i
      while i < len(chars) and chars[i].isdigit():
        i += 1
      numbers.append((start, i))
    else:
      i += 1
  distinct = len({text[s:e] for s, e in numbers}) > 1
  if operators and (not distinct or rng.random() < 0.5):
    at = operators[int(rng.integers(len(operators)))]
    chars[at] = str(rng.choice([op for op in "+-*" if op != chars[at]]))
    return "".join(chars)
  if not distinct:
    return text
  while True:
    first, second = sorted(rng.choice(len(numbers), size=2, replace=False))
    (s1, e1), (s2, e2) = numbers[first], numbers[second]
    if text[s1:e1] != text[s2:e2]:
      return text[:s1] + text[s2:e2] + text[e1:s2] + text[s1:e1] + text[e2:]


def _spell(text: str, rng: np.random.Generator, paren_prob: float, keep_prob: float = 0.25) -> str:
  """`text` itself with probability `keep_prob`, else a respelling."""
  return text if rng.random() < keep_prob else respell(text, rng, paren_prob=paren_prob)


def _draw_pair(problem: dict[str, Any], kind: str, rng: np.random.Generator, paren_prob: float) -> tuple[str, str]:
  numbers = [int(n) for n in problem["numbers"]]
  solutions = list(problem["solutions"])
  pick = lambda: solutions[int(rng.integers(len(solutions)))]
  if kind == "positive":
    base = pick() if rng.random() < 0.7 else random_expression(numbers, rng)
    return _spell(base, rng, paren_prob), respell(base, rng, paren_prob=paren_prob)
  if kind == "strategies":
    if len(solutions) < 2:
      return _draw_pair(problem, "random", rng, paren_prob)
    first, second = rng.choice(len(solutions), size=2, replace=False)
    return _spell(solutions[first], rng, paren_prob), _spell(solutions[second], rng, paren_prob)
  if kind == "mutant":
    base = _spell(pick() if rng.random() < 0.7 else random_expression(numbers, rng), rng, paren_prob)
    return base, _spell(_mutate(base, rng), rng, paren_prob, keep_prob=0.5)
  if kind == "random":
    base = pick() if rng.random() < 0.5 else random_expression(numbers, rng)
    return _spell(base, rng, paren_prob), random_expression(numbers, rng)
  raise ValueError(f"unknown pair kind {kind!r}; expected one of {PAIR_KINDS}")


def oracle_pairs_with_kinds(problems: Sequence[dict[str, Any]], rng: np.random.Generator, num_pairs: int, *,
                            mix: dict[str, float] | None = None,
                            paren_prob: float = 0.2) -> tuple[list[PairExample], list[str]]:
  """`oracle_pairs` and the kind of each pair (one of `PAIR_KINDS`)."""
  if not problems:
    raise ValueError("oracle_pairs needs at least one problem")
  if num_pairs < 0:
    raise ValueError(f"num_pairs must be >= 0, got {num_pairs}")
  mix = dict(_DEFAULT_MIX if mix is None else mix)
  unknown = set(mix) - set(PAIR_KINDS)
  if unknown or any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
    raise ValueError(f"mix must map kinds in {PAIR_KINDS} to non-negative weights with a positive sum, got {mix}")
  kinds = list(mix)
  weights = np.asarray([mix[k] for k in kinds], np.float64)
  examples, drawn = [], []
  for _ in range(num_pairs):
    problem = problems[int(rng.integers(len(problems)))]
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    if rng.random() < 0.5:
      text_b, text_a = _draw_pair(problem, kind, rng, paren_prob)
    else:
      text_a, text_b = _draw_pair(problem, kind, rng, paren_prob)
    examples.append(PairExample(text_a, text_b, oracle_label(text_a, text_b)))
    drawn.append(kind)
  return examples, drawn


def oracle_pairs(problems: Sequence[dict[str, Any]], rng: np.random.Generator, num_pairs: int, *,
                 mix: dict[str, float] | None = None, paren_prob: float = 0.2) -> list[PairExample]:
  """`num_pairs` expression pairs labelled by the canonical-form oracle (1 = same strategy).

  Each pair draws a problem uniformly and a kind by `mix` (default 45% positive respellings, 30% two different
  strategies, 10% one-edit mutants, 15% random expressions; see the module docstring); the order within a pair
  is random. Expressions are spelled as the policy writes them: no spaces, `*`, sometimes redundant
  parentheses (`paren_prob`, see `respell`).

  Args:
    problems: dicts with `numbers` and `solutions` (as `countdown_problems` returns).
    rng: the random source.
    num_pairs: how many pairs.
    mix: kind -> weight (kinds of `PAIR_KINDS`; normalised).
    paren_prob: `respell`'s redundant-parenthesis probability.

  Returns:
    The labelled pairs.
  """
  return oracle_pairs_with_kinds(problems, rng, num_pairs, mix=mix, paren_prob=paren_prob)[0]


def default_train_config(**overrides) -> TrainConfig:
  """`TrainConfig` for the tiny from-scratch classifier: a larger peak rate than for a pretrained encoder."""
  defaults = dict(max_length=CLASSIFIER_MAX_LENGTH, batch_size=64, epochs=4, learning_rate=2e-3,
                  warmup_fraction=0.05, weight_decay=0.01, checkpoint_every=10**9, log_every=100)
  return TrainConfig(**(defaults | overrides))


def evaluate_countdown_classifier(model, tokenizer, examples: Sequence[PairExample], kinds: Sequence[str] = (), *,
                                  threshold: float = 0.5, max_length: int = CLASSIFIER_MAX_LENGTH) -> dict[str, Any]:
  """Accuracy etc. (`classification_metrics`) of `P(similar) > threshold` against the oracle labels (a
  cross-encoder's with both orders averaged; a siamese model is symmetric); with `kinds`, also
  `accuracy_<kind>` per pair kind and the majority-class baseline."""
  if isinstance(model, SiameseBertClassifier):
    scorer = SiameseClassifier(model, tokenizer, max_tokens=max_length, short_answer_max_words=None)
    probs = scorer.probabilities([[e.text_a, e.text_b] for e in examples])[:, 0, 1]
  else:
    probs = pair_probabilities(model, tokenizer, examples, max_length=max_length, both_orders=True)
  labels = np.asarray([e.label for e in examples], np.int32)
  metrics: dict[str, Any] = classification_metrics(probs, labels, threshold)
  metrics["majority_baseline"] = float(max(labels.mean(), 1 - labels.mean()))
  correct = (probs > threshold) == labels.astype(bool)
  kinds = np.asarray(kinds)
  for kind in PAIR_KINDS:
    if len(kinds) and (kinds == kind).any():
      metrics[f"accuracy_{kind}"] = float(correct[kinds == kind].mean())
  return metrics


def train_countdown_classifier(problems: Sequence[dict[str, Any]], *, seed: int = 0, num_pairs: int = 3000,
                               eval_problems: Sequence[dict[str, Any]] | None = None, num_eval_pairs: int = 1000,
                               config: BertClassifierConfig | None = None, train_config: TrainConfig | None = None,
                               tokenizer=None, threshold: float = 0.5, mix: dict[str, float] | None = None,
                               architecture: str = "siamese",
                               log: Callable[[str], None] = print) -> tuple[Any, dict[str, Any]]:
  """Trains the Countdown equivalence classifier from scratch on oracle-labelled pairs and scores it on fresh ones.

  Args:
    problems: training problems; pairs come from `default_rng([seed, 0])`.
    seed: seeds the pairs, the initialisation and the batch order.
    num_pairs: training pairs (each trained in both orders).
    eval_problems: problems of the held-out pairs (default: `problems`; the pairs are fresh either way, drawn
      from `default_rng([seed, 1])`).
    num_eval_pairs: held-out pairs.
    config: the model (default `classifier_config()`). train_config: default `default_train_config()` (its
      seed is replaced by `seed`).
    tokenizer: the character tokenizer (default `countdown_tokenizer()`).
    threshold: the decision threshold of the held-out metrics.
    mix: pair kinds of both the training and the held-out pairs (see `oracle_pairs`).
    architecture: "siamese" (`SiameseBertClassifier`: each expression encoded once, `train_siamese_classifier`)
      or "cross_encoder" (`BertForSequenceClassification` on `[CLS] a [SEP] b [SEP]`, both orders,
      `train_pair_classifier`).
    log: progress lines.

  Returns:
    `(model, metrics)`: held-out `evaluate_countdown_classifier` metrics plus `train_seconds`, `train_pairs`,
    `final_loss`.
  """
  tokenizer = countdown_tokenizer() if tokenizer is None else tokenizer
  config = classifier_config() if config is None else config
  train_config = (default_train_config() if train_config is None else train_config).replace(seed=seed)
  if config.max_position_embeddings < train_config.max_length:
    raise ValueError(f"the classifier has {config.max_position_embeddings} positions, fewer than "
                     f"TrainConfig.max_length={train_config.max_length}")
  examples = oracle_pairs(problems, np.random.default_rng([seed, 0]), num_pairs, mix=mix)
  if architecture not in CLASSIFIER_ARCHITECTURES:
    raise ValueError(f"architecture must be one of {CLASSIFIER_ARCHITECTURES}, got {architecture!r}")
  started = time.perf_counter()
  if architecture == "siamese":
    model = SiameseBertClassifier(config, rngs=nnx.Rngs(params=seed))
    model, history = train_siamese_classifier(model, tokenizer, examples, train_config, log=log)
  else:
    model = init_classifier(config, seed=seed)
    model, history = train_pair_classifier(model, tokenizer, examples, train_config, log=log)
  train_seconds = time.perf_counter() - started
  held_out, kinds = oracle_pairs_with_kinds(problems if eval_problems is None else eval_problems,
                                            np.random.default_rng([seed, 1]), num_eval_pairs, mix=mix)
  metrics = evaluate_countdown_classifier(model, tokenizer, held_out, kinds, threshold=threshold,
                                          max_length=train_config.max_length)
  final = history[-min(len(history), 20):]
  metrics |= {"train_seconds": train_seconds, "train_pairs": len(examples),
              "final_loss": float(np.mean([h["loss"] for h in final]))}
  log(f"classifier: held-out accuracy {metrics['accuracy']:.4f} (majority {metrics['majority_baseline']:.3f}) "
      f"after {train_seconds:.1f}s of training")
  return model, metrics
