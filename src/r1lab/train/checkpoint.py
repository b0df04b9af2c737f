"""Atomic checkpoints with everything needed for an exact resume.

A checkpoint folder ``checkpoints/step_N`` holds the model weights (safetensors), optimizer and scheduler
state, every RNG state (python, numpy, torch), the data sampler position and the step. It is written under a
temporary name and renamed, so a kill mid-write leaves the previous checkpoint intact.

Sharded runs (``train.parallel=fsdp``) write the weights and optimizer state with torch.distributed.checkpoint
(DCP) instead: every rank writes its own shards into ``step_N/dcp`` (the whole embeddings and head once), so no
rank ever gathers the whole model or optimizer, and rank 0 adds ``state.pt`` with the rest. Such a checkpoint
resumes at the world size that wrote it; another world size is refused with a message. DCP could reshard it, but
the optimizer's parameter groups differ between a sharded run and a single process (where nothing is sharded), so
only the same-size resume is supported and tested. Whole-tensor checkpoints (ddp, one process) resume at any size.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from r1lab.models.lora import is_lora, trainable_state_dict
from r1lab.parallel import DistContext, barrier
from r1lab.parallel.sharding import is_sharded

_STEP_DIR = re.compile(r"^step_(\d+)$")


class AlreadyFinished(RuntimeError):
    """--resume on a run that already wrote its final model."""


def open_run_dir(run_dir: str | Path, resume: bool) -> list[Path]:
    """Check that a training job may start in ``run_dir`` and return its complete checkpoints (oldest first).

    A resume of a finished run (``final/`` written) and a fresh start over an existing run are refused with the
    fix in the message; every trainer (GRPO, SFT, reward model) starts this way.
    """
    run_dir = Path(run_dir)
    final_dir = run_dir / "final"
    checkpoints = list_checkpoints(run_dir / "checkpoints")
    if resume and (final_dir / "config.json").is_file():
        raise AlreadyFinished(f"{run_dir} already finished (final model in {final_dir}); nothing to resume. "
                              f"Start a new run with a different log.output_dir.")
    if not resume and (checkpoints or (run_dir / "metrics.jsonl").exists()):
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another "
                              f"log.output_dir")
    return checkpoints


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    root: str | Path, step: int, model: torch.nn.Module, optimizer, scheduler, extra: dict[str, Any], keep: int = 2,
    dist: DistContext | None = None,
) -> Path:
    """Under data parallelism every rank holds the same model, optimizer and sampler state (gradients are summed
    before each identical step), so rank 0 writes the checkpoint and records the world size; the other ranks wait
    for it, so no rank runs ahead of the last complete checkpoint. A sharded model: every rank writes its shards."""
    dist = dist or DistContext()
    final = Path(root) / f"step_{step}"
    if is_sharded(model):
        return _write_sharded(Path(root), step, model, optimizer, scheduler, extra, keep, dist)
    if dist.is_main:  # LoRA: only the adapter (and modules_to_save); the frozen base is the model's source
        weights = trainable_state_dict(model) if is_lora(model) else model.state_dict()
        _write_checkpoint(Path(root), step, weights, optimizer.state_dict(), scheduler,
                          {**extra, "world_size": dist.world_size, "sharded": False}, keep)
    barrier(dist)
    return final


def _write_sharded(root: Path, step: int, model: torch.nn.Module, optimizer, scheduler, extra: dict[str, Any],
                   keep: int, dist: DistContext) -> Path:
    """DCP: each rank writes its shards into one staging folder (the same name on every rank), rank 0 adds
    state.pt and renames the folder once every rank has written."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    staging, final = root / f".step_{step}-sharded", root / f"step_{step}"
    if dist.is_main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)  # a kill mid-write left it half written
    barrier(dist)
    weights, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": weights, "optimizer": optimizer_state}, checkpoint_id=staging / "dcp")  # a collective
    if dist.is_main:
        torch.save({"step": step, "scheduler": scheduler.state_dict(), "rng": rng_state(), **extra,
                    "world_size": dist.world_size, "sharded": True}, staging / "state.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    barrier(dist)
    return final


def _write_checkpoint(root: Path, step: int, weights: dict[str, torch.Tensor], optimizer_state: dict, scheduler,
                      extra: dict[str, Any], keep: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".step_{step}-", dir=root))
    try:
        # Tied weights share storage; safetensors refuses duplicates, so save each tensor once.
        tensors, seen = {}, set()
        for name, tensor in weights.items():
            if tensor.data_ptr() in seen:
                continue
            seen.add(tensor.data_ptr())
            tensors[name] = tensor.detach().contiguous().clone()
        save_file(tensors, staging / "model.safetensors")
        torch.save(
            {"step": step, "optimizer": optimizer_state, "scheduler": scheduler.state_dict(),
             "rng": rng_state(), **extra},
            staging / "state.pt",
        )
        final = root / f"step_{step}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
        shutil.rmtree(staging, ignore_errors=True)
        previous = list_checkpoints(root)
        free_mb = shutil.disk_usage(root).free / 2**20
        raise OSError(f"could not write checkpoint step_{step} in {root} ({free_mb:,.0f} MB free on that disk): "
                      f"{err}. The last complete checkpoint "
                      f"({previous[-1].name if previous else 'none yet'}) is intact: free disk space, or point "
                      f"log.output_dir elsewhere, then rerun with --resume") from err
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (half-written staging folders start with '.' and are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and (p / "state.pt").is_file()]
    return [p for _, p in sorted(found)]


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer, scheduler) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG states in place; return the saved dict (step, extras)."""
    path = Path(path)
    state = torch.load(path / "state.pt", weights_only=False)
    sharded = is_sharded(model)
    if state.get("sharded", False) != sharded:  # DCP shards (fsdp) or whole tensors keyed by position (ddp)
        saved, now = ("fsdp" if state.get("sharded") else "ddp"), ("fsdp" if sharded else "ddp")
        raise ValueError(f"checkpoint {path} was written with train.parallel={saved} on {state.get('world_size', 1)} "
                         f"rank(s); resume it with train.parallel={saved} at that world size (this run has {now})")
    if sharded:
        _load_sharded(path, model, optimizer, state)
    else:
        tensors = load_file(path / "model.safetensors")
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
        if is_lora(model):  # a LoRA checkpoint holds exactly the trained tensors
            missing = set(trainable_state_dict(model)) - set(tensors)
        if set(missing) - tied or unexpected:
            raise RuntimeError(f"checkpoint {path} does not match the model: missing {missing}, "
                               f"unexpected {unexpected}")
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state


def _load_sharded(path: Path, model: torch.nn.Module, optimizer, state: dict[str, Any]) -> None:
    """Each rank reads its own shards of the weights and optimizer state (a collective)."""
    import torch.distributed as torch_dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    world = torch_dist.get_world_size() if torch_dist.is_initialized() else 1
    if state["world_size"] != world:
        raise ValueError(f"checkpoint {path} holds FSDP shards written by {state['world_size']} ranks; this run has "
                         f"{world}. Resume it with {state['world_size']} ranks (torchrun --nproc_per_node / --nnodes "
                         f"giving a world size of {state['world_size']}), or start a new run")
    weights, optimizer_state = get_state_dict(model, optimizer)
    loaded = {"model": weights, "optimizer": optimizer_state}
    dcp.load(loaded, checkpoint_id=path / "dcp")  # in place, into this rank's shards
    set_state_dict(model, optimizer, model_state_dict=loaded["model"], optim_state_dict=loaded["optimizer"])
