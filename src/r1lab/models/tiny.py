"""Tiny randomly initialised models with a character-level tokenizer, built in code for tests (no files)."""

from __future__ import annotations

import string

import torch

SPECIAL = ["<pad>", "<|im_start|>", "<|im_end|>"]
# Plain (non-special) added tokens: kept by decode(skip_special_tokens=True), like text tags in real models.
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer():
    """Character-level fast tokenizer over printable ASCII plus the chat and R1 tags; eos = pad-like <|im_end|>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL)}
    for tag in TAGS:
        vocab[tag] = len(vocab)
    for ch in string.printable:
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens(SPECIAL)
    core.add_tokens(TAGS)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|im_end|>", bos_token=None)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_model(tokenizer=None, seed: int = 0, hidden: int = 32, layers: int = 2):
    """A 2-layer Llama with a vocabulary matching ``tokenizer`` (default: ``tiny_tokenizer()``)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def save_tiny_model(folder, seed: int = 0, hidden: int = 32) -> None:
    """Write a tiny model + tokenizer as an HF folder, so the CLI can load it like any other model.

    ``hidden`` >= 128 for vLLM: its CPU attention takes head sizes from 32 up (4 heads here)."""
    tok = tiny_tokenizer()
    model = tiny_model(tok, seed=seed, hidden=hidden)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
