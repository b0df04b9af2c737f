"""Per-token policy-gradient loss (PPO clip with separate low/high bounds), KL estimators, and the ways of
reducing a (B, T) loss matrix to a scalar. Pure functions on tensors and scalars."""

from __future__ import annotations

import torch

from r1lab.registry import Registry

KL_ESTIMATORS: Registry = Registry("KL estimator")
LOSS_AGGREGATIONS: Registry = Registry("loss aggregation")


def clipped_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float,
    clip_high: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO/GRPO surrogate per token: -min(r A, clip(r, 1 - clip_low, 1 + clip_high) A).

    logp, old_logp: (B, T); advantages: (B,) or (B, T) (per token: GAE, KL in the reward). ``clip_high >
    clip_low`` is DAPO's clip-higher. Returns the (B, T) loss and a (B, T) float mask of tokens where the clipped
    branch was taken.
    """
    ratio = torch.exp(logp - old_logp)  # (B, T)
    adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages  # (B, 1) or (B, T)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    was_clipped = (clipped < unclipped).to(logp.dtype)
    return loss, was_clipped


@KL_ESTIMATORS.register("k1")
def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k1 = log(pi / pi_ref): unbiased, high variance, can be negative."""
    return logp - ref_logp


@KL_ESTIMATORS.register("k2")
def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k2 = 0.5 * (log(pi / pi_ref))^2: biased, low variance, gradient matches KL's to second order."""
    return 0.5 * (logp - ref_logp).pow(2)


@KL_ESTIMATORS.register("k3")
def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 = pi_ref/pi - log(pi_ref/pi) - 1 (DeepSeekMath eq. 4): unbiased and always >= 0."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1.0


@LOSS_AGGREGATIONS.register("token_mean")
def token_mean(loss: torch.Tensor, mask: torch.Tensor, num_tokens: float, num_seqs: float, norm_constant: float):
    """DAPO token-level loss: sum over all tokens in the batch / number of tokens (long answers weigh more)."""
    return (loss * mask).sum() / max(num_tokens, 1.0)


@LOSS_AGGREGATIONS.register("seq_mean_token_mean")
def seq_mean_token_mean(loss, mask, num_tokens: float, num_seqs: float, norm_constant: float):
    """Original GRPO: mean over each sequence's tokens, then mean over sequences (biases toward short answers)."""
    per_seq = (loss * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    return per_seq.sum() / max(num_seqs, 1.0)


@LOSS_AGGREGATIONS.register("seq_mean_token_sum_norm")
def seq_mean_token_sum_norm(loss, mask, num_tokens: float, num_seqs: float, norm_constant: float):
    """Dr. GRPO: sum over each sequence's tokens / a constant (max completion length), mean over sequences."""
    per_seq = (loss * mask).sum(dim=1) / norm_constant
    return per_seq.sum() / max(num_seqs, 1.0)


def aggregate(
    name: str,
    loss: torch.Tensor,
    mask: torch.Tensor,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
    norm_constant: float | None = None,
) -> torch.Tensor:
    """Reduce a (B, T) loss. ``num_tokens``/``num_seqs`` default to this batch's; pass the whole step's counts
    when ``loss`` is one micro-batch, so that accumulated gradients equal the full-batch gradient."""
    num_tokens = float(mask.sum()) if num_tokens is None else num_tokens
    num_seqs = float(mask.shape[0]) if num_seqs is None else num_seqs
    norm_constant = float(mask.shape[1]) if norm_constant is None else norm_constant
    return LOSS_AGGREGATIONS.get(name)(loss, mask, num_tokens, num_seqs, norm_constant)
