"""``auto`` precision: bf16 where this device's bf16 matmuls are faster than fp32's, fp32 where they are not.

bf16 rollouts and bf16 autocast pay off only on hardware with fast bf16 matmuls: GPUs from Ampere on, and CPUs with
AMX tiles (Sapphire Rapids and later), where bf16 ran 3-5x fp32's rate (``benchmarks/matmul_rate.py``: 409 vs 121
GFLOP/s at decode shapes, 724 vs 146 when training). On a CPU without AMX the same benchmark measured bf16 *slower*
than fp32 (AVX-512 BF16 Xeon: 112 vs 164 at decode shapes, 123 vs 213 when training), and a GRPO step's training
phase ran 1.75x faster without autocast there; a CPU with only AVX2 emulates bf16. The CPU model name does not
say which case applies ("Intel Xeon Processor" covers both), so on a CPU ``auto`` measures: one matmul of a
decode-sized and one of a training-sized batch in each dtype, about half a second in all, once per process.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import torch

# A Llama MLP projection of a ~135M model (576 -> 1536): big enough to time the matmul kernel, small enough to be
# quick. Rows: a decode batch of 64 sequences, and a training micro-batch of 2,048 tokens.
PROBE_K, PROBE_N = 576, 1536
DECODE_ROWS, TRAIN_ROWS = 64, 2048
# bf16 is chosen only when clearly faster: fp32 rollouts share the policy's weights (no copy, no sync) and fp32
# training is exact, so a near-tie goes to fp32.
BF16_MARGIN = 1.2


class Precision(NamedTuple):
    rollout_dtype: str  # "float32" | "bfloat16" | "float16"
    autocast: str  # "none" | "bfloat16" | "float16"
    reason: str  # one line for the log: what was chosen and why


def matmul_rate(rows: int, dtype: torch.dtype, k: int = PROBE_K, n: int = PROBE_N, min_seconds: float = 0.08) -> float:
    """Achieved GFLOP/s of a (rows, k) @ (k, n) CPU matmul in ``dtype``, timed over at least ``min_seconds``
    (benchmarks/matmul_rate.py measures a model's shapes with it)."""
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


@functools.lru_cache(maxsize=1)  # a fact about this CPU and thread count: measured once per process
def cpu_bf16_speedups(threads: int) -> tuple[float, float]:
    """bf16 / fp32 matmul rate at decode and at training shapes on this CPU with ``threads`` threads."""
    decode = matmul_rate(DECODE_ROWS, torch.bfloat16) / matmul_rate(DECODE_ROWS, torch.float32)
    train = matmul_rate(TRAIN_ROWS, torch.bfloat16) / matmul_rate(TRAIN_ROWS, torch.float32)
    return decode, train


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
        decode, training = cpu_bf16_speedups(torch.get_num_threads())
        rollout = "bfloat16" if decode >= BF16_MARGIN else "float32"
        train = "bfloat16" if training >= BF16_MARGIN else "none"
        why = (f"this CPU's bf16 matmuls: {decode:.2f}x fp32's rate when decoding, {training:.2f}x when training; "
               f"bf16 needs {BF16_MARGIN}x")
    else:
        rollout, train, why = "float32", "none", f"no bf16 measurement for device type {device.type!r}"
    rollout = rollout if rollout_dtype == "auto" else rollout_dtype
    train = train if autocast == "auto" else autocast
    return Precision(rollout, train, f"precision auto: rollouts {rollout}, training autocast {train} ({why})")


def generation_dtype(device: torch.device | str, dtype: str) -> str:
    """The dtype a generate-only job (eval, teacher, PRM data) runs in: ``auto`` resolves as GRPO's rollouts do
    (bf16 where this device's bf16 matmuls are clearly faster, else fp32 on a CPU / fp16 on a GPU without bf16);
    explicit dtypes pass through."""
    if dtype != "auto":
        return dtype
    return choose_precision(torch.device(device), "auto", "none").rollout_dtype
