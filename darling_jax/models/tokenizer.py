"""Tokenizers: loaded from a Hugging Face directory, or built from the metadata of a llama.cpp GGUF file.

A GGUF file has no `tokenizer.json`; llama.cpp stores the vocabulary, the BPE merges, each token's type
and the special token ids as metadata (`tokenizer.ggml.*`). `load_tokenizer` rebuilds a `tokenizers`
pipeline from those, following llama.cpp's reading of the same keys, and wraps it in a
`transformers.PreTrainedTokenizerFast`:

* `tokenizer.ggml.model == "gpt2"`: byte-level BPE. How text is split before BPE is not in the vocabulary
  but named by `tokenizer.ggml.pre`; `_BYTE_LEVEL_SPLITS` maps each supported name to the regexes of the
  model's own `tokenizer.json` (and llama.cpp). SmolLM's `"smollm"` isolates every digit before the GPT-2
  split, Llama 3's `"llama-bpe"` takes whole-word vocabulary hits before merging (`ignore_merges`), and
  Qwen2's `"qwen2"` NFC-normalizes first.
* `tokenizer.ggml.model == "llama"`: SentencePiece-style BPE with byte fallback (Llama 1/2, TinyLlama,
  Mistral v0.1), the way transformers' `LlamaTokenizer` builds it; merges are taken from the file or, when
  absent, derived from the vocabulary and the piece scores.

Tokens typed CONTROL are matched whole as special tokens and USER_DEFINED ones as plain added tokens.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from typing import Any

import transformers
from gguf import TokenType
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from darling_jax.models.gguf_metadata import gguf_metadata

# Files any one of which makes a directory loadable by `transformers.AutoTokenizer`.
HF_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
)

# The GPT-2 split (what `pre_tokenizers.ByteLevel(use_regex=True)` applies).
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclasses.dataclass(frozen=True)
class _ByteLevelSplit:
  """How a byte-level BPE vocabulary expects text to be prepared before its merges run.

  Attributes:
    splits: regexes applied in turn, each cutting every piece of the previous one (matches isolated).
    nfc: NFC-normalize the text first.
    ignore_merges: a piece that is itself a vocabulary entry becomes that token without merging.
    adds_bos: llama.cpp's default for `tokenizer.ggml.add_bos_token` when the file does not say.
  """

  splits: tuple[str, ...]
  nfc: bool = False
  ignore_merges: bool = False
  adds_bos: bool = False


_GPT2 = _ByteLevelSplit(splits=(_GPT2_SPLIT,))
_DIGITS_THEN_GPT2 = _ByteLevelSplit(splits=(r"\p{N}", _GPT2_SPLIT))  # StarCoder / SmolLM: Digits + ByteLevel
_LLAMA3 = _ByteLevelSplit(splits=(_LLAMA3_SPLIT,), ignore_merges=True, adds_bos=True)
_QWEN2 = _ByteLevelSplit(splits=(_QWEN2_SPLIT,), nfc=True)

# `tokenizer.ggml.pre` -> split. The names, and which of them share a split, are llama.cpp's
# (`llama_vocab::impl::load`); a file without the key gets the plain GPT-2 split.
_BYTE_LEVEL_SPLITS = {
    "gpt2": _GPT2,
    "gpt-2": _GPT2,
    "smollm": _DIGITS_THEN_GPT2,
    "starcoder": _DIGITS_THEN_GPT2,
    "refact": _DIGITS_THEN_GPT2,
    "codeshell": _DIGITS_THEN_GPT2,
    "command-r": _DIGITS_THEN_GPT2,
    "llama3": _LLAMA3,
    "llama-v3": _LLAMA3,
    "llama-bpe": _LLAMA3,
    "qwen2": _QWEN2,
    "deepseek-r1-qwen": _QWEN2,
}

_SPECIAL_TOKEN_KEYS = {
    "bos_token": "tokenizer.ggml.bos_token_id",
    "eos_token": "tokenizer.ggml.eos_token_id",
    "unk_token": "tokenizer.ggml.unknown_token_id",
    "pad_token": "tokenizer.ggml.padding_token_id",
}

_SENTENCEPIECE_SPACE = "\u2581"  # "▁", SentencePiece's spelling of a space


def load_tokenizer(path: str | os.PathLike[str]) -> transformers.PreTrainedTokenizerBase:
  """Loads the tokenizer of a Hugging Face model directory or of a llama.cpp `.gguf` file.

  Args:
    path: a directory holding tokenizer files (`tokenizer.json`, `tokenizer_config.json`, ...), loaded
      with `transformers.AutoTokenizer` from local files only; or a `.gguf` file, whose tokenizer is
      rebuilt from its metadata (see the module docstring).

  Returns:
    The tokenizer, with its special tokens, BOS/EOS behaviour and chat template.

  Raises:
    FileNotFoundError: `path` does not exist, or is a directory without tokenizer files.
    ValueError: `path` is a file that is not `.gguf`, or the GGUF tokenizer is missing or unsupported.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"tokenizer path {str(path)!r} does not exist")
  if path.is_dir():
    if not any((path / name).is_file() for name in HF_TOKENIZER_FILES):
      gguf_files = sorted(path.glob("*.gguf"))
      hint = f"; for a GGUF file's tokenizer, pass the file itself, e.g. {str(gguf_files[0])!r}" if gguf_files else ""
      raise FileNotFoundError(
          f"directory {str(path)!r} holds no tokenizer files (expected one of {', '.join(HF_TOKENIZER_FILES)}){hint}")
    return transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
  if path.suffix.lower() == ".gguf":
    return tokenizer_from_gguf(path)
  raise ValueError(f"tokenizer path {str(path)!r} is neither a directory with tokenizer files nor a .gguf file")


