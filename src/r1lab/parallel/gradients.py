"""Data-parallel gradient reduction: after a step's micro-batches, every rank holds the sum of all ranks' gradients.

Why not torch's DistributedDataParallel wrapper: its reducer is armed by the wrapper's own forward, and r1lab's
losses do not go through ``model(...)``: GRPO runs each distinct prompt once and shares its keys and values with the
group, then projects only completion tokens through the LM head weight in tiles (``r1lab.algos.logprobs``). So the
gradients are reduced here, once per optimizer step, after accumulation (what DDP's ``no_sync`` on all but the last
micro-batch amounts to), in flat buckets of one dtype: one collective per bucket rather than one per tensor.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from r1lab.parallel.context import DistContext

BUCKET_BYTES = 64 * 2**20


def all_reduce_gradients(model: torch.nn.Module, ctx: DistContext) -> None:
    """Sum each trainable parameter's gradient over ranks, in place. A parameter without a gradient on this rank
    (its rows were all skipped) takes part with zeros, so every rank reduces the same tensors in the same order.
    Parameters sharded by FSDP (DTensors) are left alone: their backward already reduce-scattered them."""
    if not ctx.distributed:
        return
    params = [p for p in model.parameters() if p.requires_grad and not isinstance(p, DTensor)]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    bucket, size = [], 0
    for p in params:
        bucket.append(p.grad)
        size += p.grad.numel() * p.grad.element_size()
        if size >= BUCKET_BYTES:
            _reduce_bucket(bucket)
            bucket, size = [], 0
    if bucket:
        _reduce_bucket(bucket)


def _reduce_bucket(grads: list[torch.Tensor]) -> None:
    for dtype in dict.fromkeys(g.dtype for g in grads):
        same = [g for g in grads if g.dtype == dtype]
        flat = torch.cat([g.reshape(-1) for g in same])
        dist.all_reduce(flat)
        offset = 0
        for g in same:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
