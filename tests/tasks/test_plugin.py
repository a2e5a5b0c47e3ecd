"""A task defined outside the package, named in the config as "module:Class", runs through the main job with the
defaults of `Task` (prompts as one chat turn, the generic evaluation)."""

import json

from darling_jax import train
from darling_jax.config_files import load_config
from darling_jax.data import prepare_jsonl_prompts
from darling_jax.tasks import Task, TaskData
from tests.chat_fixtures import policy_directory
from tests.test_train import DEFAULT


def short_and_sweet(prompts, completions, **_):
  return [1.0 if 0 < len(c) < 5 else 0.0 for c in completions]


class NamesTask(Task):
  """Prompt-only JSONL, quality from a reward function, everything else the base class's."""

  name = "names"

  def prepare_data(self, data_dir):
    builder = prepare_jsonl_prompts(data_dir, self.config["prompts"], split="train")
    return TaskData(train=builder, train_split="train", eval=builder, eval_split="train")

  def quality_functions(self):
    return [(short_and_sweet, 1.0)]


def test_a_plug_in_task_named_by_import_path(tmp_path):
  prompts = tmp_path / "prompts.jsonl"
  prompts.write_text("".join(json.dumps({"prompt": f"Name animal number {i}."}) + "\n" for i in range(4)))
  config = load_config(DEFAULT)
  config.task = {"name": "tests.tasks.test_plugin:NamesTask", "prompts": str(prompts)}
  config.policy.checkpoint = policy_directory(tmp_path / "policy")
  config.rl.update(steps=1, prompts_per_step=2, group_size=4, max_new_tokens=6, diversity_source="ngram",
                   ngram_unit="char")
  config.grpo.num_minibatches = 2
  config.eval.update(num_problems=2, num_samples=2, prompts_per_batch=2, classifier_accuracy=False)
  config.log.update(progress_bar=False, tensorboard=False)
  summary = train.train_and_evaluate(config, tmp_path / "run")
  assert summary["task"] == "names" and summary["steps"] == 1
  assert set(summary["eval_final_policy"]) == {"prompts", "quality", "distinct@2"}
  assert summary["eval_final_policy"]["prompts"] == 2.0
