import numpy as np
import pytest

from darling_jax.tasks import make_task
from darling_jax.tasks.countdown import countdown_reward
from darling_jax.tasks.countdown.tokenizer import countdown_tokenizer

BATCH = {"prompt": ["Numbers: 3 5 7 2 Target: 26 Expression:", "Numbers: 1 2 3 4 Target: 10 Expression:"],
         "numbers": np.asarray([[3, 5, 7, 2], [1, 2, 3, 4]], np.int32), "target": np.asarray([26, 10], np.int32)}
RESPONSES = [["3*7+5", "5+7*3", "(5+7)*2+2", "__import__('os')"], ["1+2+3+4", "4*3-2", "10", "1+2*3+4"]]
# (5+7)*2+2 uses 2 twice; 10 is not given; 1+2*3+4 is 11.


def test_reward_function_oracle_classes_and_step_metrics():
  task = make_task({"name": "countdown"})
  columns = task.reward_columns(BATCH)
  assert columns == {"numbers": [[3, 5, 7, 2], [1, 2, 3, 4]], "target": [26, 10]}
  flat = [text for group in RESPONSES for text in group]
  quality = countdown_reward([], flat, numbers=[n for n in columns["numbers"] for _ in range(4)],
                             target=[t for t in columns["target"] for _ in range(4)])
  assert quality == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
  oracle = task.oracle_classes(RESPONSES, BATCH)
  np.testing.assert_array_equal(oracle, [[0, 0, 2, 3], [0, 1, 2, 3]])
  metrics = task.rollout_metrics(RESPONSES, np.asarray(quality).reshape(2, 4), BATCH, oracle)
  assert metrics["pass_rate"] == 4 / 8 and metrics["distinct_correct"] == 1.5
  assert metrics["oracle_classes"] == 3.5


def test_prompts_and_settings_errors():
  task = make_task({"name": "countdown"})
  tokenizer = countdown_tokenizer()
  ids = task.prompt_ids(BATCH, tokenizer)
  assert tokenizer.decode(ids[0]) == "<bos><n3><n5><n7><n2><t2><t6>:"
  with pytest.raises(ValueError, match=r"task.sft.bogus"):
    make_task({"name": "countdown", "sft": {"steps": 10, "bogus": 1}})
  with pytest.raises(ValueError, match=r"task.classifier.bogus"):
    make_task({"name": "countdown", "classifier": {"bogus": 1}})
  with pytest.raises(ValueError, match=r"task.classifier.architecture must be one of"):
    make_task({"name": "countdown", "classifier": {"architecture": "siamese_net"}})
  with pytest.raises(ValueError, match=r"\['task.bogus'\]"):
    make_task({"name": "countdown", "bogus": 1})
