"""DARLING's additive ablation (paper §6.1) on Countdown: z(quality) + z(diversity) per group, classifier diversity.

  python -m darling_jax.train --config configs/countdown_additive.py --workdir /tmp/darling_additive

Everything else is configs/default.py (same data, warm start, classifier, update and evaluation).
"""

import pathlib

from darling_jax.config_files import load_config


def get_config():
  config = load_config(pathlib.Path(__file__).with_name("default.py"))
  config.name = "countdown_additive"
  config.rl.reward_mode = "additive"
  config.rl.diversity_source = "classifier"
  return config
