"""Policy losses, registered by name (``algo.loss``): the per-token (B, T) loss that ``aggregate`` reduces.

Every loss takes the same tensors and plain scalars and returns ``(loss, clipped)``: the (B, T) loss and a (B, T)
float mask of the tokens whose gradient the method cut or damped (the ``policy/clip_fraction`` metric).
``advantages`` is (B,) (one per sequence) or (B, T) (one per token: GAE, KL in the reward). At the first pass of a
step (``logp == old_logp``, ratio 1) ppo_clip, gspo, cispo and sapo all have the plain policy gradient
``-A * grad log pi`` per token (tests/algos/test_policy_losses.py checks it).
"""

from __future__ import annotations

import torch

from r1lab.algos.losses import clipped_policy_loss
from r1lab.registry import Registry

POLICY_LOSSES: Registry = Registry("policy loss")


def per_token(advantages: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) or (B, T) advantages as a (B, T) tensor broadcastable against ``like``."""
    return advantages.unsqueeze(1) if advantages.dim() == 1 else advantages


@POLICY_LOSSES.register("ppo_clip")
def ppo_clip_loss(logp, old_logp, advantages, mask, clip_low: float, clip_high: float, tau_pos: float = 1.0,
                  tau_neg: float = 1.05):
    """PPO/GRPO: -min(r A, clip(r, 1 - clip_low, 1 + clip_high) A) per token (DeepSeekMath eq. 3, DAPO clip-higher)."""
    return clipped_policy_loss(logp, old_logp, advantages, clip_low, clip_high)


@POLICY_LOSSES.register("gspo")
def gspo_loss(logp, old_logp, advantages, mask, clip_low: float, clip_high: float, tau_pos: float = 1.0,
              tau_neg: float = 1.05):
    """GSPO (Zheng et al. 2025, arXiv 2507.18071, eq. 5-7): one ratio per sequence,
    s_i = exp(mean_t log(pi / pi_old)) over its |y_i| tokens, clipped per sequence:
    -min(s_i A_i, clip(s_i, 1 - clip_low, 1 + clip_high) A_i), written on every token of the sequence.

    With ``seq_mean_token_mean`` aggregation that is the paper's objective (1/G sum_i); its gradient is
    -A_i s_i / |y_i| sum_t grad log pi_t, so at s_i = 1 each token gets the plain -A_i / |y_i| of GRPO.
    advantages: (B,) only (one per sequence)."""
    if advantages.dim() != 1:
        raise ValueError("gspo needs one advantage per sequence (B,), not per-token advantages")
    weight = mask.to(logp.dtype)  # (B, T)
    log_s = ((logp - old_logp) * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)  # (B,)
    s = torch.exp(log_s)
    unclipped = s * advantages
    clipped = torch.clamp(s, 1.0 - clip_low, 1.0 + clip_high) * advantages
    seq_loss = -torch.minimum(unclipped, clipped)  # (B,)
    was_clipped = (clipped < unclipped).to(logp.dtype)
    return seq_loss.unsqueeze(1).expand_as(logp), was_clipped.unsqueeze(1).expand_as(logp)


@POLICY_LOSSES.register("cispo")
def cispo_loss(logp, old_logp, advantages, mask, clip_low: float, clip_high: float, tau_pos: float = 1.0,
               tau_neg: float = 1.05):
    """CISPO (MiniMax-M1, arXiv 2506.13585, eq. 4-5): -sg(clip(r, 1 - clip_low, 1 + clip_high)) A log pi per token.

    The clipped ratio is only a stop-gradient weight, so no token loses its gradient (PPO's clip zeroes it).
    Written as -sg(w) A exp(log pi - sg(log pi)): the same gradient, -w A grad log pi, and a loss value (-w A)
    on the scale of the other losses rather than of log pi."""
    adv = per_token(advantages, logp)
    ratio = torch.exp(logp - old_logp)  # (B, T)
    weight = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high).detach()
    loss = -weight * adv * torch.exp(logp - logp.detach())
    was_clipped = (weight != ratio.detach()).to(logp.dtype)
    return loss, was_clipped


@POLICY_LOSSES.register("sapo")
def sapo_loss(logp, old_logp, advantages, mask, clip_low: float, clip_high: float, tau_pos: float = 1.0,
              tau_neg: float = 1.05):
    """SAPO (Gao et al. 2025, "Soft Adaptive Policy Optimization", arXiv 2511.20347): the hard clip becomes a smooth
    gate, -f(r) A with f(r) = 4 / tau * sigmoid(tau (r - 1)), tau = tau_pos where A > 0 and tau_neg otherwise
    (tau_neg > tau_pos: negative-advantage tokens, whose ratio can grow without bound, are damped faster).

    The gradient is -A r 4 sigmoid(x)(1 - sigmoid(x)) grad log pi with x = tau (r - 1): exactly -A grad log pi at
    r = 1, decaying smoothly away from it. ``clipped`` marks tokens whose gate weight 4 sigma (1 - sigma) is below
    one half (the gate has at least halved their gradient)."""
    adv = per_token(advantages, logp)
    ratio = torch.exp(logp - old_logp)  # (B, T)
    tau = torch.where(adv > 0, torch.full_like(adv, tau_pos), torch.full_like(adv, tau_neg))
    gate = torch.sigmoid(tau * (ratio - 1.0))
    loss = -(4.0 / tau) * gate * adv
    damped = (4.0 * gate * (1.0 - gate)).detach() < 0.5
    return loss, damped.to(logp.dtype)
