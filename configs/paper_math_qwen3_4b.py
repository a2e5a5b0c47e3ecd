"""The DARLING paper's math setting (arXiv 2509.02534 §5, Table 7; the official `math_scripts/darling.batch`):
Qwen3-4B-Base on 10k DeepScaleR prompts, 256 prompts × 8 samples per step, responses up to 8,192 tokens, quality
from math-verify, diversity from the official Qwen3-Embedding-4B pair classifier, no KL, 4 minibatches per step.

  python -m darling_jax.train --config configs/paper_math_qwen3_4b.py --workdir /ckpt/darling_math \\
      --config.policy.checkpoint=/models/Qwen3-4B-Base \\
      --config.classifier.path=/models/qwen3-4b-emb-finetuned-step-70-hf \\
      --config.task.train_file=/data/deepscaler_filtered_10k_train.jsonl

Paths are config values (nothing is downloaded): an HF directory of Qwen3-4B-Base, the official math classifier
(`dogtooth/qwen3-4b-emb-finetuned-step-70-hf`, a Qwen3 `*ForSequenceClassification` that
`darling_jax.classifiers` loads) and a question / answer JSONL of the training prompts. Precision: float32 master
weights and AdamW state, bfloat16 matmuls (`policy.param_dtype` / `policy.dtype`, as verl's FSDP); each layer
rematerialised in the backward; the LM head of the loss over 512 response positions at a time; rollouts sampled in
8 calls of 32 prompts (one call of 256 × 8 rows would hold a 2.4 TB KV cache); the 4B pair classifier in
bfloat16, 8 pairs per call. `python -m darling_jax.plan --config configs/paper_math_qwen3_4b.py --topology
v5p:2x2x2` shows what each device holds (README: "Will it fit?"). Mesh: FSDP over
8 devices per data-parallel group (`mesh.fsdp`; `data=-1` takes the rest), e.g. one 8-GPU node or a v5p-16.
Ten epochs of 39 steps (⌊10,000 / 256⌋) are 390 steps. Not in this config: the paper's 1,024-token prompt cap
(prompts are not truncated here).
"""

import pathlib

import ml_collections
from ml_collections import config_dict

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = "paper_math_qwen3_4b"
  config.seed = 0
  config.task = ml_collections.ConfigDict(dict(
      name="math", train_file="/data/deepscaler_filtered_10k_train.jsonl",
      test_file=str(SHARED_DATA / "math" / "aime25.jsonl"), arithmetic={},
      instruction="Put your final answer in \\boxed{}.", system_prompt=config_dict.placeholder(str), shots=()))
  config.policy = ml_collections.ConfigDict(dict(checkpoint="/models/Qwen3-4B-Base", dtype="bfloat16",
                                                 param_dtype="float32", remat=True))
  config.quality = ml_collections.ConfigDict(dict(functions=(), weights=(), reward_model=""))  # math-verify
  # ≤ 2,048 tokens per response, as the official classifier was trained; bfloat16, 8 pairs per call (4B params).
  config.classifier = ml_collections.ConfigDict(dict(
      path="/models/qwen3-4b-emb-finetuned-step-70-hf", threshold=config_dict.placeholder(float),
      max_length=4099, both_orders=False, rows_per_call=8, short_answer_max_words=5, train_pairs="", encoder="",
      kind="cross_encoder", train={}, dtype="bfloat16"))
  config.rl = ml_collections.ConfigDict(dict(
      steps=390, prompts_per_step=256, group_size=8, max_new_tokens=8192, temperature=1.0, top_p=1.0,
      diversity_source="classifier", reward_mode="multiplicative", add_bias=False, diversity_weight=1.0,
      diversity_floor=0.1, normalize_std=False, ngram_n=4, ngram_unit="word", prompts_per_sample_call=32))
  config.grpo = ml_collections.ConfigDict(dict(
      learning_rate=1e-6, weight_decay=0.01, max_grad_norm=1.0, schedule="constant", warmup_steps=0,
      num_minibatches=4, microbatch_size=8, clip_low=0.2, clip_high=0.2, dual_clip=3.0, kl_coef=0.0,
      agg="token-mean", logprob_chunk_size=512))
  config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=8, tensor=1))
  config.checkpoint = ml_collections.ConfigDict(dict(every=25, keep=4))
  # The paper's math evaluation: T = 0.6, top-p 0.95.
  config.eval = ml_collections.ConfigDict(dict(
      num_problems=30, num_samples=8, temperature=0.6, top_p=0.95, prompts_per_batch=8, base_policy=True,
      classifier_accuracy=True))
  config.log = ml_collections.ConfigDict(dict(progress_bar=True, tensorboard=True, rollouts_every=10))
  return config
