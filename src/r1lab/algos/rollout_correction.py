"""Correcting the rollout engine / trainer mismatch: per-token importance weights pi_train / pi_rollout.

The completions are sampled by the rollout engine (a bf16 copy, r1lab's decode kernels, vLLM), whose numerics are
not the trainer's, so "on-policy" samples are slightly off-policy and the plain policy gradient is biased.
Truncated importance sampling (TIS; Yao et al., "Your Efficient RL Framework Secretly Brings You Off-Policy RL
Training", 2025, as verl and TRL implement it) multiplies each token's policy-gradient loss by
min(pi_train / pi_rollout, C), a stop-gradient weight; IcePop (the Ring/Ling team's MoE RL report) instead drops
tokens whose ratio leaves [1/C, C]. ``none`` trusts the engine. Pure functions: (B, T) log-probs in, (B, T) weights
and a metrics dict out.
"""

from __future__ import annotations

import torch

from r1lab.registry import Registry

ROLLOUT_CORRECTIONS: Registry = Registry("rollout correction")


def _log_ratio(train_logp: torch.Tensor, rollout_logp: torch.Tensor) -> torch.Tensor:
    return (train_logp - rollout_logp).detach()  # (B, T): log pi_train - log pi_rollout, no gradient


@ROLLOUT_CORRECTIONS.register("none")
def no_correction(train_logp: torch.Tensor, rollout_logp: torch.Tensor, cap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights 1 everywhere; nothing is capped."""
    return torch.ones_like(train_logp), torch.zeros_like(train_logp, dtype=torch.bool)


@ROLLOUT_CORRECTIONS.register("tis")
def truncated_importance_sampling(train_logp: torch.Tensor, rollout_logp: torch.Tensor,
                                  cap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """w = min(pi_train / pi_rollout, cap) per token; also the (B, T) mask of tokens whose ratio was capped."""
    ratio = torch.exp(_log_ratio(train_logp, rollout_logp))
    return torch.clamp(ratio, max=cap), ratio > cap


@ROLLOUT_CORRECTIONS.register("icepop")
def icepop(train_logp: torch.Tensor, rollout_logp: torch.Tensor, cap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """w = 1 where 1/cap <= pi_train / pi_rollout <= cap, else 0 (the token leaves the gradient)."""
    ratio = torch.exp(_log_ratio(train_logp, rollout_logp))
    outside = (ratio > cap) | (ratio < 1.0 / cap)
    return (~outside).to(train_logp.dtype), outside


def mismatch_sums(train_logp: torch.Tensor, rollout_logp: torch.Tensor, capped: torch.Tensor,
                  mask: torch.Tensor) -> dict[str, float]:
    """Sums over the masked tokens (divide by the token count, after reducing over ranks): |log ratio|, the
    capped tokens, and the k3 estimate of KL(rollout || train) = E_rollout[r - 1 - log r], r = pi_train / pi_rollout
    (Schulman's estimator; >= 0 per token)."""
    d = _log_ratio(train_logp, rollout_logp) * mask
    return {"abs_log_ratio": float(d.abs().sum()), "capped": float((capped & mask.bool()).sum()),
            "kl": float(((torch.exp(d) - 1 - d) * mask).sum())}
