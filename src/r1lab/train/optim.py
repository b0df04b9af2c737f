"""Optimizer and learning-rate schedule shared by the trainers."""

from __future__ import annotations

import math

import torch
from torch.distributed.tensor import DTensor

from r1lab.train.low_precision_adamw import LOW_PRECISION, UPDATES, LowPrecisionAdamW

SCHEDULES = ("constant", "linear", "cosine")


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, schedule: str, min_ratio: float) -> float:
    """Linear warm-up over ``warmup_steps``, then constant / linear / cosine decay to ``min_ratio`` x peak."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "linear":
        return min_ratio + (1 - min_ratio) * (1 - progress)
    if schedule == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")


def adamw(groups: list[dict], lr: float, betas: tuple[float, float], low_precision_update: str = "stochastic_rounding",
          seed: int = 0, **plain) -> torch.optim.Optimizer:
    """AdamW over parameter ``groups``: torch's (with ``plain`` keyword arguments) when every parameter is float32 /
    float64; else r1lab's LowPrecisionAdamW, whose moments are float32 and whose bf16 / fp16 weights take each step
    by ``low_precision_update`` (stochastic_rounding | kahan; ``seed``: of the rounding's random bits). torch's
    AdamW would keep bf16 moments and round every update to the nearest bf16, losing those under half an ulp."""
    params = [p for g in groups for p in g["params"]]
    low = sorted({str(p.dtype) for p in params if p.dtype in LOW_PRECISION})
    if not low:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, **plain)
    if low_precision_update not in UPDATES:
        raise ValueError(f"trained weights in {', '.join(low)} need a remedy for updates under half an ulp: "
                         f"low_precision_update={low_precision_update!r}; allowed: {', '.join(UPDATES)}")
    return LowPrecisionAdamW(groups, lr=lr, betas=betas, update=low_precision_update, seed=seed)


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], total_steps: int,
                    warmup_steps: int, schedule: str, min_lr_ratio: float,
                    low_precision_update: str = "stochastic_rounding", seed: int = 0):
    """AdamW with no weight decay on biases and norms; a LambdaLR scheduler stepped once per optimizer step.
    bf16 / fp16 trained weights: ``adamw``'s LowPrecisionAdamW with ``low_precision_update`` (the run's resolved
    ``model.low_precision_update``) and ``seed``."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    # The fused kernel updates each parameter in one pass with no temporaries: on the reference 2-core Xeon an AdamW
    # step over SmolLM2-135M took 0.079 s fused against 0.404 s with foreach, whose per-op temporaries are fresh
    # multi-hundred-MB tensors (benchmarks/train_kernels.py). Fused AdamW exists for CPU and CUDA; other devices
    # keep foreach.
    device = (decay + no_decay)[0].device.type if decay or no_decay else "cpu"
    kernel = {"fused": True} if device in ("cpu", "cuda") else {"foreach": True}
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if any(isinstance(p, DTensor) for p in decay + no_decay):
        # FSDP-sharded layers beside whole embeddings: one fused call takes either DTensors or plain tensors
        groups = [{**g, "params": [p for p in g["params"] if isinstance(p, DTensor) == sharded]}
                  for g in groups for sharded in (True, False)]
        groups = [g for g in groups if g["params"]]
    optimizer = adamw(groups, lr, betas, low_precision_update, seed, **kernel)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, total_steps, warmup_steps, schedule, min_lr_ratio)
    )
    return optimizer, scheduler
