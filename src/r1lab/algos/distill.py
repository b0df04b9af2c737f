"""The SFT token loss: cross-entropy on completion tokens, optionally mixed with logit distillation.

Logit distillation follows Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (arXiv
1503.02531): the student matches the teacher's distribution softened at temperature T, and the soft term is
scaled by T^2 so its gradient magnitude does not shrink as 1/T^2 when T changes (their section 2).
Pure functions: tensors and scalars in, tensors out.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

IGNORE = -100  # target value of positions that carry no loss (prompt, system, padding)


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    """Softmax precision: fp32, or fp64 for a fp64 model (exact comparisons in tests)."""
    return logits if logits.dtype == torch.float64 else logits.float()


def kl_teacher_student(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)) per position, in fp32. (N, V) x (N, V) -> (N,)."""
    log_s = torch.log_softmax(_upcast(student_logits) / temperature, dim=-1)
    log_t = torch.log_softmax(_upcast(teacher_logits) / temperature, dim=-1)
    return temperature**2 * (log_t.exp() * (log_t - log_s)).sum(dim=-1)


def sft_token_losses(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    teacher_logits: torch.Tensor | None = None,
    alpha: float = 0.0,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-token (loss, ce, kl) for (N, V) logits and (N,) targets, every position a trained one.

    loss = (1 - alpha) * CE(targets) + alpha * T^2 * KL(teacher_T || student_T); without a teacher, loss = CE.
    """
    ce = F.cross_entropy(_upcast(student_logits), targets, reduction="none")  # (N,)
    if teacher_logits is None:
        return ce, ce, None
    kl = kl_teacher_student(student_logits, teacher_logits, temperature)  # (N,)
    return (1.0 - alpha) * ce + alpha * kl, ce, kl


def chunked_sft_loss(
    hidden: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    teacher_hidden: torch.Tensor | None = None,
    teacher_head: Callable[[torch.Tensor], torch.Tensor] | None = None,
    alpha: float = 0.0,
    temperature: float = 1.0,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Summed (loss, ce, kl) over N trained positions, projecting ``chunk_size`` hidden states at a time.

    hidden: (N, H) student hidden states at the trained positions; targets: (N,); teacher_hidden: (N, Ht).
    Each chunk's logits (chunk, V) are recomputed in the backward pass (activation checkpointing), so full-vocab
    fp32 logits never exist for more than one chunk of tokens at a time.
    """
    N = hidden.shape[0]
    totals = [hidden.new_zeros((), dtype=torch.promote_types(hidden.dtype, torch.float32)) for _ in range(3)]
    with_teacher = teacher_hidden is not None and teacher_head is not None

    def chunk_sums(h: torch.Tensor, t: torch.Tensor, th: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        teacher_logits = None
        if th is not None:
            with torch.no_grad():
                teacher_logits = teacher_head(th)
        loss, ce, kl = sft_token_losses(head(h), t, teacher_logits, alpha, temperature)
        return loss.sum(), ce.sum().detach(), (kl.sum().detach() if kl is not None else ce.new_zeros(()))

    for start in range(0, N, chunk_size):
        part = slice(start, start + chunk_size)
        th = teacher_hidden[part] if with_teacher else None
        if hidden.requires_grad:
            sums = torch.utils.checkpoint.checkpoint(chunk_sums, hidden[part], targets[part], th, use_reentrant=False)
        else:
            sums = chunk_sums(hidden[part], targets[part], th)
        totals = [a + b for a, b in zip(totals, sums)]
    return totals[0], totals[1], (totals[2] if with_teacher else None)
