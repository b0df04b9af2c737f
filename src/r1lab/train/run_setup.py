"""What every trainer (GRPO, SFT, reward model) does before it loads anything: check the run folder (a finished or
foreign folder is refused, a resumable one lists its checkpoints), set the thread count, seed every generator
and pick the device."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from r1lab.config import resolve_low_precision_update, to_dict
from r1lab.models.loading import locate_model
from r1lab.parallel import DistContext, init_distributed
from r1lab.models.precision import choose_precision
from r1lab.train import checkpoint as ckpt

DTYPE = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class RunStart(NamedTuple):
    run_dir: Path
    final_dir: Path  # the HF folder the job writes last
    ckpt_dir: Path
    checkpoints: list[Path]  # existing checkpoints, oldest first (resume reads the last)
    device: torch.device  # this rank's
    dist: DistContext  # rank and world size (1 process: rank 0 of 1)


def start_run(cfg: Any, resume: bool) -> RunStart:
    """For a trainer config with ``log.output_dir``, ``train.threads``, ``train.seed``,
    ``train.collective_timeout_minutes`` and ``model.device``. Under torchrun / srun this process joins the job's
    process group; every rank then sees the same run folder (a shared filesystem), only rank 0 writes to it."""
    locate_model(cfg.model.name)  # a wrong model name fails now, before the run folder is touched
    run_dir = Path(cfg.log.output_dir)
    checkpoints = ckpt.open_run_dir(run_dir, resume)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    dist, device = init_distributed(resolve_device(cfg.model.device), cfg.train.collective_timeout_minutes)
    resolve_precision(cfg, device, run_dir, resume, verbose=dist.is_main)
    return RunStart(run_dir, run_dir / "final", run_dir / "checkpoints", checkpoints, device, dist)


def resolve_precision(cfg: Any, device: torch.device, run_dir: Path, resume: bool, verbose: bool = True) -> None:
    """Replaces ``auto`` in ``cfg.model.rollout_dtype`` / ``cfg.model.autocast`` with what this device runs fastest
    (``r1lab.models.precision``) and in ``cfg.model.low_precision_update`` with the remedy the optimizer applies, in
    place, so that config.json records what the run used. A resumed run keeps the precision its config.json
    recorded, so it continues exactly as it started, even on another machine."""
    model = getattr(cfg, "model", None)
    saved = run_dir / "config.json"
    before = json.loads(saved.read_text()).get("model", {}) if resume and saved.is_file() else {}
    if hasattr(model, "low_precision_update"):  # auto -> the remedy the optimizer applies to bf16 / fp16 weights
        choice = before.get("low_precision_update", "auto") if model.low_precision_update == "auto" else \
            model.low_precision_update
        dtype = model.train_dtype if hasattr(model, "train_dtype") else model.dtype
        model.low_precision_update = resolve_low_precision_update(dtype, choice)
    if not hasattr(model, "rollout_dtype"):  # jobs whose model section has no rollout copy (the reward model)
        return
    rollout, autocast = model.rollout_dtype, model.autocast
    if before:
        rollout = before.get("rollout_dtype", rollout) if rollout == "auto" else rollout
        autocast = before.get("autocast", autocast) if autocast == "auto" else autocast
    precision = choose_precision(device, rollout, autocast)
    model.rollout_dtype, model.autocast = precision.rollout_dtype, precision.autocast
    if verbose:
        print(precision.reason, flush=True)


def write_config(run_dir: Path, cfg: Any, dist: DistContext | None = None) -> None:
    """config.json with every resolved value (written by rank 0 only)."""
    if dist is not None and not dist.is_main:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
