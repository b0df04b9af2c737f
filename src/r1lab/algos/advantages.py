"""Group-relative advantage estimators. Pure tensor math: rewards (N prompts, G samples) in, advantages out.

``valid`` marks samples whose reward was computed; invalid ones (a reward function raised) are left out of the
group statistics and get advantage 0, so they neither push nor pull the policy.
"""

from __future__ import annotations

import torch

from r1lab.registry import Registry

ADVANTAGES: Registry = Registry("advantage estimator")


def _masked_group_mean(rewards: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    weight = valid.to(rewards.dtype)  # (N, G)
    count = weight.sum(dim=1, keepdim=True)  # (N, 1)
    safe = torch.where(valid, rewards, torch.zeros_like(rewards))
    mean = safe.sum(dim=1, keepdim=True) / count.clamp(min=1)
    return mean, count


@ADVANTAGES.register("grpo")
def grpo_advantages(rewards: torch.Tensor, valid: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """DeepSeekMath eq. 3: A_i = (r_i - mean(r)) / (std(r) + eps), std with Bessel's correction (as TRL, verl)."""
    mean, count = _masked_group_mean(rewards, valid)
    centred = torch.where(valid, rewards - mean, torch.zeros_like(rewards))  # (N, G)
    var = centred.pow(2).sum(dim=1, keepdim=True) / (count - 1).clamp(min=1)
    adv = centred / (var.sqrt() + eps)
    return torch.where(valid & (count > 1), adv, torch.zeros_like(adv))


@ADVANTAGES.register("dr_grpo")
def dr_grpo_advantages(rewards: torch.Tensor, valid: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Dr. GRPO (Liu et al. 2025): A_i = r_i - mean(r); no std division, which over-weights easy/hard prompts."""
    mean, count = _masked_group_mean(rewards, valid)
    adv = rewards - mean
    return torch.where(valid & (count > 1), adv, torch.zeros_like(adv))


@ADVANTAGES.register("rloo")
def rloo_advantages(rewards: torch.Tensor, valid: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """REINFORCE leave-one-out (Ahmadian et al. 2024): A_i = r_i - mean_{j != i} r_j."""
    mean, count = _masked_group_mean(rewards, valid)
    total = mean * count  # (N, 1)
    loo_mean = (total - torch.where(valid, rewards, torch.zeros_like(rewards))) / (count - 1).clamp(min=1)
    adv = rewards - loo_mean
    return torch.where(valid & (count > 1), adv, torch.zeros_like(adv))
