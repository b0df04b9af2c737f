"""Prompts longer than a job can take, found when the task is loaded, before any training or generation.

A job's limit (``rollout.max_prompt_tokens``, ``sampling.max_prompt_tokens``) counts the tokens of the prompt as
the model sees it (template included); 0 means the model's context length minus the job's longest completion.
A prompt over the limit stops the job with its row (``data.jsonl:3: prompt is 2,500,000 tokens, ...``), or, with
``task.overlong_prompts=drop``, is left out and counted.

Tokenizing a 10 MB prompt takes 20-50 s and 2-4 GB with a fast tokenizer, and tokenizing every short prompt of a
large task adds seconds to each run, so sizes settle most prompts (``over_limit``). A prompt of B bytes has at
most 3B + 3 tokens, so a short one fits. A huge one is proven too long without tokenizing it when the tokenizer
allows: when no token stands for more than K bytes of (normalised) text, B bytes are at least B / K tokens. That
holds for BPE without fused unknown-token runs (every byte-level and byte-fallback LLM tokenizer) and for
character-level vocabularies; with other tokenizers (a WordPiece [UNK] may stand for a whole word) and for sizes in
between, the prompt is tokenized and counted exactly.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from r1lab.tasks.base import Task
from r1lab.types import Example

# Where a model config keeps its context length, by architecture family (Llama/Qwen/Mistral, GPT-2, others)
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
# Pre-tokenizers that keep every character of the text (Whitespace, BertPreTokenizer and the like drop spaces)
_KEEPING_PRE_TOKENIZERS = {"ByteLevel", "Metaspace", "Digits", "Punctuation", "UnicodeScripts", "Split", "Sequence"}


@dataclass(frozen=True)
class PromptLimit:
    tokens: int | None  # None: no limit known (auto, and the model's config has no context length)
    key: str  # the config key that sets it, for messages
    reason: str  # where the number comes from


def context_length(model_config: Any) -> int | None:
    for key in CONTEXT_KEYS:
        value = getattr(model_config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def prompt_limit(configured: int, key: str, model_config: Any, max_new_tokens: int) -> PromptLimit:
    """``configured`` > 0 is the limit; 0 (auto) is the model's context length minus ``max_new_tokens``."""
    if configured > 0:
        return PromptLimit(configured, key, "as set")
    context = context_length(model_config)
    if context is None:
        return PromptLimit(None, key, f"auto, but the model's config has none of {', '.join(CONTEXT_KEYS)}")
    if context <= max_new_tokens:
        raise ValueError(f"{key}=0 (auto): the model's {context:,}-token context leaves no room for a prompt before "
                         f"{max_new_tokens:,} new tokens; lower max_new_tokens or set {key}")
    return PromptLimit(context - max_new_tokens, key,
                       f"auto: the model's {context:,}-token context minus {max_new_tokens:,} new tokens")


