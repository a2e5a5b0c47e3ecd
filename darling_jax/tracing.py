"""Retrace guards for step functions made by factories.

`chex.assert_max_traces` keys its trace counter on where `fn` is wrapped (the names on the call stack) plus
`fn`'s source and name. Every step a factory makes at one call site therefore shares one count: a loop that
calls `train_sft` with two configs (a sweep in a notebook) would fail on the second config's first, legitimate
trace. `max_traces` gives each wrapped step a name of its own, so chex counts its traces alone.

    train_step = jax.jit(max_traces(step, n=1), donate_argnames=("params",))
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import chex

_STEP_IDS = itertools.count()


def max_traces(fn: Callable, n: int) -> Callable:
  """`chex.assert_max_traces(fn, n)` with a count for this wrapper alone (see the module docstring).

  `fn` must be a fresh, unjitted function (e.g. defined inside the factory): its `__name__` is suffixed with a
  process-unique number, which also names it in chex's error.
  """
  fn.__name__ = f"{fn.__name__}#{next(_STEP_IDS)}"
  return chex.assert_max_traces(fn, n=n)
