"""Ahead-of-time planning of a run: its jitted stages compiled for a device topology (`darling_jax.plan`)."""
