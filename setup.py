"""darling_jax: DARLING (diversity-aware GRPO, arXiv 2509.02534) in pure JAX / Flax NNX."""

from setuptools import find_packages, setup

setup(
    name="darling_jax",
    version="0.1.0",
    description="Diversity-Aware Reinforcement Learning (DARLING) for language models, in JAX.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["darling_jax", "darling_jax.*"]),
    install_requires=[
        "jax>=0.8",
        "flax>=0.12.8",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.11",
        "ml-collections>=1.0",
        "chex>=0.1.90",
        "transformers>=5.0",
        "tokenizers>=0.21",
        "safetensors>=0.5",
        "tensorflow-datasets>=4.9.9",
        "grain>=0.2.10",
        "importlib_resources",
        "gguf>=0.17",
        "math-verify>=0.8",  # the math task's answer check (the paper's verifier)
        "numpy>=1.26",
        "absl-py",
        "tqdm",
        "tensorboardX",  # TensorBoard event files of the trainer (no TensorFlow)
        "matplotlib",  # the trainer's PNG plots
    ],
    extras_require={
        # torch is pinned: a plain `torch` resolves to a multi-GB CUDA build on this machine.
        # accelerate: transformers' GGUF loading in the parity tests; hypothesis: property tests of the tasks;
        # nbclient, nbformat, ipykernel: tests/test_notebooks.py runs the colabs/ notebooks in a Jupyter kernel.
        "test": ["pytest>=8", "pytest-xdist", "hypothesis>=6.100", "torch==2.13.0", "accelerate", "nbclient>=0.10",
                 "nbformat>=5.10", "ipykernel>=6.29"],
        # `python -m darling_jax.plan --topology v5p:...`: libtpu (resolved together with jax) compiles for TPU
        # chips on any host; never needed to train.
        "tpu-plan": ["jax[tpu]"],
        # `python -m darling_jax.bench.rl_step`: TRL's GRPOTrainer on the same workload, the PyTorch reference
        # (torch pinned as in `test`); never a runtime dependency.
        "bench": ["trl==1.16.0", "torch==2.13.0"],
    },
)
