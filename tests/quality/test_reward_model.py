"""The decoder reward model against transformers on tiny random `*ForSequenceClassification` models."""

import numpy as np
import pytest
import torch
import transformers

from darling_jax.quality import RewardModel
from tests.chat_fixtures import policy_directory, reward_model_directory

PROMPTS = ["What is 2 + 3?", "Name a colour.", "Tell me a story about a very small robot who learns to swim."]
COMPLETIONS = ["5", "The answer is \\boxed{5}.", "Blue, like the sea on a clear summer morning, or teal."]


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_scores_match_transformers(tmp_path, model_type):
  directory = reward_model_directory(tmp_path / "rm", model_type)
  reference = transformers.AutoModelForSequenceClassification.from_pretrained(directory).eval()
  tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
  reward_model = RewardModel(directory, batch_size=4)
  prompts = [p for p in PROMPTS for _ in COMPLETIONS]
  completions = COMPLETIONS * len(PROMPTS)
  ours = np.asarray(reward_model(prompts, completions))
  expected = []
  for prompt, completion in zip(prompts, completions):
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                         {"role": "assistant", "content": completion}], tokenize=True,
                                        return_dict=False)
    with torch.no_grad():
      expected.append(float(reference(torch.tensor([ids])).logits[0, 0]))
  np.testing.assert_allclose(ours, expected, atol=1e-4)
  assert len(set(np.round(ours, 4))) == len(ours)  # a random model tells the rows apart


def test_reward_model_errors(tmp_path):
  with pytest.raises(ValueError, match="must be a decoder \\*ForSequenceClassification with num_labels=1"):
    RewardModel(policy_directory(tmp_path / "policy"))
