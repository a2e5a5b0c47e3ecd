"""Math question / answer sets as a DARLING task (`darling_jax.tasks.math.task.MathTask`), with generated
arithmetic word problems for small policies (`darling_jax.tasks.math.arithmetic`)."""

from darling_jax.tasks.math.arithmetic import ArithmeticConfig, arithmetic_problems, write_arithmetic_problems
from darling_jax.tasks.math.task import MathTask

__all__ = ["ArithmeticConfig", "MathTask", "arithmetic_problems", "write_arithmetic_problems"]
