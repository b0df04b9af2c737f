"""The machine a benchmark ran on, in one line (printed with every measured figure)."""

from __future__ import annotations

import os
import platform

import torch

# The CPU features that decide the matmul rate of r1lab's dtypes (AMX tiles: bf16 several times fp32's rate; AVX-512
# BF16, AVX-512, AVX2): the same reading `auto` precision decides by. Two "Intel Xeon Processor" VMs can differ
# here by 3x in bf16.
from r1lab.models.precision import cpu_matrix_features


def describe() -> str:
    """CPU model and its matrix features, logical cores (and how many this process may use), torch and Python."""
    model = platform.processor() or platform.machine() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    features = cpu_matrix_features()
    if features:
        model += f" ({', '.join(features)})"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{model}; {os.cpu_count()} logical cores ({usable} usable); torch {torch.__version__}; "
            f"Python {platform.python_version()}")
