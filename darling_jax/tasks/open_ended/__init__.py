"""Open-ended prompts (NoveltyBench, WildChat) as a DARLING task: `darling_jax.tasks.open_ended.task`."""

from darling_jax.tasks.open_ended.task import OpenEndedSettings, OpenEndedTask

__all__ = ["OpenEndedSettings", "OpenEndedTask"]
