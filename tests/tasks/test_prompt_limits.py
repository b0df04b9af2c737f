"""Prompt length limits (r1lab.tasks.prompt_limits): the auto limit, counts that agree with the tokenizer, a 10 MB
prompt rejected in well under a second without being tokenized, and the error and drop modes' messages."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from r1lab.models.tiny import tiny_tokenizer
from r1lab.tasks.base import Task
from r1lab.tasks.prompt_limits import (PromptLimit, fit_examples, fit_task, max_bytes_per_token, over_limit,
                                       prompt_limit)
from r1lab.types import Example

TEN_MB = ("Natalia sold clips to 48 of her friends in April, and then half as many in May. " * 130_000)[:10_000_000]


def byte_level_bpe():
    """A small byte-level BPE tokenizer (the kind SmolLM2, Llama 3 and Qwen use), trained in code."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|im_end|>"])
    core.train_from_iterator([TEN_MB[:20_000], "What is 12 + 7? Answer with just the number."], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>")


def word_piece():
    """A WordPiece tokenizer: its [UNK] may stand for a whole word, so sizes prove nothing."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")


def test_auto_limit_is_the_context_minus_the_longest_completion():
    config = SimpleNamespace(max_position_embeddings=512)
    auto = prompt_limit(0, "rollout.max_prompt_tokens", config, 16)
    assert (auto.tokens, auto.reason) == (496, "auto: the model's 512-token context minus 16 new tokens")
    assert prompt_limit(100, "rollout.max_prompt_tokens", config, 16).tokens == 100
    assert prompt_limit(0, "k", SimpleNamespace(n_positions=1024), 24).tokens == 1000  # GPT-2's name for it
    assert prompt_limit(0, "k", SimpleNamespace(), 16).tokens is None
    with pytest.raises(ValueError, match="sampling.max_prompt_tokens=0 .auto.: the model's 512-token context leaves "
                                         "no room"):
        prompt_limit(0, "sampling.max_prompt_tokens", config, 512)


def test_bytes_per_token_bound_by_tokenizer_kind():
    assert max_bytes_per_token(tiny_tokenizer()) == 12  # one character per token; "<|im_start|>" is the longest
    bpe = byte_level_bpe()
    assert max_bytes_per_token(bpe) == max(len(t.encode()) for t in bpe.get_vocab())
    assert max_bytes_per_token(word_piece()) is None


@pytest.mark.parametrize("make", [tiny_tokenizer, byte_level_bpe], ids=["char_level", "byte_level_bpe"])
def test_counts_agree_with_the_tokenizer(make):
    tok = make()
    limit = 300
    prompts = ["What is 2 + 2?", "x" * 299, "y" * 301, "word " * 100, TEN_MB[:40_000], "ok"]
    exact = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    found = over_limit(prompts, tok, limit)
    assert set(found) == {i for i, n in enumerate(exact) if n > limit}
    for i, (tokens, is_exact) in found.items():
        assert tokens == exact[i] if is_exact else limit < tokens <= exact[i]  # a bound never overstates


@pytest.mark.parametrize("make", [tiny_tokenizer, byte_level_bpe], ids=["char_level", "byte_level_bpe"])
def test_a_10mb_prompt_is_rejected_without_tokenizing_it(make):
    """Tokenizing it takes 20-50 s and 2-4 GB; the size alone proves it too long."""
    tok = make()
    started = time.perf_counter()
    found = over_limit(["short", TEN_MB], tok, 1920)
    elapsed = time.perf_counter() - started
    assert list(found) == [1] and found[1][1] is False  # a lower bound: never tokenized
    assert found[1][0] >= 10_000_000 // max_bytes_per_token(tok)
    assert elapsed < 2.0, elapsed


def examples_of(prompts: list[str]) -> list[Example]:
    return [Example(id=f"data.jsonl:{i + 1}", prompt=p, answer="1") for i, p in enumerate(prompts)]


def test_error_names_the_row_the_count_and_the_key():
    tok, limit = tiny_tokenizer(), PromptLimit(496, "rollout.max_prompt_tokens", "auto: ...")
    examples = examples_of(["fine", "z" * 600, TEN_MB, "fine too"])
    with pytest.raises(ValueError) as err:
        fit_examples(examples, [[e.prompt] for e in examples], tok, limit, "error", "training")
    assert str(err.value).startswith("data.jsonl:2: prompt is 600 tokens, rollout.max_prompt_tokens is 496 "
                                     "(auto: ...); 1 more training prompt is too long. ")
    assert "task.overlong_prompts=drop" in str(err.value)
    with pytest.raises(ValueError, match=r"data.jsonl:3: prompt is at least 833,334 tokens \(10,000,000 characters\), "
                                         r"rollout.max_prompt_tokens is 496"):
        fit_examples(examples[2:3], [[TEN_MB]], tok, limit, "error", "training")


def test_drop_keeps_the_rest_and_says_how_many(capsys):
    tok, limit = tiny_tokenizer(), PromptLimit(496, "sampling.max_prompt_tokens", "as set")
    examples = examples_of(["fine", TEN_MB, "fine too"])
    kept = fit_examples(examples, [[e.prompt] for e in examples], tok, limit, "drop", "held-out")
    assert [e.id for e in kept] == ["data.jsonl:1", "data.jsonl:3"]
    assert ("note: left out 1 of 3 held-out problems whose prompt is longer than sampling.max_prompt_tokens=496 "
            "(task.overlong_prompts=drop), e.g. data.jsonl:2: at least 833,334 tokens") in capsys.readouterr().err
    with pytest.raises(ValueError, match="every held-out prompt is longer than sampling.max_prompt_tokens=496"):
        fit_examples(examples[1:2], [[TEN_MB]], tok, limit, "drop", "held-out")


def test_an_example_is_as_long_as_its_longest_prompt_variant():
    tok, limit = tiny_tokenizer(), PromptLimit(100, "sampling.max_prompt_tokens", "as set")
    examples = examples_of(["a", "b"])
    variants = [["a", "few-shot " * 5 + "a"], ["b", "few-shot " * 20 + "b"]]  # 51 and 181 characters
    assert [e.id for e in fit_examples(examples, variants, tok, limit, "drop", "held-out")] == ["data.jsonl:1"]


def test_fit_task_checks_both_splits_or_only_the_held_out_one():
    tok, limit = tiny_tokenizer(), PromptLimit(50, "rollout.max_prompt_tokens", "as set")
    task = Task(name="t", train=examples_of(["short", "long " * 20, "tiny"]),
                eval=[Example(id="held:1", prompt="fine", answer="1")], scorer=lambda a, e: 1.0)
    dropped = fit_task(task, lambda e: [e.prompt], tok, limit, "drop")
    assert [e.id for e in dropped.train] == ["data.jsonl:1", "data.jsonl:3"] and dropped.eval == task.eval
    assert fit_task(task, lambda e: [e.prompt], tok, limit, "error", train=False) is task  # eval jobs: held-out only
