"""A character-level tokenizer for the Countdown policy and classifier (built with `tokenizers`).

Every character of `COUNTDOWN_ALPHABET` is one token; anything else is `<unk>`. The ids are fixed: the
special tokens first (`<pad>`=0, `<bos>`=1, `<eos>`=2, `<unk>`=3, `<cls>`=4, `<sep>`=5; `<cls>` and `<sep>`
let the pairwise equivalence classifier format `[CLS] a [SEP] b [SEP]`), then the alphabet in order (ids
6-41), then the prompt digits: `<n0>`-`<n9>` (42-51) write the digits of the numbers a Countdown prompt
offers and `<t0>`-`<t9>` (52-61) the digits of its target. 62 tokens in all.

The prompt digits exist so that the policy can tell the numbers it is given from the ones it has written: with
plain digits in both places, a small policy learns to copy the prompt's numbers but not to keep count of the
ones it has used (experiments/README.md, "Does the warm start learn which numbers it has used?"). They are
ordinary (not special) added tokens: decoding writes them out as `<n3>`, so a response that contains one does
not parse.

Encoding with `add_special_tokens=True` prepends `<bos>`; the rest of the code encodes with
`add_special_tokens=False` and places `<bos>` / `<eos>` itself. Decoding concatenates the tokens, so
`decode(encode(text)) == text` for every text over the alphabet and the prompt digits, in particular every
Countdown prompt and solution.

  tokenizer = countdown_tokenizer()
  ids = tokenizer(["Numbers: 3 5 Target: 8 Expression:"], add_special_tokens=False)["input_ids"]
  tokenizer.decode(ids[0])           # the same text
  tokenizer("<n3> <n5> <t8>:", add_special_tokens=False)["input_ids"]   # [45, 23, 47, 23, 60, 22]
  tokenizer.save_pretrained(directory)   # transformers.AutoTokenizer.from_pretrained(directory) loads it back
"""

from __future__ import annotations

import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

PAD, BOS, EOS, UNK, CLS, SEP = "<pad>", "<bos>", "<eos>", "<unk>", "<cls>", "<sep>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, CLS, SEP)
# Digits and operators of expressions, the letters and punctuation of `format_prompt`'s text, space, newline.
COUNTDOWN_ALPHABET = "0123456789+-*()=: \nENTabegimnoprstux"
# The digits of a prompt's numbers and of its target, as tokens of their own (see the module docstring).
NUMBER_DIGITS = tuple(f"<n{digit}>" for digit in range(10))
TARGET_DIGITS = tuple(f"<t{digit}>" for digit in range(10))


def countdown_vocab() -> dict[str, int]:
  """Token -> id: the special tokens, each character of `COUNTDOWN_ALPHABET`, then `NUMBER_DIGITS` and
  `TARGET_DIGITS`."""
  tokens = list(SPECIAL_TOKENS) + list(COUNTDOWN_ALPHABET) + list(NUMBER_DIGITS) + list(TARGET_DIGITS)
  if len(set(tokens)) != len(tokens):
    raise AssertionError("the Countdown vocabulary repeats a token")
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
  # Matched whole before the character split; not special, so decoding keeps them (see the module docstring).
  tokenizer.add_tokens([AddedToken(token, special=False, normalized=False)
                        for token in NUMBER_DIGITS + TARGET_DIGITS])
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