def max_bytes_per_token(tokenizer) -> int | None:
    """The most UTF-8 bytes of normalised text one token can stand for, or None when that is unbounded or unknown.

    A vocabulary entry is written with at least as many bytes as the text it stands for (byte-level BPE writes a
    byte as a 1-2 byte character, SentencePiece a space as the 3-byte "▁", byte fallback a byte as "<0xAB>"); an
    unknown-character token that is not fused with its neighbours stands for one character (at most 4 bytes)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    spec = json.loads(backend.to_str())
    model, pre = spec.get("model") or {}, spec.get("pre_tokenizer")
    if not _keeps_text(pre):
        return None
    kind = model.get("type")
    if kind == "BPE":
        bounded = model.get("unk_token") is None or model.get("byte_fallback") or not model.get("fuse_unk")
    elif kind == "Unigram":
        bounded = bool(model.get("byte_fallback"))
    elif kind in ("WordLevel", "WordPiece"):  # a token per pre-token piece: bounded when every piece is one character
        bounded = isinstance(pre, dict) and pre.get("type") == "Split" and pre.get("pattern") == {"String": ""} \
            and pre.get("behavior") == "Isolated" and not pre.get("invert")
    else:
        bounded = False
    if not bounded:
        return None
    vocab = model.get("vocab") or {}
    pieces = list(vocab) if isinstance(vocab, dict) else [piece for piece, _ in vocab]
    pieces += [t.get("content", "") for t in spec.get("added_tokens") or []]
    return max([4] + [len(p.encode("utf-8")) for p in pieces])


def _keeps_text(pre: dict | None) -> bool:
    if pre is None:
        return True
    kind = pre.get("type")
    if kind == "Sequence":
        return all(_keeps_text(p) for p in pre.get("pretokenizers") or [])
    return kind in _KEEPING_PRE_TOKENIZERS and not (kind == "Split" and pre.get("behavior") == "Removed")


def over_limit(prompts: Sequence[str], tokenizer, limit: int) -> dict[int, tuple[int, bool]]:
    """index -> (tokens, exact) of the prompts longer than ``limit`` tokens, counted as the rollout engines tokenize
    (no special tokens added). Sizes settle most prompts without tokenizing: a token stands for at least one byte
    of the pre-tokenized text, which has at most 3 bytes per normalised byte (SentencePiece writes a space as "▁")
    plus a prefix, so a prompt of B bytes with 3B + 3 <= limit fits; one proven too long by ``max_bytes_per_token``
    gets that lower bound and exact=False."""
    normalizer = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)
    per_token: int | None = 0  # 0: not looked up yet (it reads the whole vocabulary)
    over: dict[int, tuple[int, bool]] = {}
    unsettled = []
    for i, prompt in enumerate(prompts):
        text = normalizer.normalize_str(prompt) if normalizer is not None else prompt  # what the model reads
        size = len(text.encode("utf-8"))
        if 3 * size + 3 <= limit:
            continue
        if size > 4 * limit:  # only then can the size prove anything (max_bytes_per_token is at least 4)
            per_token = max_bytes_per_token(tokenizer) if per_token == 0 else per_token
            if per_token is not None and -(-size // per_token) > limit:
                over[i] = (-(-size // per_token), False)
                continue
        unsettled.append(i)
    if unsettled:
        ids = tokenizer([prompts[i] for i in unsettled], add_special_tokens=False)["input_ids"]
        over.update((i, (len(row), True)) for i, row in zip(unsettled, ids) if len(row) > limit)
    return over


def fit_examples(examples: list[Example], prompts: Sequence[Sequence[str]], tokenizer, limit: PromptLimit,
                 mode: str, what: str) -> list[Example]:
    """The examples whose prompts all fit ``limit``; ``prompts[i]`` holds every prompt example i is shown as (one
    per prompt variant). ``mode`` error raises on the first that does not fit, naming its row; drop leaves those
    out and prints how many. ``what`` names the examples in messages (training, held-out)."""
    if limit.tokens is None or not examples:
        return examples
    owner = [i for i, group in enumerate(prompts) for _ in group]
    found = over_limit([p for group in prompts for p in group], tokenizer, limit.tokens)
    longest: dict[int, tuple[int, bool]] = {}
    for j, count in found.items():  # an example is as long as its longest prompt variant
        longest[owner[j]] = max(longest.get(owner[j], count), count, key=lambda c: c[0])
    over = sorted(longest)
    if not over:
        return examples
    first, (tokens, exact) = examples[over[0]], longest[over[0]]
    chars = max(len(p) for p in prompts[over[0]])
    size = f"{tokens:,} tokens" if exact else f"at least {tokens:,} tokens ({chars:,} characters)"
    if mode == "error":
        others = len(over) - 1
        more = f"; {others:,} more {what} prompt{'s are' if others > 1 else ' is'} too long" if others else ""
        raise ValueError(f"{first.id}: prompt is {size}, {limit.key} is {limit.tokens:,} ({limit.reason}){more}. "
                         f"Shorten or remove the row, raise {limit.key}, or set task.overlong_prompts=drop to leave "
                         f"such problems out")
    dropped = set(over)
    kept = [e for i, e in enumerate(examples) if i not in dropped]
    if not kept:
        raise ValueError(f"every {what} prompt is longer than {limit.key}={limit.tokens:,} ({limit.reason}), e.g. "
                         f"{first.id}: {size}")
    print(f"note: left out {len(over):,} of {len(examples):,} {what} problems whose prompt is longer than "
          f"{limit.key}={limit.tokens:,} (task.overlong_prompts=drop), e.g. {first.id}: {size}", file=sys.stderr)
    return kept


def fit_task(task: Task, render: Callable[[Example], Sequence[str]], tokenizer, limit: PromptLimit, mode: str,
             train: bool = True) -> Task:
    """``task`` with its problems checked (held-out ones, and training ones unless ``train`` is False) by
    ``fit_examples``; ``render`` gives every prompt an example is shown as."""
    held_out = fit_examples(task.eval, [render(e) for e in task.eval], tokenizer, limit, mode, "held-out")
    training = fit_examples(task.train, [render(e) for e in task.train], tokenizer, limit, mode, "training") \
        if train else task.train
    if training is task.train and held_out is task.eval:
        return task
    return dataclasses.replace(task, train=training, eval=held_out)
