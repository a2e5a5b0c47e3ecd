"""Tiny chat models for the pretrained-policy paths (no downloads): a byte-level tokenizer with a ChatML template,
a random policy directory and a random one-label reward model directory."""

from __future__ import annotations

import pathlib

import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIALS = ("<|im_start|>", "<|im_end|>", "<pad>")


def chat_tokenizer(*, chat_template: bool = True) -> transformers.PreTrainedTokenizerFast:
  """Byte-level tokens (one per byte, no merges) plus `<|im_start|>`, `<|im_end|>` (EOS) and `<pad>`: 259 ids."""
  alphabet = pre_tokenizers.ByteLevel.alphabet()
  vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
  backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
  backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  backend.decoder = decoders.ByteLevel()
  backend.add_special_tokens(list(SPECIALS))
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<pad>", bos_token="<|im_start|>",
      chat_template=CHATML if chat_template else None, clean_up_tokenization_spaces=False)


def policy_directory(directory: pathlib.Path, *, chat_template: bool = True, seed: int = 0) -> str:
  """A random 2-layer Llama policy (about 0.2M parameters) with `chat_tokenizer`, written as an HF directory."""
  from darling_jax.models import DecoderConfig, init_model, save_pretrained
  tokenizer = chat_tokenizer(chat_template=chat_template)
  config = DecoderConfig(vocab_size=264, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                         num_kv_heads=2, head_dim=16, max_position_embeddings=1024, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
  save_pretrained(init_model(config, seed=seed), str(directory), tokenizer=tokenizer)
  return str(directory)


def reward_model_directory(directory: pathlib.Path, model_type: str = "llama", seed: int = 0) -> str:
  """A random transformers `*ForSequenceClassification` with one label and `chat_tokenizer`."""
  import torch
  tokenizer = chat_tokenizer()
  config_class = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}[model_type]
  config = config_class(vocab_size=264, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=1024,
                        num_labels=1, pad_token_id=tokenizer.pad_token_id)
  torch.manual_seed(seed)
  model = transformers.AutoModelForSequenceClassification.from_config(config).eval()
  with torch.no_grad():
    for name, parameter in model.named_parameters():
      if "norm" not in name:
        parameter.normal_(0.0, 0.1)
  model.save_pretrained(directory)
  tokenizer.save_pretrained(directory)
  return str(directory)


def classifier_directory(directory: pathlib.Path, seed: int = 0) -> str:
  """A random 1-layer BERT pair classifier over `chat_tokenizer`, whose `<|im_start|>` / `<|im_end|>` serve as
  [CLS] / [SEP] (as the official Qwen3-Embedding classifier's do)."""
  from darling_jax.classifiers import BertClassifierConfig, init_classifier, save_classifier
  tokenizer = chat_tokenizer()
  tokenizer.cls_token, tokenizer.sep_token = "<|im_start|>", "<|im_end|>"
  config = BertClassifierConfig(vocab_size=264, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                                num_labels=2, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
  save_classifier(init_classifier(config, seed=seed), str(directory), tokenizer=tokenizer)
  return str(directory)


def bi_encoder_directory(directory: pathlib.Path, seed: int = 0) -> str:
  """A random 1-layer BERT sentence encoder over `chat_tokenizer` (`<|im_start|>` / `<|im_end|>` as [CLS] /
  [SEP]) with a hand-set `SimilarityHead` (higher cosine and word overlap: more similar), saved by
  `save_bi_encoder`."""
  from darling_jax.classifiers import BertClassifierConfig, init_classifier
  from darling_jax.equivalence.bi_encoder import BiEncoderClassifier, SimilarityHead, save_bi_encoder
  from darling_jax.equivalence.similarity_features import FEATURE_NAMES
  tokenizer = chat_tokenizer()
  tokenizer.cls_token, tokenizer.sep_token = "<|im_start|>", "<|im_end|>"
  config = BertClassifierConfig(vocab_size=264, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                                num_labels=2, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
  count = len(FEATURE_NAMES)
  head = SimilarityHead(FEATURE_NAMES, (0.5,) * count, (0.25,) * count, (1.0, 0.5, 2.0) + (0.0,) * (count - 3), -1.0)
  classifier = BiEncoderClassifier(init_classifier(config, seed=seed).bert, tokenizer, head, max_tokens=96,
                                   head_tokens=32, threshold=0.5)
  save_bi_encoder(classifier, directory)
  return str(directory)


def transformers_policy_directory(directory: pathlib.Path, model_type: str, seed: int = 0) -> str:
  """A random transformers causal LM (`llama` or `qwen3`: q/k norms) with `chat_tokenizer`, written by
  `save_pretrained` (what a user's downloaded checkpoint looks like, at 2 layers of width 64)."""
  import torch
  tokenizer = chat_tokenizer()
  config_class = {"llama": transformers.LlamaConfig, "qwen3": transformers.Qwen3Config}[model_type]
  config = config_class(vocab_size=264, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=1024,
                        tie_word_embeddings=model_type == "qwen3", eos_token_id=tokenizer.eos_token_id,
                        bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id)
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(config).eval()
  model.save_pretrained(directory)
  tokenizer.save_pretrained(directory)
  return str(directory)
