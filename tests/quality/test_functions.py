import math

import numpy as np
import pytest

from darling_jax.quality import REWARD_FUNCTIONS, Quality
from darling_jax.registry import Registry


def length_reward(prompts, completions, **_):
  return [float(len(c)) for c in completions]


def test_trl_signature_columns_repeated_per_completion_and_weights():
  seen = {}

  def spy(prompts, completions, *, answer, id, **rest):
    seen.update(prompts=prompts, completions=completions, answer=answer, id=id, rest=rest)
    return [1.0 if c == a else 0.0 for c, a in zip(completions, answer)]

  quality = Quality([(spy, 2.0), (length_reward, 0.5)])
  values, per_function = quality(["p0", "p1"], [["4", "x"], ["7", "77"]], {"answer": ["4", "7"], "id": [10, 11]})
  assert seen["prompts"] == ["p0", "p0", "p1", "p1"] and seen["answer"] == ["4", "4", "7", "7"]
  assert seen["id"] == [10, 10, 11, 11] and seen["rest"] == {}
  np.testing.assert_allclose(values, [[2.5, 0.5], [2.5, 1.0]])
  assert set(per_function) == {"spy", "length_reward"} and per_function["spy"].shape == (2, 2)


def test_none_is_not_applicable_as_in_trl(caplog):
  def only_short(prompts, completions, **_):
    return [1.0 if len(c) < 3 else None for c in completions]

  def never(prompts, completions, **_):
    return [None] * len(completions)

  values, per_function = Quality([(only_short, 1.0), (length_reward, 0.1)])([""], [["ab", "abcd"]], {})
  np.testing.assert_allclose(values, [[1.2, 0.4]])  # the None of only_short adds nothing
  assert math.isnan(per_function["only_short"][0, 1])
  values, _ = Quality([(never, 1.0)])([""], [["a", "b"]], {})
  np.testing.assert_array_equal(values, [[0.0, 0.0]])
  assert "no applicable reward function" in caplog.text


@pytest.mark.parametrize("output, message", [
    (lambda n: [1.0] * (n - 1), r"'bad' returned 3 values for 4 completions"),
    (lambda n: [float("nan")] * n, r"'bad' returned nan for completion 0: rewards must be finite"),
    (lambda n: ["1"] * n, r"'bad' returned '1' for completion 0: expected a float or None"),
    (lambda n: 1.0, r"'bad' returned float, not a list of 4 floats"),
])
def test_bad_outputs_name_the_function(output, message):
  def bad(prompts, completions, **_):
    return output(len(completions))

  with pytest.raises(ValueError, match=message):
    Quality([(bad, 1.0)])(["p", "q"], [["a", "b"], ["c", "d"]], {})


def test_names_resolve_through_the_registry_and_import_paths():
  assert Quality([("math_verify", 1.0)]).names == ["math_verify"]
  quality = Quality([("tests.quality.test_functions:length_reward", 1.0)])
  np.testing.assert_array_equal(quality(["p"], [["abc", ""]], {})[0], [[3.0, 0.0]])
  with pytest.raises(ValueError, match=r"unknown reward function 'nope'; known: \[.*'math_verify'"):
    Quality([("nope", 1.0)])
  with pytest.raises(ValueError, match="cannot import module 'no_such_module'"):
    REWARD_FUNCTIONS.get("no_such_module:fn")
  with pytest.raises(ValueError, match="distinct names"):
    Quality([(length_reward, 1.0), (length_reward, 2.0)])


def test_registry_registers_and_lists():
  registry = Registry("widget", builtins={"lazy": "math:sqrt"})
  registry.register("double", lambda x: 2 * x)

  @registry.register("triple")
  def triple(x):
    return 3 * x

  assert registry.names() == ["double", "lazy", "triple"] and "lazy" in registry
  assert registry.get("lazy")(9.0) == 3.0 and registry.get("triple")(2) == 6
  with pytest.raises(ValueError, match="without ':'"):
    registry.register("a:b", triple)
