"""The ways `classifier_noveltybench.py` can make a NoveltyBench equivalence classifier, behind one interface:

    method = METHODS[name](encoder_dir, tokenizer, examples, config)
    trained = method.train(pair_index)                  # fit on these pairs (indices into `examples`)
    probs = method.probabilities(trained, pair_index)   # float32 P(similar) of these pairs
    method.save(trained, output_dir, threshold, info)   # a directory the trainer loads by path

* `bi_encoder` (default): all-MiniLM-L6-v2 as a sentence encoder, each response encoded once (mean-pooled),
  a logistic `SimilarityHead` on cosine and word-overlap features (`darling_jax.equivalence.bi_encoder`).
  The embeddings are computed once for all pairs, so each fold only fits an 8-feature logistic regression.
* `top_layer`: a cross-encoder, `[CLS] a [SEP] b [SEP]`: embeddings, layers 1-5 and the key / value projections
  of layer 6 stay as pretrained; layer 6 at the [CLS] position, the pooler and a fresh 2-way head are trained
  on the frozen part, which is run once per row and cached (`TopOfBert`).
* `finetune`: the same cross-encoder with every parameter except the embeddings trained
  (`train_pair_classifier`, the official recipe; about 40 times the compute of `top_layer`).
* `cosine` (a baseline, nothing trained): the cosine of the mean-pooled embeddings is P(similar).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from darling_jax.classifiers import save_classifier
from darling_jax.classifiers.bert import bidirectional_attention
from darling_jax.classifiers.from_encoder import classifier_from_encoder
from darling_jax.equivalence import bi_encoder
from darling_jax.equivalence.base import normalise_whitespace
from darling_jax.equivalence.encoding import PairFormat, pad_pairs
from darling_jax.equivalence.pair_data import labels_of
from darling_jax.equivalence.pair_metrics import pair_probabilities
from darling_jax.equivalence.similarity_features import FEATURE_NAMES
from darling_jax.equivalence.training import (TrainConfig, class_weights, encode_examples, make_train_step,
                                              split_trainable, train_pair_classifier)

# ---------------------------------------------------------------- top_layer: cached lower layers
class TopOfBert(nnx.Module):
  """The last encoder layer at the [CLS] position, the pooler and the classifier of a
  `BertForSequenceClassification` (the same modules, shared, not copied).

  Only [CLS]'s output reaches the pooler, so the last layer needs its query, attention output and feed-forward
  at [CLS] only, plus keys and values at every position (computed from the frozen layers below and cached).
  """

  def __init__(self, model):
    self.layer = model.bert.encoder.layer[-1]
    self.pooler = model.bert.pooler
    self.classifier = model.classifier
    self.num_heads, self.head_dim = model.config.num_heads, model.config.head_dim

  def __call__(self, cls_hidden, keys, values, attention_mask):
    """cls_hidden: `[B, E]` input of the last layer at [CLS]; keys, values: `[B, T, E]` its projections at
    every position; attention_mask: int `[B, T]` -> float32 logits `[B, num_labels]`."""
    heads = lambda y: y.reshape(*y.shape[:2], self.num_heads, self.head_dim)
    x = cls_hidden[:, None, :]
    attention = self.layer.attention
    context = bidirectional_attention(heads(attention.self.query(x)), heads(keys), heads(values),
                                      (attention_mask > 0)[:, None, :])
    h = attention.output(context, x)
    h = self.layer.output(self.layer.intermediate(h), h)
    return self.classifier(self.pooler(h)).astype(jnp.float32)


def top_logits(model: TopOfBert, batch) -> jax.Array:
  return model(batch["cls_hidden"], batch["keys"], batch["values"], batch["attention_mask"])


@functools.partial(jax.jit, static_argnames=("graphdef",))
def lower_features(graphdef, state, input_ids, attention_mask, token_type_ids):
  """The frozen part of a BERT classifier on `[R, W]` rows: the last layer's input at [CLS] `[R, E]`, and its
  keys and values at every position `[R, W, E]`."""
  model = nnx.merge(graphdef, state)
  x = model.bert.embeddings(input_ids, token_type_ids)
  allowed = (attention_mask > 0)[:, None, :]
  for layer in model.bert.encoder.layer[:-1]:
    x = layer(x, allowed)
  projections = model.bert.encoder.layer[-1].attention.self
  return x[:, 0], projections.key(x), projections.value(x)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def top_probabilities(graphdef, state, cls_hidden, keys, values, attention_mask):
  logits = nnx.merge(graphdef, state)(cls_hidden, keys, values, attention_mask)
  return jax.nn.softmax(logits, axis=-1)[:, -1]


@dataclasses.dataclass
class Features:
  """Cached rows (both orders of every pair: rows 2i, 2i + 1 are pair i): float32 `[R, E]`, `[R, W, E]` x2,
  int32 `[R, W]` mask, int32 `[R]` labels."""

  cls_hidden: np.ndarray
  keys: np.ndarray
  values: np.ndarray
  attention_mask: np.ndarray
  labels: np.ndarray

  def rows(self, index: np.ndarray) -> dict[str, np.ndarray]:
    return {"cls_hidden": self.cls_hidden[index], "keys": self.keys[index], "values": self.values[index],
            "attention_mask": self.attention_mask[index]}


def cache_features(model, tokenizer, examples, fmt: PairFormat, chunk: int = 32) -> Features:
  """Runs the frozen layers once over both orders of every pair, each row padded to `max_length`."""
  rows, labels = encode_examples(tokenizer, examples, fmt, both_orders=True)
  graphdef, state = nnx.split(model)
  outputs, masks = [], []
  started = time.perf_counter()
  for start in range(0, len(rows), chunk):
    part = rows[start:start + chunk]
    filler = [part[-1]] * (chunk - len(part))  # fixed shape: one compilation
    ids, mask, types = pad_pairs(part + filler, fmt.max_length, fmt.pad_id)
    outputs.append([np.asarray(x)[:len(part)] for x in lower_features(graphdef, state, ids, mask, types)])
    masks.append(mask[:len(part)])
    done = start + len(part)
    if done == len(part) or done % (10 * chunk) == 0 or done == len(rows):
      elapsed = time.perf_counter() - started
      print(f"  cached {done}/{len(rows)} rows, {elapsed:.0f}s ({done / elapsed:.2f} rows/s incl. compile)",
            flush=True)
  cls_hidden, keys, values = (np.concatenate(parts) for parts in zip(*outputs))
  return Features(cls_hidden, keys, values, np.concatenate(masks), labels)


def train_top(top: TopOfBert, initial_state, features: Features, row_index: np.ndarray,
              config: TrainConfig) -> TopOfBert:
  """Trains a fresh copy of `top` (reset to `initial_state`) on the cached rows `row_index`: the jitted step
  of `make_train_step`, the recipe's class weights and schedule, seeded per-epoch shuffling."""
  nnx.update(top, initial_state)
  graphdef, trainable, frozen = split_trainable(top, config.frozen)
  labels = features.labels[row_index]
  row_weights = class_weights(labels)[labels]
  steps_per_epoch = math.ceil(len(row_index) / config.batch_size)
  total_steps = steps_per_epoch * config.epochs
  train_step, init_opt_state, _ = make_train_step(graphdef, config, total_steps, top_logits)
  state = jax.tree.map(jnp.copy, (trainable, frozen))
  opt_state = init_opt_state(state[0])
  losses = []
  for epoch in range(config.epochs):
    order = np.random.default_rng([config.seed, epoch]).permutation(len(row_index))
    for start in range(0, len(order), config.batch_size):
      members = order[start:start + config.batch_size]
      padding = config.batch_size - len(members)
      picked = np.concatenate([members, np.zeros(padding, np.int64)])  # filler rows weigh 0
      batch = features.rows(row_index[picked])
      batch["labels"] = labels[picked]
      batch["weights"] = np.where(np.arange(config.batch_size) < len(members), row_weights[picked], 0.0
                                  ).astype(np.float32)
      state, opt_state, metrics = train_step(graphdef, state, opt_state, batch)
      losses.append(float(metrics["loss"]))
    print(f"    epoch {epoch}: mean loss {np.mean(losses[-steps_per_epoch:]):.4f}", flush=True)
  return nnx.merge(graphdef, *state)