def tokenizer_from_gguf(path: str | os.PathLike[str]) -> transformers.PreTrainedTokenizerFast:
  """Builds the tokenizer a GGUF file describes from its `tokenizer.*` metadata (see `load_tokenizer`)."""
  path = os.fspath(path)
  metadata = gguf_metadata(path)
  tokenizer_model = metadata.get("tokenizer.ggml.model")
  if tokenizer_model is None:
    raise ValueError(f"{path!r} holds no tokenizer: its metadata has no 'tokenizer.ggml.model'")
  tokens = metadata.get("tokenizer.ggml.tokens")
  if not tokens:
    raise ValueError(f"{path!r} holds no vocabulary: 'tokenizer.ggml.tokens' is missing or empty")
  token_types = metadata.get("tokenizer.ggml.token_type") or [TokenType.NORMAL] * len(tokens)
  if len(token_types) != len(tokens):
    raise ValueError(
        f"{path!r}: 'tokenizer.ggml.token_type' has {len(token_types)} entries for {len(tokens)} tokens")

  if tokenizer_model == "gpt2":
    pre = metadata.get("tokenizer.ggml.pre", "gpt2")
    if pre not in _BYTE_LEVEL_SPLITS:
      raise ValueError(f"{path!r}: unsupported byte-level pre-tokenizer tokenizer.ggml.pre={pre!r}; "
                       f"supported: {sorted(_BYTE_LEVEL_SPLITS)}")
    split = _BYTE_LEVEL_SPLITS[pre]
    backend = _byte_level_bpe(tokens, token_types, metadata.get("tokenizer.ggml.merges"), split, path)
    adds_bos_by_default = split.adds_bos
  elif tokenizer_model == "llama":
    backend = _sentencepiece_bpe(tokens, metadata, path)
    adds_bos_by_default = True  # llama.cpp's default for SentencePiece vocabularies
  else:
    raise ValueError(f"{path!r}: unsupported tokenizer model tokenizer.ggml.model={tokenizer_model!r}; "
                     "supported: 'gpt2' (byte-level BPE) and 'llama' (SentencePiece BPE)")

  _add_typed_tokens(backend, tokens, token_types)

  special_tokens = {}
  for name, key in _SPECIAL_TOKEN_KEYS.items():
    token_id = metadata.get(key)
    if token_id is None:
      continue
    if not 0 <= token_id < len(tokens):
      raise ValueError(f"{path!r}: {key}={token_id} is outside the vocabulary of {len(tokens)} tokens")
    special_tokens[name] = tokens[token_id]

  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=backend,
      name_or_path=path,
      add_bos_token=bool(metadata.get("tokenizer.ggml.add_bos_token", adds_bos_by_default)),
      add_eos_token=bool(metadata.get("tokenizer.ggml.add_eos_token", False)),
      chat_template=metadata.get("tokenizer.chat_template"),
      clean_up_tokenization_spaces=False,
      **special_tokens,
  )


@functools.cache
def _byte_to_unicode() -> dict[int, str]:
  """GPT-2's spelling of bytes as printable characters: `{byte: character}`."""
  printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
  spelling = {byte: chr(byte) for byte in printable}
  shifted = 0
  for byte in range(256):
    if byte not in spelling:
      spelling[byte] = chr(256 + shifted)
      shifted += 1
  return spelling


