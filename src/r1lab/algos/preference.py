"""Pairwise preference loss for reward models (Bradley-Terry). Pure function on tensors and scalars.

Bradley & Terry (1952): P(chosen beats rejected) = sigmoid(r_chosen - r_rejected); the reward model maximises its
log-likelihood over human (or written) preference pairs, as in InstructGPT (arXiv 2203.02155, eq. 1). Llama 2
(arXiv 2307.09288, eq. 2) subtracts a margin so clearly better answers must win by more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: float | torch.Tensor = 0.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean over pairs of -log sigmoid(r_chosen - r_rejected - margin).

    chosen, rejected: (N,) scalar rewards of the two responses of each pair; margin: a float or (N,) tensor.
    Metrics (floats, detached): ``loss``; ``accuracy``, the fraction of pairs ranked right, a tie counting 1/2
    (a model that scores everything equally sits at chance, 0.5, not 0); ``margin`` (mean r_c - r_r);
    ``chosen`` and ``rejected`` (mean rewards).
    """
    if chosen.shape != rejected.shape or chosen.ndim != 1:
        raise ValueError(f"chosen and rejected must be (N,) tensors of one shape, got {tuple(chosen.shape)} "
                         f"and {tuple(rejected.shape)}")
    if chosen.numel() == 0:
        raise ValueError("bradley_terry_loss needs at least one pair")
    diff = chosen - rejected  # (N,)
    # logsigmoid is computed stably for large |x| (no log(0) when the model is very sure).
    loss = -F.logsigmoid(diff - margin).mean()
    with torch.no_grad():
        wins = (diff > 0).float() + 0.5 * (diff == 0).float()  # (N,)
        metrics = {"loss": float(loss), "accuracy": float(wins.mean()), "margin": float(diff.mean()),
                   "chosen": float(chosen.mean()), "rejected": float(rejected.mean())}
    return loss, metrics
