"""The one optimizer / learning-rate builder of every trainer here (warm start, pair classifier, GRPO update).

    schedule = learning_rate_schedule("warmup_cosine", 3e-3, warmup_steps=20, total_steps=1200, end_value=3e-4)
    optimizer = make_optimizer(schedule, weight_decay=0.01, max_grad_norm=1.0, decay_matrices_only=True)

Each is global-norm gradient clipping followed by AdamW (optax). The GRPO update uses verl's actor defaults
(constant rate, weight decay on every parameter; arXiv 2509.02534 App. 9 trains with verl); the supervised warm
start and the pair classifier follow the official classifier recipe (warmup then cosine decay to a fraction of the
peak, no decay of biases and norm scales; `evals/novelty-bench/src/classifier/finetune_classifier.py`).
"""

from __future__ import annotations

import jax
import optax

SCHEDULES = ("constant", "warmup_cosine")


def learning_rate_schedule(kind: str, peak: float, *, warmup_steps: int = 0, total_steps: int = 0,
                           end_value: float = 0.0) -> optax.Schedule:
  """The learning rate as a function of the optimizer step (counted from 0).

  Args:
    kind: `"constant"`: `peak`, after an optional linear warmup from 0 over `warmup_steps`;
      `"warmup_cosine"`: linear warmup from 0 to `peak` over `warmup_steps`, then cosine decay to `end_value` at
      step `total_steps` (> `warmup_steps`).
    peak: the peak rate (> 0).
    warmup_steps, total_steps, end_value: see `kind`.
  """
  if kind not in SCHEDULES:
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")
  if kind == "warmup_cosine":
    if total_steps <= warmup_steps:
      raise ValueError(f"a warmup_cosine schedule needs total_steps={total_steps} > warmup_steps={warmup_steps}")
    return optax.warmup_cosine_decay_schedule(init_value=0.0, peak_value=peak, warmup_steps=warmup_steps,
                                              decay_steps=total_steps, end_value=end_value)
  if warmup_steps == 0:
    return optax.constant_schedule(peak)
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup_steps), optax.constant_schedule(peak)],
                              boundaries=[warmup_steps])


def make_optimizer(schedule: optax.Schedule | float, *, weight_decay: float, max_grad_norm: float,
                   b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   decay_matrices_only: bool = False) -> optax.GradientTransformation:
  """Global-norm clipping to `max_grad_norm`, then AdamW on `schedule`.

  Args:
    schedule: a `learning_rate_schedule` (or a constant rate).
    weight_decay: decoupled AdamW weight decay.
    max_grad_norm: gradients are clipped to this global norm first.
    b1, b2, eps: AdamW's moment decays and epsilon.
    decay_matrices_only: decay only parameters with >= 2 dimensions (kernels, embeddings), not biases and norm
      scales; else every parameter.
  """
  mask = (lambda params: jax.tree.map(lambda x: x.ndim >= 2, params)) if decay_matrices_only else None
  return optax.chain(
      optax.clip_by_global_norm(max_grad_norm),
      optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask))
