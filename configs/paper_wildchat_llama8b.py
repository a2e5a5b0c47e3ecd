"""The DARLING paper's non-verifiable setting (arXiv 2509.02534 §4, Table 6; the official
`wildchat_scripts/darling.sh`): Llama-3.1-8B-Instruct on 10k WildChat prompts, 32 prompts × 8 samples per step,
responses up to 1,024 tokens, quality from a reward model (Athene-RM-8B in the paper), diversity from the
NoveltyBench pair classifier, k3 KL 0.001 to the starting policy, one on-policy update per step.

  python -m darling_jax.train --config configs/paper_wildchat_llama8b.py --workdir /ckpt/darling_wildchat \\
      --config.policy.checkpoint=/models/Llama-3.1-8B-Instruct \\
      --config.quality.reward_model=/models/Athene-RM-8B \\
      --config.classifier.path=/models/similarity-classifier-f168-hf \\
      --config.task.train_file=/data/wildchat10k.jsonl

Paths are config values (nothing is downloaded): the policy's HF directory; a one-label decoder
`*ForSequenceClassification` reward model (`darling_jax.quality.RewardModel`; the paper's Athene-RM-8B is a Llama
model with a one-value head, published with its own modelling code: saved as a `LlamaForSequenceClassification`
with its value head as `score`, it loads here); the NoveltyBench pair classifier (`dogtooth/similarity-classifier-f168-hf`, a
ModernBERT cross-encoder, threshold 0.32 as the official code); a prompt JSONL (training) and NoveltyBench's
curated prompts (evaluation: distinct@8 and utility@8). Precision, remat, chunked log-probs and mesh as
`paper_math_qwen3_4b.py`. Ten epochs of 312 steps (⌊10,000 / 32⌋) are 3,120 steps. Not in this config: the
paper's 512-token prompt cap. `python -m darling_jax.plan --config configs/paper_wildchat_llama8b.py --topology
v5p:2x2x2 --prompt_len 512` shows what each device holds (README: "Will it fit?").
"""

import pathlib

import ml_collections

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = "paper_wildchat_llama8b"
  config.seed = 0
  config.task = ml_collections.ConfigDict(dict(
      name="open_ended", train_file="/data/wildchat10k.jsonl",
      test_file=str(SHARED_DATA / "noveltybench" / "curated.jsonl"), system_prompt=None, patience=1.0))
  config.policy = ml_collections.ConfigDict(dict(checkpoint="/models/Llama-3.1-8B-Instruct", dtype="bfloat16",
                                                 param_dtype="float32", remat=True))
  config.quality = ml_collections.ConfigDict(dict(
      functions=("reward_model",), weights=(1.0,), reward_model="/models/Athene-RM-8B",
      reward_model_max_length=1536, reward_model_batch_size=16))
  config.classifier = ml_collections.ConfigDict(dict(
      path="/models/similarity-classifier-f168-hf", threshold=0.32, max_length=2051, both_orders=False,
      rows_per_call=64, short_answer_max_words=5, train_pairs="", encoder="", kind="cross_encoder", train={}))
  config.rl = ml_collections.ConfigDict(dict(
      steps=3120, prompts_per_step=32, group_size=8, max_new_tokens=1024, temperature=1.0, top_p=1.0,
      diversity_source="classifier", reward_mode="multiplicative", add_bias=False, diversity_weight=1.0,
      diversity_floor=0.1, normalize_std=False, ngram_n=4, ngram_unit="word", prompts_per_sample_call=0))
  config.grpo = ml_collections.ConfigDict(dict(
      learning_rate=1e-6, weight_decay=0.01, max_grad_norm=1.0, schedule="constant", warmup_steps=0,
      num_minibatches=1, microbatch_size=8, clip_low=0.2, clip_high=0.2, dual_clip=3.0, kl_coef=0.001,
      agg="token-mean", logprob_chunk_size=256))
  config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=8, tensor=1))
  config.checkpoint = ml_collections.ConfigDict(dict(every=50, keep=4))
  config.eval = ml_collections.ConfigDict(dict(
      num_problems=100, num_samples=8, temperature=1.0, top_p=1.0, prompts_per_batch=8, base_policy=True,
      classifier_accuracy=True))
  config.log = ml_collections.ConfigDict(dict(progress_bar=True, tensorboard=True, rollouts_every=10))
  return config
