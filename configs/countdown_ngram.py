"""DARLING with lexical diversity on Countdown (the paper's 4-gram ablation): quality × 4-gram novelty, no classifier.

The n-grams are of characters (`rl.ngram_unit="char"`, set in default.py): a Countdown expression is one
whitespace word, so word 4-grams would give every response diversity 0, hence reward 0 and no update.

  python -m darling_jax.train --config configs/countdown_ngram.py --workdir /tmp/darling_ngram

Everything else is configs/default.py (same data, warm start, classifier, update and evaluation).
"""

import pathlib

from darling_jax.config_files import load_config


def get_config():
  config = load_config(pathlib.Path(__file__).with_name("default.py"))
  config.name = "countdown_ngram"
  config.rl.reward_mode = "multiplicative"
  config.rl.diversity_source = "ngram"
  config.eval.classifier_accuracy = False  # no classifier is trained for this run
  return config
