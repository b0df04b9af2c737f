"""Multi-turn environments: a task where the model and an environment take turns (a game, a dialogue, a tool the
environment runs itself), written as one small class.

    class Guess(Environment):                       # the whole environment
        def reset(self, example):                   # -> the first user message
            self.secret, self.tries = int(example.answer), 0
            return "Guess my number between 1 and 100."
        def step(self, message):                    # the model's message -> (reply, done)
            self.tries += 1
            guess = last_int(message)
            if guess == self.secret or self.tries == 5:
                return None, True
            return ("higher" if guess < self.secret else "lower"), False
        def reward(self):                           # at the end, with the whole transcript in self.messages
            return float(last_int(self.messages[-1]["content"]) == self.secret)

``env_rollout`` plays ``n`` episodes per example. Each model message ends at the chat template's end-of-turn token
(the tokenizer's EOS); the environment's reply is appended as a user turn in the template's own format, then the
assistant turn is opened again, and decoding continues, until ``step`` says done, ``max_turns`` model messages or
``max_total_tokens`` of transcript. As in tool rollouts (``r1lab.rollout.tools``), the transcript is kept as the
sampled tokens: ``loss_mask`` is 1 on the model's tokens only, so the environment's turns and the template's glue
are out of the loss and the KL, and ``rollout_logprobs`` are exact with the whole transcript in context.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from r1lab.rollout.base import SamplingParams
from r1lab.rollout.sampling import sample_seed
from r1lab.rollout.tools import _batch, _Row
from r1lab.types import Example, RolloutBatch


class Environment:
    """Subclass and define ``reset``, ``step`` and ``reward``; ``self.messages`` holds the conversation so far
    (user and assistant turns as chat dicts), kept by ``env_rollout``."""

    def reset(self, example: Example) -> str:
        """Start an episode on ``example``; return the first user message."""
        raise NotImplementedError

    def step(self, message: str) -> tuple[str | None, bool]:
        """The model's message -> (the environment's reply or None, whether the episode is over)."""
        raise NotImplementedError

    def reward(self) -> float:
        """The episode's reward, once it is over."""
        raise NotImplementedError


def _user_turn(tokenizer, reply: str) -> str:
    """The template's text between the end of an assistant turn and the start of the next: a user turn, then the
    opened assistant turn (the difference of two renderings, so any chat template works)."""
    base = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    before = tokenizer.apply_chat_template(base, tokenize=False)
    after = tokenizer.apply_chat_template(base + [{"role": "user", "content": reply}], tokenize=False,
                                          add_generation_prompt=True)
    if not after.startswith(before) or tokenizer.eos_token not in before:
        raise ValueError("the chat template renders an earlier conversation differently once it continues (or "
                         "ends turns without the EOS token); env_rollout needs a template that appends turns")
    end_of_turn = before.rindex(tokenizer.eos_token) + len(tokenizer.eos_token)  # what the model itself samples
    return after[end_of_turn:]


def env_rollout(engine, tokenizer, examples: list[Example], n: int, make_env: Callable[[], Environment],
                sampling: SamplingParams, max_turns: int, max_total_tokens: int, system: str | None = None,
                seeds: list[int] | None = None) -> tuple[RolloutBatch, list[Environment]]:
    """``n`` episodes per example (rows grouped by example); returns the batch and each row's environment (its
    ``reward()`` and ``messages``). The completion is everything after the first prompt."""
    eos_ids = set(engine.eos_ids)
    envs, rows = [], []
    for i, example in enumerate(examples):
        for j in range(n):
            env = make_env()
            first = env.reset(example)
            env.messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": first}]
            prompt = tokenizer.apply_chat_template(env.messages, tokenize=False, add_generation_prompt=True)
            envs.append(env)
            rows.append(_Row(tokenizer(prompt, add_special_tokens=False).input_ids,
                             None if seeds is None else sample_seed(seeds[i], j)))
    active = list(range(len(rows)))
    turn = 0
    while active:
        budgets = [max_total_tokens - rows[b].used for b in active]
        turn_seeds = None if seeds is None else [sample_seed(rows[b].seed, turn) for b in active]
        tokens, logps = engine.generate_ids([rows[b].prompt + rows[b].tokens() for b in active],
                                            dataclasses.replace(sampling, max_new_tokens=max(budgets)),
                                            seeds=turn_seeds)
        still = []
        for k, b in enumerate(active):
            row, env = rows[b], envs[b]
            sampled = tokens[k][: budgets[k]]
            row.pieces.append((sampled, logps[k][: budgets[k]], True))
            row.used += len(sampled)
            ended = bool(sampled) and sampled[-1] in eos_ids
            message = tokenizer.decode(sampled, skip_special_tokens=True)
            env.messages.append({"role": "assistant", "content": message})
            if not ended:
                continue  # out of tokens mid-message: truncated
            reply, done = env.step(message)
            if done or reply is None or turn + 1 >= max_turns:
                row.eos = True
                continue
            env.messages.append({"role": "user", "content": reply})
            glue = tokenizer(_user_turn(tokenizer, reply), add_special_tokens=False).input_ids
            glue = glue[: max_total_tokens - row.used]  # the template's text after the sampled EOS, then the reply
            row.pieces.append((glue, [0.0] * len(glue), False))
            row.used += len(glue)
            if row.used < max_total_tokens:
                still.append(b)
        active, turn = still, turn + 1
    return _batch(rows, tokenizer, n), envs
