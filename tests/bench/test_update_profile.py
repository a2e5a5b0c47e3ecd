"""The update profiler (`darling_jax.bench.update_profile`) at the micro shape: every traced op is joined with the
compiled HLO, and the dots it finds are exactly the update's model FLOPs."""

import pytest

from darling_jax.bench import update_profile


def test_profile_accounts_for_every_dot_flop_and_op():
  r = update_profile.profile_update("micro", repeats=1, top=5)
  # the traced dots (forward, input and weight gradients, attention, LM head) are `workloads.update_flops`
  assert r["traced_dot_flops"] == pytest.approx(r["model_flops"], rel=1e-6)
  assert sum(row["share"] for row in r["by_kind"]) == pytest.approx(100, abs=0.5)
  assert sum(row["ms"] for row in r["by_region"]) == pytest.approx(r["op_ms_total"], abs=0.1)
  regions = {row["name"] for row in r["by_region"]}
  assert {"LM head + log-softmax", "MLP", "attention projections", "optimizer (optax)"} <= regions
  assert len(r["top_ops"]) == 5 and r["top_ops"][0]["ms"] >= r["top_ops"][-1]["ms"]
  assert r["mem_peak_mib"] > 0