def cached_pair_probabilities(top: TopOfBert, features: Features, pairs: np.ndarray, chunk: int = 256):
  """float32 `[len(pairs)]`: P(similar) of each pair, the mean over its two orders."""
  graphdef, state = nnx.split(top)
  rows = np.stack([2 * pairs, 2 * pairs + 1], axis=1).reshape(-1)
  probs = []
  for start in range(0, len(rows), chunk):
    index = rows[start:start + chunk]
    index = np.concatenate([index, np.full(chunk - len(index), index[-1])])
    probs.append(np.asarray(top_probabilities(graphdef, state, **features.rows(index))))
  return np.concatenate(probs)[:len(rows)].reshape(-1, 2).mean(axis=1)


# ---------------------------------------------------------------- the methods, one interface
class TopLayerMethod:
  """Train / score pairs by index with the cached lower layers."""

  def __init__(self, encoder_dir, tokenizer, examples, config: TrainConfig):
    self.config, self.tokenizer = config, tokenizer
    self.model = classifier_from_encoder(encoder_dir, seed=config.seed, id2label=("different", "similar"))
    self.top = TopOfBert(self.model)
    self.initial = nnx.state(self.top)  # arrays are immutable: updates to `top` leave this as it is
    fmt = PairFormat.from_tokenizer(tokenizer, config.max_length)
    started = time.perf_counter()
    self.features = cache_features(self.model, tokenizer, examples, fmt)
    print(f"cached the frozen layers for {2 * len(examples)} rows in {time.perf_counter() - started:.0f}s",
          flush=True)

  def train(self, pairs: np.ndarray):
    rows = np.stack([2 * pairs, 2 * pairs + 1], axis=1).reshape(-1)
    return train_top(self.top, self.initial, self.features, rows, self.config)

  def probabilities(self, trained, pairs: np.ndarray) -> np.ndarray:
    return cached_pair_probabilities(trained, self.features, pairs)

  def save(self, trained, output_dir, threshold: float, info: dict) -> None:
    nnx.update(self.top, nnx.state(trained))  # shared modules: this writes into self.model
    save_cross_encoder(self.model, self.tokenizer, output_dir, threshold, self.config, info)


