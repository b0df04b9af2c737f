"""Atomic checkpoints with everything needed for an exact resume.

A checkpoint folder ``checkpoints/step_N`` holds the model weights (safetensors), optimizer and scheduler
state, every RNG state (python, numpy, torch), the data sampler position and the step. It is written under a
temporary name and renamed, so a kill mid-write leaves the previous checkpoint intact.
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
from r1lab.parallel.sharding import (full_optimizer_state, full_state_dict, is_sharded, load_full_optimizer_state,
                                     load_full_state_dict)

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
    for it, so no rank runs ahead of the last complete checkpoint."""
    dist = dist or DistContext()
    final = Path(root) / f"step_{step}"
    sharded = is_sharded(model)
    if sharded:  # FSDP: every rank takes part in gathering whole tensors (the same files as unsharded runs write)
        weights, optimizer_state = full_state_dict(model), full_optimizer_state(model, optimizer)
    if dist.is_main:
        if not sharded:  # LoRA: only the adapter (and modules_to_save); the frozen base is the model's source
            weights = trainable_state_dict(model) if is_lora(model) else model.state_dict()
            optimizer_state = optimizer.state_dict()
        _write_checkpoint(Path(root), step, weights, optimizer_state, scheduler,
                          {**extra, "world_size": dist.world_size, "sharded": sharded}, keep)
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
    tensors = load_file(path / "model.safetensors")
    state = torch.load(path / "state.pt", weights_only=False)
    sharded = is_sharded(model)
    if state.get("sharded", False) != sharded:  # the optimizer state is keyed by name (fsdp) or by position
        saved, now = ("fsdp" if state.get("sharded") else "ddp"), ("fsdp" if sharded else "ddp")
        raise ValueError(f"checkpoint {path} was written with train.parallel={saved}; resume it with "
                         f"train.parallel={saved} (this run has {now})")
    if sharded:
        load_full_state_dict(model, tensors)
        load_full_optimizer_state(model, optimizer, state["optimizer"])
    else:
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
