"""The machine a benchmark ran on, in one line (printed with every measured figure)."""

from __future__ import annotations

import os
import platform


# CPU features that decide the matmul rate of r1lab's dtypes: AMX tiles (bf16 several times fp32's rate),
# AVX-512 BF16 dot products, plain AVX-512 / AVX2. Two "Intel Xeon Processor" VMs can differ here by 3x in bf16.
MATRIX_FLAGS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")


def describe() -> str:
    """CPU model and its matrix features, logical cores (and how many this process may use), torch version when
    installed, Python."""
    model, flags = platform.processor() or platform.machine() or "unknown CPU", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        flags = set(next(line.split(":", 1)[1].split() for line in lines if line.startswith("flags")))
    except (OSError, StopIteration):
        pass
    features = [flag for flag in MATRIX_FLAGS if flag in flags]
    if features:
        model += f" ({', '.join(features)})"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        import torch

        extra = f"; torch {torch.__version__}"
    except ImportError:
        extra = ""
    return f"{model}; {os.cpu_count()} logical cores ({usable} usable){extra}; Python {platform.python_version()}"
