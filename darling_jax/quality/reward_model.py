"""A reward model as a quality source: a decoder `*ForSequenceClassification` with one label scoring the
chat-templated (prompt, completion), batched and jitted on the policy's mesh.

The paper's non-verifiable runs score responses with a Llama-3 reward model (Athene-RM-8B) and use its raw,
unbounded score as quality (arXiv 2509.02534 §5.1, App. 9.1). Any HF Llama / Qwen2 / Qwen3
`*ForSequenceClassification` directory with `num_labels == 1` loads here (`darling_jax.models.load_pretrained`);
the score is its logit at the last non-pad token, exactly as transformers computes it.

    reward_model = RewardModel("/path/to/rm", mesh=mesh)
    reward_model(prompts, completions)            # TRL-style reward function: list of floats
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from darling_jax import sharding
from darling_jax.classifiers import DecoderForSequenceClassification
from darling_jax.models import load_pretrained, load_tokenizer

MIN_WIDTH = 16


@functools.partial(jax.jit, static_argnames=("graphdef",))
def reward_scores(graphdef: nnx.GraphDef, state: nnx.State, input_ids: jax.Array, attention_mask: jax.Array
                  ) -> jax.Array:
  """f32 `[R]`: the one-label classifier's logit of each right-padded row (int32 `[R, W]`)."""
  return nnx.merge(graphdef, state)(input_ids, attention_mask)[:, 0]


class RewardModel:
  """A one-label decoder classifier as a TRL-style reward function (see the module docstring).

  Args:
    path: HF directory of a Llama / Qwen2 / Qwen3 `*ForSequenceClassification` with `num_labels=1`, a
      `pad_token_id`, and a tokenizer with a chat template.
    mesh: the policy's mesh; rows are sharded over its data axes (default: one device).
    max_length: longest scored sequence in tokens; longer ones keep their last `max_length` tokens.
    batch_size: rows per jitted call (shorter batches are padded to it, so each width compiles once).
    dtype: compute dtype.
  """

  def __init__(self, path: str | os.PathLike, *, mesh: jax.sharding.Mesh | None = None, max_length: int = 1024,
               batch_size: int = 8, dtype=jnp.float32):
    path = os.fspath(path)
    model = load_pretrained(path, dtype=dtype, mesh=mesh)
    if not isinstance(model, DecoderForSequenceClassification) or model.config.num_labels != 1:
      raise ValueError(f"reward model {path!r} must be a decoder *ForSequenceClassification with num_labels=1, got "
                       f"{type(model).__name__} with num_labels={getattr(model.config, 'num_labels', None)}")
    if model.config.pad_token_id is None:
      raise ValueError(f"reward model {path!r} has no pad_token_id in config.json: its scored token (the last "
                       "non-pad one) cannot be found in a padded batch")
    self.tokenizer = load_tokenizer(path)
    if not getattr(self.tokenizer, "chat_template", None):
      raise ValueError(f"the tokenizer of reward model {path!r} has no chat template")
    if batch_size < 1 or max_length < 2:
      raise ValueError(f"RewardModel needs batch_size >= 1 and max_length >= 2, got {batch_size}, {max_length}")
    self.path, self.mesh, self.max_length, self.batch_size = path, mesh, max_length, batch_size
    self.graphdef, self.state = nnx.split(model)
    self.pad_id = int(model.config.pad_token_id)
    self.__name__ = "reward_model"

  def encode(self, prompt: str, completion: str) -> list[int]:
    """Token ids of the chat-templated (user prompt, assistant completion), at most `max_length` (the last)."""
    ids = self.tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}], tokenize=True,
        return_dict=False)
    return list(ids)[-self.max_length:]

  def score_ids(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
    """f32 `[R]` scores of token-id rows (each right-padded with the pad id into a power-of-two width)."""
    scores = []
    data_size = 1 if self.mesh is None else sharding.data_parallel_size(self.mesh)
    for start in range(0, len(rows), self.batch_size):
      chunk = rows[start:start + self.batch_size]
      width = min(self.max_length, max(MIN_WIDTH, 1 << (max(map(len, chunk)) - 1).bit_length()))
      ids = np.full((self.batch_size, width), self.pad_id, np.int32)
      mask = np.zeros((self.batch_size, width), np.int32)
      for i, row in enumerate(chunk):
        ids[i, :len(row)], mask[i, :len(row)] = row, 1
      if self.mesh is not None and data_size > 1 and self.batch_size % data_size == 0:
        ids, mask = jax.device_put((ids, mask), sharding.batch_sharding(self.mesh, 2))
      scores.append(np.asarray(reward_scores(self.graphdef, self.state, ids, mask))[:len(chunk)])
    return np.concatenate(scores).astype(np.float32) if scores else np.zeros((0,), np.float32)

  def __call__(self, prompts: Sequence[str], completions: Sequence[str], **_: Any) -> list[float]:
    """TRL-style reward function: the reward model's raw score of each (prompt, completion)."""
    if len(prompts) != len(completions):
      raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
    return self.score_ids([self.encode(p, c) for p, c in zip(prompts, completions)]).tolist()
