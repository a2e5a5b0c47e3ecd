"""GRPO baseline on Countdown (the paper's baseline): quality-only reward, advantages normalised by the group std,
no diversity term.

  python -m darling_jax.train --config configs/countdown_grpo.py --workdir /tmp/darling_grpo

Everything else is configs/default.py (same data, warm start, classifier, update and evaluation).
"""

import pathlib

from darling_jax.config_files import load_config


def get_config():
  config = load_config(pathlib.Path(__file__).with_name("default.py"))
  config.name = "countdown_grpo"
  config.rl.reward_mode = "quality_only"
  config.rl.diversity_source = "oracle"
  config.rl.normalize_std = True
  return config
