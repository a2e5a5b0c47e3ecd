import numpy as np
import pytest

from darling_jax.diversity.sources import DIVERSITY_SOURCES, DiversityContext

GROUPS = [["3*7+5", "5+3*7", "2*9"], ["a b c d e", "a b c d e", "x y z w v"]]


def test_the_built_in_sources():
  assert DIVERSITY_SOURCES.names() == ["classifier", "ngram", "oracle"]
  oracle = lambda texts, batch: np.asarray([[0, 0, 2], [0, 0, 2]], np.int32)  # noqa: E731
  diversity, classes = DIVERSITY_SOURCES.get("oracle")(GROUPS, {}, DiversityContext(oracle_classes=oracle))
  np.testing.assert_allclose(diversity, [[0.5, 0.5, 1.0]] * 2)
  np.testing.assert_array_equal(classes, oracle(None, None))

  class Identical:  # an equivalence classifier that calls two responses the same iff their texts are
    def __call__(self, groups):
      same = np.asarray([[[a == b for b in group] for a in group] for group in groups])
      return same, same.astype(np.float32)

  diversity, classes = DIVERSITY_SOURCES.get("classifier")(GROUPS, {}, DiversityContext(equivalence=Identical()))
  np.testing.assert_allclose(diversity, [[1.0, 1.0, 1.0], [0.5, 0.5, 1.0]])
  diversity, classes = DIVERSITY_SOURCES.get("ngram")(GROUPS, {}, DiversityContext(ngram_n=2))
  assert classes is None and diversity.shape == (2, 3) and diversity[1, 0] == 0.0 and diversity[1, 2] == 1.0


def test_sources_name_what_they_miss():
  with pytest.raises(ValueError, match="needs an equivalence classifier"):
    DIVERSITY_SOURCES.get("classifier")(GROUPS, {}, DiversityContext())
  with pytest.raises(ValueError, match="needs a task with ground-truth classes"):
    DIVERSITY_SOURCES.get("oracle")(GROUPS, {}, DiversityContext(oracle_classes=lambda texts, batch: None))
