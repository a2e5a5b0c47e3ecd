"""One loader for a saved equivalence classifier directory, whichever kind it is.

    classifier = load_equivalence_classifier("nb_classifier")          # an EquivalenceClassifier
    equivalent, probs = classifier(groups)

* a bi-encoder (`darling.json` with `"kind": "bi_encoder"`, written by `bi_encoder.save_bi_encoder`);
* a siamese classifier (config.json `architectures: ["SiameseBertClassifier"]`, `classifiers.siamese.save_siamese`);
* otherwise a cross-encoder: an HF `*ForSequenceClassification` directory of any `darling_jax.classifiers`
  model, with optional `darling.json` settings (`threshold`, `max_length`, `both_orders`).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

from darling_jax.equivalence.base import DEFAULT_THRESHOLD, EquivalenceClassifier

INFO_FILE = "darling.json"
DEFAULT_MAX_LENGTH = 256
SAVED: Any = object()  # "use the directory's value" (None is a real value of short_answer_max_words)


def saved_settings(path: str | os.PathLike) -> dict[str, Any]:
  """The directory's `darling.json` (empty when there is none)."""
  info = pathlib.Path(path) / INFO_FILE
  return json.loads(info.read_text()) if info.exists() else {}


def load_equivalence_classifier(path: str | os.PathLike, *, threshold: float | None = SAVED,
                                max_length: int | None = SAVED, both_orders: bool = SAVED,
                                short_answer_max_words: int | None = SAVED, rows_per_call: int = SAVED,
                                sharding=None, dtype=None) -> EquivalenceClassifier:
  """The classifier saved at `path`; each argument left at `SAVED` (or None, except short_answer_max_words)
  keeps the directory's setting, else the class default.

  Args:
    threshold: P(similar) above which two responses are equivalent.
    max_length: tokens per pair (cross-encoder) or per response (bi-encoder).
    both_orders: cross-encoder only: average over (a, b) and (b, a) (default True).
    short_answer_max_words: the short-answer rule's limit; None turns it off.
    rows_per_call, sharding: batching of the jitted calls.
    dtype: cross-encoder only: the compute and parameter dtype (None: float32), e.g. `jnp.bfloat16` for a
      decoder classifier of billions of parameters (the paper's Qwen3-4B math classifier).

  Raises:
    FileNotFoundError: `path` is not a directory.
  """
  path = pathlib.Path(os.path.expanduser(os.fspath(path)))
  if not path.is_dir():
    raise FileNotFoundError(f"equivalence classifier {str(path)!r} is not a directory")
  settings = saved_settings(path)
  chosen = lambda value, key, default: settings.get(key, default) if value is SAVED or value is None else value
  common = {"threshold": float(chosen(threshold, "threshold", DEFAULT_THRESHOLD)), "sharding": sharding}
  if short_answer_max_words is not SAVED:
    common["short_answer_max_words"] = short_answer_max_words
  if rows_per_call is not SAVED and rows_per_call is not None:
    common["rows_per_call"] = int(rows_per_call)
  from darling_jax.classifiers.siamese import is_siamese, load_siamese
  from darling_jax.models.tokenizer import load_tokenizer
  if is_siamese(path):
    from darling_jax.equivalence.siamese import SiameseClassifier
    return SiameseClassifier(load_siamese(path), load_tokenizer(str(path)),
                             max_tokens=int(chosen(max_length, "max_length", 64)), **common)
  if settings.get("kind") == "bi_encoder":
    from darling_jax.equivalence.bi_encoder import load_bi_encoder
    return load_bi_encoder(path, max_tokens=int(chosen(max_length, "max_tokens", 256)), **common)
  from darling_jax.equivalence.pairwise import CrossEncoderClassifier
  from darling_jax.models import load_pretrained
  model = load_pretrained(str(path)) if dtype is None else load_pretrained(str(path), dtype=dtype)
  return CrossEncoderClassifier(model, load_tokenizer(str(path)),
                                max_length=int(chosen(max_length, "max_length", DEFAULT_MAX_LENGTH)),
                                both_orders=bool(chosen(both_orders, "both_orders", True)), **common)


def save_pair_model(model, path: str | os.PathLike, *, tokenizer=None) -> None:
  """Writes a trained pair model as the directory `load_equivalence_classifier` reads: a
  `SiameseBertClassifier` by `save_siamese`, any `darling_jax.classifiers` cross-encoder by `save_classifier`."""
  from darling_jax.classifiers import save_classifier
  from darling_jax.classifiers.siamese import SiameseBertClassifier, save_siamese
  if isinstance(model, SiameseBertClassifier):
    save_siamese(model, path, tokenizer=tokenizer)
  else:
    save_classifier(model, path, tokenizer=tokenizer)
