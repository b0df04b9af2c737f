"""The rollout interface: prompts in, a RolloutBatch of ``n`` completions per prompt out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from r1lab.types import RolloutBatch


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 disables top-k
    max_new_tokens: int = 256


class RolloutEngine(Protocol):
    # seeds: one per prompt; sample j of prompt i is then a function of (seeds[i], j) alone, whatever else is in
    # the batch (data-parallel ranks sample what one process would). None: the engine's own RNG.
    def generate(self, prompts: list[str], n: int, sampling: SamplingParams,
                 seeds: list[int] | None = None) -> RolloutBatch: ...

    # after each change to the policy's weights (optimizer step, checkpoint load); returns the seconds it took
    def sync_weights(self, policy: torch.nn.Module) -> float: ...


def completion_mask_from_eos(completion_ids: torch.Tensor, eos_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask (B, C) that is 1 up to and including the first EOS token, and (B,) truncated = no EOS at all.

    Built from EOS positions, never from the pad id: with pad == eos a pad-based mask would drop the EOS
    token itself, and the model would never be trained to stop.
    """
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device))  # (B, C)
    has_eos = is_eos.any(dim=1)  # (B,)
    C = completion_ids.shape[1]
    first_eos = torch.where(has_eos, is_eos.int().argmax(dim=1), torch.full_like(has_eos, C - 1, dtype=torch.long))
    positions = torch.arange(C, device=completion_ids.device).unsqueeze(0)  # (1, C)
    mask = (positions <= first_eos.unsqueeze(1)).float()
    return mask, ~has_eos


@torch.no_grad()
def copy_weights(replica: torch.nn.Module, policy: torch.nn.Module) -> None:
    """An engine's own copy of the policy (another dtype) takes the policy's current weights, in place; on CUDA it
    waits for the copies, so the time measured around it is the sync's."""
    for dst, src in zip(replica.parameters(), policy.parameters()):
        dst.copy_(src)
    if next(replica.parameters()).is_cuda:
        torch.cuda.synchronize()  # the copies are queued, not done, when the loop returns
