"""Scripted generation for inference-method tests: a RolloutEngine whose replies the test chooses, behind the real
EngineGenerator (so stop strings and token caps are those of production), and a stub PRM with known scores."""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from r1lab.infer.base import InferContext
from r1lab.infer.generation import EngineGenerator
from r1lab.models.loading import prepare_tokenizer
from r1lab.models.tiny import tiny_tokenizer
from r1lab.rollout.base import SamplingParams
from r1lab.tasks.base import Task, normalised_match
from r1lab.types import Example, RolloutBatch


class ScriptedEngine:
    """``reply(prompt, i)`` is the text of sample i of a prompt; it is tokenised (one token per character with the
    tiny tokenizer), cut at max_new_tokens, and ends with EOS when it fits. Records every prompt."""

    def __init__(self, reply: Callable[[str, int], str]):
        self.reply = reply
        self.tokenizer = tiny_tokenizer()
        prepare_tokenizer(self.tokenizer)
        self.prompts: list[str] = []

    def generate(self, prompts, n, sampling, seeds=None) -> RolloutBatch:
        self.prompts += list(prompts)
        tok, eos, cap = self.tokenizer, self.tokenizer.eos_token_id, sampling.max_new_tokens
        rows = [tok(self.reply(p, i), add_special_tokens=False)["input_ids"] for p in prompts for i in range(n)]
        rows = [r[:cap] if len(r) >= cap else r + [eos] for r in rows]
        width = max(len(r) for r in rows)
        enc = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        return RolloutBatch(
            prompt_ids=enc.input_ids.repeat_interleave(n, 0), prompt_mask=enc.attention_mask.repeat_interleave(n, 0),
            completion_ids=torch.tensor([r + [eos] * (width - len(r)) for r in rows]),
            completion_mask=torch.tensor([[1.0] * len(r) + [0.0] * (width - len(r)) for r in rows]),
            truncated=torch.tensor([eos not in r for r in rows]),
            texts=[tok.decode(r, skip_special_tokens=True) for r in rows], group_size=n)


class StubPRM:
    """Scores a step by a table lookup (unknown steps 0.5); records what it was asked."""

    def __init__(self, table: dict[str, float]):
        self.table, self.asked = table, []

    def score_steps(self, questions, steps):
        self.asked += [list(s) for s in steps]
        return [[self.table.get(step, 0.5) for step in s] for s in steps]


NUMERIC = Task("toy", train=[Example("t0", "0", prompt="train question")], eval=[],
               scorer=lambda a, e: normalised_match(a, e.answer))


def make_ctx(reply: Callable[[str, int], str], prm=None, max_new_tokens: int = 64, task: Task = NUMERIC):
    engine = ScriptedEngine(reply)
    ctx = InferContext(generator=EngineGenerator(engine, engine.tokenizer),
                       render=lambda e, instruction: f"Q: {e.question} [{instruction or 'default'}]\nA:",
                       task=task, sampling=SamplingParams(0.6, 0.95, 0, max_new_tokens),
                       tokenizer=engine.tokenizer, prm=prm)
    return ctx, engine


@pytest.fixture
def scripted_ctx():
    return make_ctx


@pytest.fixture
def scripted_engine():
    return ScriptedEngine


@pytest.fixture
def stub_prm():
    return StubPRM
