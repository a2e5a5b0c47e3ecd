"""A character-level tokenizer for the Countdown policy and classifier (built with `tokenizers`).

Every character of `COUNTDOWN_ALPHABET` is one token; anything else is `<unk>`. The ids are fixed: the
special tokens first (`<pad>`=0, `<bos>`=1, `<eos>`=2, `<unk>`=3, `<cls>`=4, `<sep>`=5; `<cls>` and `<sep>`
let the pairwise equivalence classifier format `[CLS] a [SEP] b [SEP]`), then the alphabet in order: 42
tokens in all. Encoding with `add_special_tokens=True` prepends `<bos>`; the rest of the code encodes with
`add_special_tokens=False` and places `<bos>` / `<eos>` itself. Decoding concatenates the characters, so
`decode(encode(text)) == text` for every text over the alphabet, in particular every Countdown prompt and
solution.

  tokenizer = countdown_tokenizer()
  ids = tokenizer(["Numbers: 3 5 Target: 8 Expression:"], add_special_tokens=False)["input_ids"]
  tokenizer.decode(ids[0])           # the same text
  tokenizer.save_pretrained(directory)   # transformers.AutoTokenizer.from_pretrained(directory) loads it back
"""

from __future__ import annotations

import transformers
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

PAD, BOS, EOS, UNK, CLS, SEP = "<pad>", "<bos>", "<eos>", "<unk>", "<cls>", "<sep>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, CLS, SEP)
# Digits and operators of expressions, the letters and punctuation of `format_prompt`'s text, space, newline.
COUNTDOWN_ALPHABET = "0123456789+-*()=: \nENTabegimnoprstux"


def countdown_vocab() -> dict[str, int]:
  """Token -> id: the special tokens, then each character of `COUNTDOWN_ALPHABET`."""
  tokens = list(SPECIAL_TOKENS) + list(COUNTDOWN_ALPHABET)
  if len(set(tokens)) != len(tokens):
    raise AssertionError("COUNTDOWN_ALPHABET repeats a character")
  return {token: index for index, token in enumerate(tokens)}


def countdown_tokenizer() -> transformers.PreTrainedTokenizerFast:
  """The character-level Countdown tokenizer (see the module docstring), as a transformers fast tokenizer."""
  vocab = countdown_vocab()
  tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
  # Each character is its own piece, which WordLevel maps to its id (or <unk>); `[\s\S]` matches newlines too.
  tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
  tokenizer.decoder = decoders.Fuse()
  tokenizer.post_processor = processors.TemplateProcessing(
      single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])])
  tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=tokenizer,
      pad_token=PAD,
      bos_token=BOS,
      eos_token=EOS,
      unk_token=UNK,
      cls_token=CLS,
      sep_token=SEP,
      clean_up_tokenization_spaces=False,
      model_input_names=["input_ids", "attention_mask"],
  )
