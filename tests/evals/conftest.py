"""A scripted rollout engine: replies chosen by the test, returned as a real RolloutBatch (token ids included)."""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from r1lab.models.loading import prepare_tokenizer
from r1lab.models.tiny import tiny_tokenizer
from r1lab.types import RolloutBatch


class ScriptedEngine:
    """``reply(prompt, i)`` gives the i-th sample's text for a prompt; counts generate calls and prompts."""

    def __init__(self, reply: Callable[[str, int], str], tokenizer=None):
        self.reply = reply
        self.tokenizer = tokenizer or tiny_tokenizer()
        prepare_tokenizer(self.tokenizer)
        self.calls, self.prompts = 0, []

    def generate(self, prompts, n, sampling, seeds=None) -> RolloutBatch:
        self.calls += 1
        self.prompts += list(prompts)
        tok, eos = self.tokenizer, self.tokenizer.eos_token_id
        texts = [self.reply(p, i) for p in prompts for i in range(n)]
        rows = [tok(t, add_special_tokens=False)["input_ids"][: sampling.max_new_tokens] for t in texts]
        rows = [r + [eos] if len(r) < sampling.max_new_tokens else r for r in rows]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [eos] * (width - len(r)) for r in rows])  # (B, C)
        mask = torch.tensor([[1.0] * len(r) + [0.0] * (width - len(r)) for r in rows])
        enc = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        return RolloutBatch(
            prompt_ids=enc.input_ids.repeat_interleave(n, 0), prompt_mask=enc.attention_mask.repeat_interleave(n, 0),
            completion_ids=ids, completion_mask=mask,
            truncated=torch.tensor([eos not in r for r in rows]),
            texts=[tok.decode(r, skip_special_tokens=True) for r in rows], group_size=n,
        )

    def sync_weights(self, policy) -> None:
        pass


@pytest.fixture
def scripted():
    return ScriptedEngine