class FinetuneMethod:
  """`train_pair_classifier` on token inputs (the full recipe; slow on CPU)."""

  def __init__(self, encoder_dir, tokenizer, examples, config: TrainConfig):
    self.encoder_dir, self.tokenizer, self.examples, self.config = encoder_dir, tokenizer, examples, config

  def train(self, pairs: np.ndarray):
    model = classifier_from_encoder(self.encoder_dir, seed=self.config.seed, id2label=("different", "similar"))
    subset = [self.examples[i] for i in pairs]
    model, _ = train_pair_classifier(model, self.tokenizer, subset, self.config)
    return model

  def probabilities(self, trained, pairs: np.ndarray) -> np.ndarray:
    return pair_probabilities(trained, self.tokenizer, [self.examples[i] for i in pairs],
                              max_length=self.config.max_length, both_orders=True)

  def save(self, trained, output_dir, threshold: float, info: dict) -> None:
    save_cross_encoder(trained, self.tokenizer, output_dir, threshold, self.config, info)


def save_cross_encoder(model, tokenizer, output_dir, threshold: float, config: TrainConfig, info: dict) -> None:
  """An HF classifier directory + `darling.json` (threshold, max_length, both orders) for the trainer."""
  save_classifier(model, output_dir, tokenizer=tokenizer)
  settings = {"threshold": threshold, "max_length": config.max_length, "both_orders": True, "similar_label": 1,
              "train_config": dataclasses.asdict(config), **info}
  (output_dir / "darling.json").write_text(json.dumps(settings, indent=2))


class BiEncoderMethod:
  """The sentence encoder's pair features for every pair, computed once; each fold fits a `SimilarityHead`."""

  def __init__(self, encoder_dir, tokenizer, examples, config: TrainConfig, *, l2: float = 1.0):
    del tokenizer
    self.config, self.labels, self.l2 = config, labels_of(examples), l2
    encoder, encoder_tokenizer = bi_encoder.load_encoder(encoder_dir)
    self.classifier = bi_encoder.BiEncoderClassifier(encoder, encoder_tokenizer, None,
                                                     max_tokens=config.max_length)
    # Identical texts (after whitespace normalisation) are equivalent without a model, as in the trainer.
    self.identical = np.array([normalise_whitespace(e.text_a) == normalise_whitespace(e.text_b)
                               for e in examples])
    started = time.perf_counter()
    self.features = bi_encoder.examples_features(self.classifier, examples)
    print(f"embedded the {2 * len(examples)} responses and computed the pair features in "
          f"{time.perf_counter() - started:.0f}s", flush=True)

  def train(self, pairs: np.ndarray) -> bi_encoder.SimilarityHead:
    return bi_encoder.SimilarityHead.fit(self.features[pairs], self.labels[pairs], l2=self.l2)

  def probabilities(self, trained: bi_encoder.SimilarityHead, pairs: np.ndarray) -> np.ndarray:
    return np.where(self.identical[pairs], 1.0, trained.probabilities(self.features[pairs])).astype(np.float32)

  def save(self, trained, output_dir, threshold: float, info: dict) -> None:
    self.classifier.head, self.classifier.threshold = trained, threshold
    bi_encoder.save_bi_encoder(self.classifier, output_dir, info=info)

  def cosine_probabilities(self, trained, pairs: np.ndarray) -> np.ndarray:
    """The untrained baseline's score: the cosine of the mean-pooled embeddings (`trained` is ignored)."""
    return self.features[pairs, FEATURE_NAMES.index("cosine")]


class CosineMethod(BiEncoderMethod):
  """Nothing trained: the cosine of the mean-pooled embeddings is the score (the untrained baseline)."""

  def train(self, pairs: np.ndarray):
    return None

  def probabilities(self, trained, pairs: np.ndarray) -> np.ndarray:
    return self.cosine_probabilities(trained, pairs)

  def save(self, trained, output_dir, threshold: float, info: dict) -> None:
    raise ValueError("--method cosine is a baseline: nothing to save (use --folds to evaluate it)")


METHODS = {"bi_encoder": BiEncoderMethod, "top_layer": TopLayerMethod, "finetune": FinetuneMethod,
           "cosine": CosineMethod}


