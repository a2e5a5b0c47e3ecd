"""The warm-start stages of a Countdown run, each cached as an HF directory in the workdir.

  policy_stage(workdir / "policy_sft", tokenizer, problems, config)         -> (policy, info)
  countdown_classifier_stage(workdir / "classifier", tokenizer, problems, config) -> (classifier, threshold, info)

A stage whose directory exists is loaded (`darling_jax.models.load_pretrained`), not rerun; each directory is
written atomically, so an interrupted stage is rerun from scratch. `info` is what the stage measured (seconds,
final loss, held-out accuracy), stored in the directory's `darling.json` and shown in the run summary.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any

import ml_collections

from darling_jax.classifiers import save_classifier
from darling_jax.models import init_model, load_pretrained, save_pretrained
from darling_jax.tasks.countdown_classifier import (CLASSIFIER_MAX_LENGTH, classifier_config, default_train_config,
                                                   train_countdown_classifier)
from darling_jax.tasks.countdown_sft import SftConfig, policy_config, train_sft

STAGE_INFO_FILE = "darling.json"


def _dataclass_from(section: ml_collections.ConfigDict, cls, name: str, **fixed):
  fields = {f.name for f in dataclasses.fields(cls)}
  values = {**dict(section), **fixed}
  unknown = sorted(set(values) - fields)
  if unknown:
    raise ValueError(f"unknown config key(s) {[f'{name}.{k}' for k in unknown]}; {name} takes {sorted(fields)}")
  return cls(**values)


def _read_info(directory: pathlib.Path) -> dict[str, Any] | None:
  info_path = directory / STAGE_INFO_FILE
  if not info_path.exists():
    return None
  return json.loads(info_path.read_text())


def policy_stage(directory: pathlib.Path, tokenizer, problems: list[dict], config: ml_collections.ConfigDict):
  """The supervised warm start of the tiny policy (`config.policy`: `DecoderConfig` overrides; `config.sft`:
  `SftConfig`, `steps=0` for none), trained on respelled solutions of the training problems, or loaded from
  `directory`."""
  info = _read_info(directory)
  if info is not None:
    print(f"policy: reusing the warm start in {directory}", flush=True)
    model = load_pretrained(str(directory))
    if model.config.vocab_size < len(tokenizer):  # e.g. a warm start from before the prompt digits
      raise ValueError(f"the warm start in {directory} has vocab_size={model.config.vocab_size}, fewer than the "
                       f"tokenizer's {len(tokenizer)} tokens: it was trained for another prompt encoding; delete "
                       f"{directory} to train it again")
    return model, {"sft": info}
  model = init_model(policy_config(**dict(config.policy)), seed=config.seed)
  if config.sft.steps == 0:  # no warm start (tests, or RL from scratch): the initialisation is the policy
    save_pretrained(model, str(directory), tokenizer=tokenizer)
    info = {"seconds": 0.0, "steps": 0, "parameters": sum(x.size for x in _leaves(model))}
    (directory / STAGE_INFO_FILE).write_text(json.dumps(info, indent=2))
    return model, {"sft": info}
  sft_config = _dataclass_from(config.sft, SftConfig, "sft", seed=config.seed)
  started = time.perf_counter()
  print(f"policy: supervised warm start ({sft_config.steps} steps) -> {directory}", flush=True)
  model, history = train_sft(model, tokenizer, problems, sft_config,
                             log=lambda line: print("  " + line, flush=True))
  info = {"seconds": time.perf_counter() - started, "steps": sft_config.steps,
          "final_loss": sum(h["loss"] for h in history[-20:]) / len(history[-20:]),
          "parameters": sum(x.size for x in _leaves(model))}
  save_pretrained(model, str(directory), tokenizer=tokenizer)
  (directory / STAGE_INFO_FILE).write_text(json.dumps(info, indent=2))
  return model, {"sft": info}


def countdown_classifier_stage(directory: pathlib.Path, tokenizer, problems: list[dict],
                               config: ml_collections.ConfigDict):
  """The task's pair classifier (a small BERT cross-encoder over expressions, labelled by the canonical-form
  oracle; `config.classifier`), or the one saved in `directory`. Returns `(model, threshold, info)`."""
  info = _read_info(directory)
  if info is not None:
    print(f"classifier: reusing {directory}", flush=True)
    return load_pretrained(str(directory)), info["threshold"], {"classifier": info}
  c = config.classifier
  started = time.perf_counter()
  print(f"classifier: training on {c.num_pairs} oracle-labelled expression pairs -> {directory}", flush=True)
  train_config = default_train_config(max_length=c.max_length, epochs=c.epochs)
  model, metrics = train_countdown_classifier(
      problems, seed=config.seed, num_pairs=c.num_pairs, num_eval_pairs=c.num_eval_pairs,
      config=classifier_config(max_position_embeddings=max(c.max_length, CLASSIFIER_MAX_LENGTH)),
      train_config=train_config, tokenizer=tokenizer, threshold=c.threshold,
      log=lambda line: print("  " + line, flush=True))
  threshold = float(c.threshold)
  info = {"seconds": time.perf_counter() - started, "threshold": threshold, **metrics}
  save_classifier(model, str(directory), tokenizer=tokenizer)
  (directory / STAGE_INFO_FILE).write_text(json.dumps(info, indent=2))
  return model, threshold, {"classifier": info}


def _leaves(model):
  import jax
  from flax import nnx
  return jax.tree.leaves(nnx.state(model, nnx.Param))
