"""Which process this is (rank, world size) and the few collectives the loops use.

torchrun and srun set RANK / WORLD_SIZE / LOCAL_RANK (srun: SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID, with
MASTER_ADDR / MASTER_PORT set by the job script); a plain ``r1lab grpo`` sets none and is one process. Backend: nccl
on CUDA, gloo on CPU. Every collective runs under the process group's timeout, so a dead rank ends the job with an
error instead of leaving the others waiting forever.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:  # rank 0 writes metrics, samples, plots, progress and final/
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _launcher_env() -> tuple[int, int, int]:
    env = os.environ
    if "WORLD_SIZE" in env:
        return int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if "SLURM_NTASKS" in env and "MASTER_ADDR" in env:  # srun without torchrun: Slurm's own variables
        os.environ.update(RANK=env["SLURM_PROCID"], WORLD_SIZE=env["SLURM_NTASKS"])
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0


def init_distributed(device: torch.device, timeout_minutes: float) -> tuple[DistContext, torch.device]:
    """Join the launcher's process group (once per process) and return this rank's context and device: with
    CUDA, rank r of a node uses GPU LOCAL_RANK."""
    rank, world, local = _launcher_env()
    if world == 1:
        return DistContext(), device
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    return DistContext(rank, world, local), device


def is_main_process() -> bool:
    """Rank 0, or a single process: the one that prints a job's summary lines."""
    return _launcher_env()[0] == 0


def close_distributed() -> None:
    """Leave the process group at the end of a job (after a last barrier, so no rank exits while others still
    talk to it)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard_bounds(count: int, ctx: DistContext) -> tuple[int, int]:
    """This rank's contiguous part [start, end) of ``count`` items (the first ranks take one more when uneven)."""
    base, extra = divmod(count, ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    return start, start + base + (ctx.rank < extra)


def _tensor_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(ctx: DistContext, values: list[float]) -> list[float]:
    """Element-wise sum over ranks, in float64 (token counts and loss sums stay exact)."""
    if not ctx.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_tensor_device())
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_max(ctx: DistContext, value: int) -> int:
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=_tensor_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t)


def all_gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def gather_lists(ctx: DistContext, items: list[Any]) -> list[Any]:
    """Every rank's ``items`` concatenated in rank order (rank r's contiguous share of a global batch back in its
    place)."""
    return [item for part in all_gather_objects(ctx, items) for item in part]


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()
