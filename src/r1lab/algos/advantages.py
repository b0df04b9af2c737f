"""Advantage estimators. Pure tensor math: rewards (N prompts, G samples) in, advantages out; and the per-token
pieces (KL as a reward, GAE) of the token-level estimators.

``sum_all`` (a function summing a list of floats over every rank; None = one process) lets a estimator that
normalises over the whole batch (REINFORCE++) use the global batch's statistics, so W ranks give what one
process gives; the group-relative ones ignore it (each rank owns whole groups).

``valid`` marks samples whose reward was computed; invalid ones (a reward function raised) are left out of the
group statistics and get advantage 0, so they neither push nor pull the policy.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from r1lab.registry import Registry

SumAll = Optional[Callable[[list], list]]

ADVANTAGES: Registry = Registry("advantage estimator")


def _masked_group_mean(rewards: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    weight = valid.to(rewards.dtype)  # (N, G)
    count = weight.sum(dim=1, keepdim=True)  # (N, 1)
    safe = torch.where(valid, rewards, torch.zeros_like(rewards))
    mean = safe.sum(dim=1, keepdim=True) / count.clamp(min=1)
    return mean, count


@ADVANTAGES.register("grpo")
def grpo_advantages(rewards: torch.Tensor, valid: torch.Tensor, eps: float = 1e-4,
                    sum_all: SumAll = None) -> torch.Tensor:
    """DeepSeekMath eq. 3: A_i = (r_i - mean(r)) / (std(r) + eps), std with Bessel's correction (as TRL, verl)."""
    mean, count = _masked_group_mean(rewards, valid)
    centred = torch.where(valid, rewards - mean, torch.zeros_like(rewards))  # (N, G)
    var = centred.pow(2).sum(dim=1, keepdim=True) / (count - 1).clamp(min=1)
    adv = centred / (var.sqrt() + eps)
    return torch.where(valid & (count > 1), adv, torch.zeros_like(adv))


@ADVANTAGES.register("dr_grpo")
def dr_grpo_advantages(rewards: torch.Tensor, valid: torch.Tensor, eps: float = 1e-4,
                       sum_all: SumAll = None) -> torch.Tensor:
    """Dr. GRPO (Liu et al. 2025): A_i = r_i - mean(r); no std division, which over-weights easy/hard prompts."""
    mean, count = _masked_group_mean(rewards, valid)
    adv = rewards - mean
    return torch.where(valid & (count > 1), adv, torch.zeros_like(adv))


@ADVANTAGES.register("rloo")
def rloo_advantages(rewards: torch.Tensor, valid: torch.Tensor, eps: float = 1e-4,
                    sum_all: SumAll = None) -> torch.Tensor:
    """REINFORCE leave-one-out (Ahmadian et al. 2024): A_i = r_i - mean_{j != i} r_j."""
    mean, count = _masked_group_mean(rewards, valid)
    total = mean * count  # (N, 1)
    loo_mean = (total - torch.where(valid, rewards, torch.zeros_like(rewards))) / (count - 1).clamp(min=1)
    adv = rewards - loo_mean
    return torch.where(valid & (count > 1), adv, torch.zeros_like(adv))


def global_normalize(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-4, sum_all: SumAll = None) -> torch.Tensor:
    """(values - mean) / (std + eps) over the entries where ``mask`` holds, across all ranks (two all-reduced
    passes: the mean, then the centred squares, Bessel-corrected as the group estimators); 0 elsewhere."""
    sum_all = sum_all or (lambda xs: xs)
    w = mask.to(values.dtype)
    count, total = sum_all([float(w.sum()), float((values * w).sum())])
    mean = total / max(count, 1.0)
    centred = (values - mean) * w
    (squares,) = sum_all([float(centred.pow(2).sum())])
    std = (squares / max(count - 1.0, 1.0)) ** 0.5
    return centred / (std + eps)


@ADVANTAGES.register("reinforce_pp")
def reinforce_pp_advantages(rewards: torch.Tensor, valid: torch.Tensor, eps: float = 1e-4,
                            sum_all: SumAll = None) -> torch.Tensor:
    """REINFORCE++ (Hu et al. 2025, arXiv 2501.03262, eq. 9-10): no per-prompt baseline; the return is normalised
    over the whole global batch, A = (R - mean_batch R) / (std_batch R + eps), so one prompt's group need not hold
    different rewards. With algo.kl_in=reward the return is per token (``kl_returns``) and normalised over the
    batch's tokens by the loop with ``global_normalize``."""
    return global_normalize(rewards, valid, eps, sum_all)


def kl_to_go(kl: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum_{s >= t} kl_s over each row's real tokens: (B, T) -> (B, T) (gamma = 1, as REINFORCE++)."""
    masked = kl * mask.to(kl.dtype)
    return masked.flip(1).cumsum(1).flip(1) * mask.to(kl.dtype)


def token_rewards(rewards: torch.Tensor, kl: torch.Tensor | None, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token reward (B, T): the sequence reward on its last real token, minus beta * k1 on every real token
    (InstructGPT eq. 2, REINFORCE++ eq. 7). ``mask`` (B, T) marks real completion tokens, contiguous from 0."""
    weight = mask.to(rewards.dtype)
    last = (weight.sum(dim=1).long() - 1).clamp(min=0)  # (B,)
    out = torch.zeros_like(weight)
    out[torch.arange(weight.shape[0]), last] = rewards * (weight.sum(dim=1) > 0).to(rewards.dtype)
    if kl is not None:
        out = out - beta * kl * weight
    return out


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16) over completion tokens.

    rewards, values: (B, T) per token (``token_rewards``; the value of the state before token t); mask (B, T)
    real tokens, contiguous from 0. delta_t = r_t + gamma V_{t+1} - V_t with V = 0 after the last real token
    (the episode ends there); A_t = delta_t + gamma lam A_{t+1}. Returns (advantages, returns = A + V), 0 on
    padding."""
    weight = mask.to(values.dtype)
    v = values * weight
    adv = torch.zeros_like(v)
    running = torch.zeros_like(v[:, 0])  # (B,)
    for t in reversed(range(v.shape[1])):
        next_v = v[:, t + 1] if t + 1 < v.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_v - v[:, t]
        running = (delta + gamma * lam * running) * weight[:, t]
        adv[:, t] = running
    return adv, (adv + v) * weight
