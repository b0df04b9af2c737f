"""The few records that cross module boundaries. Plain data: no behaviour beyond small helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Example:
    """One problem. ``prompt`` (plain text) or ``messages`` (chat turns) holds the question; ``answer`` the gold."""

    id: str
    answer: str
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def question(self) -> str:
        """The last user turn, or the plain prompt: what a template wraps."""
        if self.prompt is not None:
            return self.prompt
        user_turns = [m["content"] for m in (self.messages or []) if m.get("role") == "user"]
        return user_turns[-1] if user_turns else ""


@dataclass
class RewardResult:
    """Score of one completion: weighted ``total``, each function's raw score, and the error if one raised.

    A completion whose reward could not be computed has ``error`` set and ``total`` NaN; it gets no advantage.
    """

    total: float
    breakdown: dict[str, float]
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.error is None


@dataclass
class RolloutBatch:
    """B = prompts x group_size sequences, grouped contiguously (rows i*G .. i*G+G-1 share prompt i).

    Prompts are left-padded, completions right-padded. Masks come from lengths and EOS positions, never from the
    pad id (pad == eos in many tokenizers, which would drop the EOS token from the loss).
    """

    prompt_ids: torch.Tensor  # (B, P) long, left-padded
    prompt_mask: torch.Tensor  # (B, P) long, 1 on real prompt tokens
    completion_ids: torch.Tensor  # (B, C) long, right-padded
    completion_mask: torch.Tensor  # (B, C) float, 1 up to and including the first EOS
    truncated: torch.Tensor  # (B,) bool, True when no EOS was generated within max_new_tokens
    texts: list[str]  # (B,) decoded completions without special tokens
    group_size: int
    # (B, C) float32: the engine's own log-prob of each sampled token under the distribution it was drawn from
    # (after temperature, top-k, top-p; greedy: the model's), 0 past each EOS. The trainer's numerics differ from
    # the engine's, so this is what an off-policy correction (truncated importance sampling) divides by.
    rollout_logprobs: torch.Tensor | None = None
    # (B, C) float: 1 on the tokens the policy generated, 0 on those it did not (tool outputs in a multi-turn
    # rollout, r1lab.rollout.tools) and on padding: the loss and KL mask. completion_mask stays the attention mask
    # (tool outputs are context the model reads). None: every completion token was generated (= completion_mask).
    loss_mask: torch.Tensor | None = None
    # (B,) per row, the tool calls of a multi-turn rollout: dicts with code, status, output (rewards and metrics)
    tool_calls: list[list[dict]] | None = None

    @property
    def lengths(self) -> torch.Tensor:  # (B,)
        return self.completion_mask.sum(dim=1)