def _byte_level_bpe(tokens: list[str], token_types: list[int], merges: list[str] | None, split: _ByteLevelSplit,
                    path: str) -> Tokenizer:
  """Byte-level BPE over the file's vocabulary and merges, split as `split` says."""
  if not merges:
    raise ValueError(f"{path!r}: a byte-level BPE vocabulary needs 'tokenizer.ggml.merges', which is missing")
  spelling = _byte_to_unicode()
  alphabet = frozenset(spelling.values())
  added_types = (TokenType.CONTROL, TokenType.USER_DEFINED)
  vocab = {}
  for token_id, (token, token_type) in enumerate(zip(tokens, token_types)):
    # Ordinary tokens are stored spelled in the byte alphabet. Added (control / user-defined) tokens are
    # stored as the raw text they match, and keep that key so the added token finds its id.
    if token_type not in added_types and not alphabet.issuperset(token):
      token = "".join(spelling[byte] for byte in token.encode("utf-8"))
    vocab[token] = token_id

  try:
    bpe = models.BPE(vocab=vocab, merges=_merge_pairs(merges, path), dropout=None, unk_token=None,
                     continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False, byte_fallback=False,
                     ignore_merges=split.ignore_merges)
  except Exception as error:  # tokenizers raises a bare Exception for a merge of unknown tokens
    raise ValueError(f"{path!r}: the BPE merges do not fit the vocabulary: {error}") from error

  backend = Tokenizer(bpe)
  if split.nfc:
    backend.normalizer = normalizers.NFC()
  backend.pre_tokenizer = pre_tokenizers.Sequence(
      [pre_tokenizers.Split(Regex(pattern), behavior="isolated") for pattern in split.splits]
      + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  backend.decoder = decoders.ByteLevel()
  return backend


def _sentencepiece_bpe(tokens: list[str], metadata: dict[str, Any], path: str) -> Tokenizer:
  """SentencePiece BPE with byte fallback, as transformers' `LlamaTokenizer` sets it up."""
  vocab = {token: token_id for token_id, token in enumerate(tokens)}
  merges = metadata.get("tokenizer.ggml.merges")
  if merges:
    merge_pairs = _merge_pairs(merges, path)
  else:
    scores = metadata.get("tokenizer.ggml.scores")
    if scores is None or len(scores) != len(tokens):
      raise ValueError(f"{path!r}: a SentencePiece vocabulary without merges needs one 'tokenizer.ggml.scores' "
                       "entry per token to derive them")
    merge_pairs = _merges_from_scores(vocab, dict(zip(tokens, scores)))

  unk_id = metadata.get("tokenizer.ggml.unknown_token_id")
  unk_token = tokens[unk_id] if unk_id is not None and 0 <= unk_id < len(tokens) else None
  try:
    bpe = models.BPE(vocab=vocab, merges=merge_pairs, dropout=None, unk_token=unk_token, fuse_unk=True,
                     byte_fallback=True)
  except Exception as error:  # tokenizers raises a bare Exception for a merge of unknown tokens
    raise ValueError(f"{path!r}: the BPE merges do not fit the vocabulary: {error}") from error

  add_space_prefix = bool(metadata.get("tokenizer.ggml.add_space_prefix", True))
  backend = Tokenizer(bpe)
  backend.pre_tokenizer = pre_tokenizers.Metaspace(
      replacement=_SENTENCEPIECE_SPACE, prepend_scheme="first" if add_space_prefix else "never", split=False)
  steps = [decoders.Replace(_SENTENCEPIECE_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
  if add_space_prefix:
    steps.append(decoders.Strip(content=" ", left=1, right=0))
  backend.decoder = decoders.Sequence(steps)
  return backend


def _merge_pairs(merges: list[str], path: str) -> list[tuple[str, str]]:
  """`["a b", ...]` (GGUF's spelling of merges) -> `[("a", "b"), ...]`."""
  pairs = []
  for index, merge in enumerate(merges):
    pair = merge.split(" ")
    if len(pair) != 2:
      raise ValueError(f"{path!r}: merge {index} is {merge!r}, not two tokens separated by one space")
    pairs.append((pair[0], pair[1]))
  return pairs


def _merges_from_scores(vocab: dict[str, int], scores: dict[str, float]) -> list[tuple[str, str]]:
  """BPE merges implied by a SentencePiece vocabulary: every split of a piece into two pieces, best score first.

  Ties are ordered as transformers' `generate_merges` orders them (shorter left piece, then shorter right
  piece, ranked last; otherwise vocabulary order), so both build the same tokenizer.
  """
  merges = []
  for piece, score in scores.items():
    splits = [(piece[:cut], piece[cut:]) for cut in range(1, len(piece))
              if piece[:cut] in vocab and piece[cut:] in vocab]
    splits.sort(key=lambda pair: (vocab[pair[0]], vocab[pair[1]]))
    merges.extend((left, right, score) for left, right in splits)
  merges.sort(key=lambda merge: (merge[2], len(merge[0]), len(merge[1])), reverse=True)
  return [(left, right) for left, right, _ in merges]


def _add_typed_tokens(backend: Tokenizer, tokens: list[str], token_types: list[int]) -> None:
  """Makes CONTROL tokens special added tokens and USER_DEFINED tokens plain added tokens (matched whole)."""
  control = [AddedToken(token, normalized=False, special=True)
             for token, token_type in zip(tokens, token_types) if token_type == TokenType.CONTROL]
  user_defined = [AddedToken(token, normalized=False, special=False)
                  for token, token_type in zip(tokens, token_types) if token_type == TokenType.USER_DEFINED]
  if control:
    backend.add_special_tokens(control)
  if user_defined:
    backend.add_tokens(user_defined)
