"""``auto`` precision: bf16 where this device has fast bf16 matmuls, fp32 where it does not.

bf16 rollouts and bf16 autocast pay off only on hardware with fast bf16 matmuls: GPUs from Ampere on, and CPUs with
AMX tiles (Sapphire Rapids and later), where bf16 ran 3-5x fp32's rate (``benchmarks/matmul_rate.py``: 409 vs 121
GFLOP/s at decode shapes, 724 vs 146 when training). On a CPU without AMX the same benchmark measured bf16 *slower*
than fp32 (AVX-512 BF16 Xeon: 112 vs 164 at decode shapes, 123 vs 213 when training), and a CPU with only AVX2
emulates bf16. So on a CPU ``auto`` reads the CPU's feature flags (AMX present or not), never a timing: a run's
numerics must not depend on how busy the machine is at start-up. ``matmul_rate`` stays as the benchmarks' probe.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import torch

# Feature flags (as /proc/cpuinfo names them) that decide the matmul rate of r1lab's dtypes, fastest first.
MATRIX_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")
# bf16 is fast only with both AMX flags: the tile unit and its bf16 dot product.
FAST_BF16_FLAGS = ("amx_bf16", "amx_tile")


class Precision(NamedTuple):
    rollout_dtype: str  # "float32" | "bfloat16" | "float16"
    autocast: str  # "none" | "bfloat16" | "float16"
    reason: str  # one line for the log: what was chosen and why


def cpuinfo_flags(text: str) -> list[str] | None:
    """The feature flags of the first CPU in a /proc/cpuinfo text (x86's ``flags``, Arm's ``Features``)."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return value.split()
    return None


@functools.lru_cache(maxsize=1)  # a fact about this CPU: read once per process
def cpu_matrix_features() -> tuple[str, ...]:
    """This CPU's matrix features among ``MATRIX_FLAGS``, from /proc/cpuinfo (Linux), else from torch's own
    CPU-feature checks (macOS, Windows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = cpuinfo_flags(f.read())
    except OSError:
        flags = None
    if flags is None:
        cpu = torch.cpu
        found = {"amx_tile": getattr(cpu, "_is_amx_tile_supported", lambda: False)(),
                 "avx512_bf16": getattr(cpu, "_is_avx512_bf16_supported", lambda: False)(),
                 "avx512f": getattr(cpu, "_is_avx512_supported", lambda: False)(),
                 "avx2": getattr(cpu, "_is_avx2_supported", lambda: False)()}
        found["amx_bf16"] = found["amx_tile"]  # torch checks the tile unit; AMX-BF16 ships with it on every CPU
        flags = [name for name, present in found.items() if present]
    return tuple(flag for flag in MATRIX_FLAGS if flag in set(flags))


def matmul_rate(rows: int, dtype: torch.dtype, k: int = 576, n: int = 1536, min_seconds: float = 0.08) -> float:
    """Achieved GFLOP/s of a (rows, k) @ (k, n) CPU matmul in ``dtype``, timed over at least ``min_seconds``
    (benchmarks/matmul_rate.py measures a model's shapes with it; the defaults are a SmolLM2-135M MLP projection)."""
    x, w = torch.randn(rows, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(3):  # oneDNN picks and caches its kernel on the first calls
        torch.matmul(x, w)
    calls, start = 0, time.perf_counter()
    while True:
        torch.matmul(x, w)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and calls >= 3:
            return 2 * rows * k * n * calls / elapsed / 1e9


def choose_precision(device: torch.device, rollout_dtype: str, autocast: str) -> Precision:
    """Resolves ``auto`` in ``rollout_dtype`` / ``autocast``; explicit values pass through unchanged."""
    if rollout_dtype != "auto" and autocast != "auto":
        return Precision(rollout_dtype, autocast, f"precision as configured: rollouts {rollout_dtype}, "
                                                  f"training autocast {autocast}")
    if device.type == "cuda":
        fast = torch.cuda.is_bf16_supported()
        # Without bf16 (before Ampere): fp16 generates well, but fp16 autocast would need loss scaling, so none.
        rollout, train = ("bfloat16", "bfloat16") if fast else ("float16", "none")
        why = f"{torch.cuda.get_device_name(device)} {'has' if fast else 'lacks'} bf16 support"
    elif device.type == "cpu":
        features = cpu_matrix_features()
        fast = all(flag in features for flag in FAST_BF16_FLAGS)
        rollout, train = ("bfloat16", "bfloat16") if fast else ("float32", "none")
        shown = ", ".join(features) or "none of " + ", ".join(MATRIX_FLAGS)
        why = (f"this CPU's matrix features: {shown}; bf16 is fast only with AMX "
               f"({'present' if fast else 'absent'})")
    else:
        rollout, train, why = "float32", "none", f"no bf16 rule for device type {device.type!r}"
    rollout = rollout if rollout_dtype == "auto" else rollout_dtype
    train = train if autocast == "auto" else autocast
    return Precision(rollout, train, f"precision auto: rollouts {rollout}, training autocast {train} ({why}; "
                                     f"override with --set model.rollout_dtype=... model.autocast=...)")


def generation_dtype(device: torch.device | str, dtype: str) -> str:
    """The dtype a generate-only job (eval, teacher, PRM data) runs in: ``auto`` resolves as GRPO's rollouts do
    (bf16 where this device has fast bf16 matmuls, else fp32 on a CPU / fp16 on a GPU without bf16); explicit
    dtypes pass through."""
    if dtype != "auto":
        return dtype
    return choose_precision(torch.device(device), "auto", "none").rollout_dtype
