"""Multi-turn environments (r1lab.rollout.env): a page-long environment plays episodes; the environment's turns and
the template's glue are masked out of the loss, and the sampled tokens' log-probs equal one forward."""

from __future__ import annotations

import torch

from r1lab.algos.logprobs import completion_logprobs
from r1lab.models.loading import prepare_tokenizer
from r1lab.models.tiny import tiny_model, tiny_tokenizer
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.env import Environment, env_rollout
from r1lab.rollout.native_engine import NativeEngine
from r1lab.types import Example


class Echo(Environment):
    """Replies with the turn number; the episode ends after three model messages, rewarded by message length."""

    def reset(self, example):
        self.turns = 0
        return f"start {example.answer}"

    def step(self, message):
        self.turns += 1
        return f"turn {self.turns}", self.turns >= 3

    def reward(self):
        return float(sum(len(m["content"]) for m in self.messages if m["role"] == "assistant"))


def _engine():
    tok = tiny_tokenizer()
    prepare_tokenizer(tok)
    model = tiny_model(tok, seed=5).double()
    model.generation_config.eos_token_id = tok.eos_token_id
    return NativeEngine(model, tok, batch_size=4), tok, model


def test_episodes_alternate_turns_and_mask_the_environment():
    engine, tok, model = _engine()
    examples = [Example(id="a", answer="7", prompt=""), Example(id="b", answer="9", prompt="")]
    batch, envs = env_rollout(engine, tok, examples, 2, Echo, SamplingParams(temperature=1.0, max_new_tokens=1500),
                              max_turns=3, max_total_tokens=1500, seeds=[1, 2])
    assert len(envs) == 4
    for b, env in enumerate(envs):
        roles = [m["role"] for m in env.messages]
        assert roles[0] == "user" and roles[1::2] == ["assistant"] * len(roles[1::2])
        length = int(batch.completion_mask[b].sum())
        text = tok.decode(batch.completion_ids[b, :length].tolist())
        for m in env.messages[2::2]:  # the environment's replies are in the transcript, as user turns
            assert f"<|im_start|>user\n{m['content']}<|im_end|>\n<|im_start|>assistant\n" in text
        masked = tok.decode([t for t, keep in zip(batch.completion_ids[b, :length].tolist(),
                                                  batch.loss_mask[b, :length].tolist()) if not keep])
        assert masked == "".join(f"\n<|im_start|>user\n{m['content']}<|im_end|>\n<|im_start|>assistant\n"
                                 for m in env.messages[2::2])
        assert env.reward() >= 0
        if not batch.truncated[b]:  # a finished episode: three model messages, two replies
            assert roles == ["user", "assistant", "user", "assistant", "user", "assistant"]
    assert not batch.truncated.all()
    with torch.no_grad():
        one, _ = completion_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                     batch.completion_mask)
    sampled = batch.loss_mask.bool()
    assert torch.allclose(one[sampled].float(), batch.rollout_logprobs[sampled], atol=1e-5, rtol=0)
