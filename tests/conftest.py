"""Test setup: 8 fake CPU devices (before JAX starts), no hub access, float32 matmuls."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# With libtpu installed (the tpu-plan extra) several JAX processes (xdist workers, the plan test) load it at once.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_default_matmul_precision", "highest")
# Tests compile many small programs and run few FLOPs: XLA's optimisation passes cost more than they save.
jax.config.update("jax_disable_most_optimizations", True)
