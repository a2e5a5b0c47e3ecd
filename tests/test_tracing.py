"""Each step a factory makes is guarded against retracing on its own (chex would share one count per call site)."""

import chex
import jax
import jax.numpy as jnp
import pytest

from darling_jax.tracing import max_traces


def make_step(scale):
  def step(x):
    return x * scale
  return jax.jit(max_traces(step, n=1))


def test_steps_from_one_call_site_count_their_traces_apart():
  steps = [make_step(scale) for scale in (1.0, 2.0)]  # one call site, as a sweep over configs would be
  for step in steps:
    step(jnp.ones(3))  # one trace each: fine
    step(jnp.ones(3))  # cached, no trace
  with pytest.raises(AssertionError, match=r"step#\d+' is traced > 1 times"):
    steps[0](jnp.ones(4))  # a new shape retraces the first step: still caught


def test_chex_alone_would_share_the_count():
  def make(scale):
    def step(x):
      return x * scale
    return jax.jit(chex.assert_max_traces(step, n=1))
  first, second = make(1.0), make(2.0)
  first(jnp.ones(3))
  with pytest.raises(AssertionError, match="traced > 1 times"):
    second(jnp.ones(3))
