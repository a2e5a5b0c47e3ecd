"""DARLING on Countdown with the tiny policy, in the regime where quality-only RL collapses strategy diversity:
from an empty workdir to the final summary in about 5 minutes on 2 CPU cores (warm start, classifier, RL,
evaluation).

  python -m darling_jax.train --config configs/default.py --workdir /tmp/darling_default

The regime (experiments/diversity_collapse.py; README, "DARLING against GRPO, five seeds, where GRPO collapses"): easy problems (targets 10-20 with at
least 6 correct strategies each, 700 of the 815 such problems for training), a 3,000-step warm start and 800 RL
steps. There GRPO (countdown_grpo.py) raises pass@1 while its distinct correct strategies fall below the warm
start's, which is what DARLING (arXiv 2509.02534, Eq. 3) is for.

Overrides: `--config.rl.group_size=16`, `--config.rl.steps=200`, `--config.rl.diversity_source=oracle`,
`--config.task.sft.steps=2000`, ... The other Countdown configs (countdown_grpo.py, countdown_additive.py,
countdown_ngram.py) change only the reward; run them with a fresh workdir each (they may share the cached stages:
copy `policy_sft/`, `classifier/` and `data/` from a finished run to skip them).
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = "darling_countdown"
  config.seed = 0

  # The task (darling_jax.tasks.countdown): its data, its own tiny policy, warm start and pair classifier.
  config.task = ml_collections.ConfigDict(dict(
      name="countdown",
      # CountdownConfig: the dataset (tensorflow-datasets builder, written into workdir/data).
      data=dict(seed=0, num_train=700, num_test=100, num_numbers=4, max_number=9, min_strategies=6,
                target_range=(10, 20)),
      # DecoderConfig overrides of the tiny policy (darling_jax.tasks.countdown.warm_start.policy_config).
      policy=dict(hidden_size=128, intermediate_size=256, num_layers=2, num_heads=4, num_kv_heads=4, head_dim=32,
                  max_position_embeddings=128),
      # SftConfig: the supervised warm start (its seed is config.seed).
      sft=dict(steps=3000, batch_size=32, learning_rate=3e-3, warmup=20, spellings_per_problem=16, max_len=24),
      # The oracle-labelled pair classifier (darling_jax.tasks.countdown.classifier.train_countdown_classifier).
      classifier=dict(num_pairs=3000, num_eval_pairs=500, epochs=3, max_length=64, threshold=0.5),
  ))

  # No checkpoint: the task's own policy (above), warm-started.
  config.policy = ml_collections.ConfigDict(dict(checkpoint="", dtype="float32", remat=False))
  # No reward functions named: the task's own quality (1 for an exact solution, else 0).
  config.quality = ml_collections.ConfigDict(dict(functions=(), weights=(), reward_model=""))
  # The pair classifier at RL time (trained by the task; expressions are one "word": the short-answer rule off).
  config.classifier = ml_collections.ConfigDict(dict(
      path="", threshold=config_dict.placeholder(float), max_length=config_dict.placeholder(int), both_orders=True,
      rows_per_call=256, short_answer_max_words=config_dict.placeholder(int)))

  # StepConfig (darling_jax.train_step) + loop length.
  config.rl = ml_collections.ConfigDict(dict(
      steps=800, prompts_per_step=8, group_size=8, max_new_tokens=24, temperature=1.0, top_p=1.0,
      diversity_source="classifier", reward_mode="multiplicative", add_bias=False, diversity_weight=1.0,
      diversity_floor=0.1, normalize_std=False, ngram_n=4,
      ngram_unit="char"))  # "ngram" source: Countdown expressions have no spaces, so no word n-grams

  # UpdateConfig (darling_jax.grpo.update): the paper's math setting (no KL, 4 minibatches per rollout batch,
  # token-mean PPO-clip with dual clip), with a learning rate for a 0.6M-parameter model. (Not named
  # `config.update`: that would shadow ConfigDict.update.)
  config.grpo = ml_collections.ConfigDict(dict(
      learning_rate=1e-4, weight_decay=0.01, max_grad_norm=1.0, schedule="constant", warmup_steps=0,
      num_minibatches=4, microbatch_size=config_dict.placeholder(int), clip_low=0.2, clip_high=0.2, dual_clip=3.0,
      kl_coef=0.0, agg="token-mean"))  # the log-prob temperature is rl.temperature

  config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))  # data=-1: every device
  config.checkpoint = ml_collections.ConfigDict(dict(every=100, keep=2))
  config.eval = ml_collections.ConfigDict(dict(
      num_problems=100, num_samples=16, temperature=1.0, top_p=1.0, prompts_per_batch=50, base_policy=True,
      classifier_accuracy=True))
  config.log = ml_collections.ConfigDict(dict(progress_bar=True, tensorboard=True, rollouts_every=10))
  return config
