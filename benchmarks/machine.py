"""The machine a benchmark ran on, in one line (printed with every measured figure)."""

from __future__ import annotations

import os
import platform


def describe() -> str:
    """CPU model, logical cores (and how many this process may use), torch version when installed, Python."""
    model = platform.processor() or platform.machine() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        import torch

        extra = f"; torch {torch.__version__}"
    except ImportError:
        extra = ""
    return f"{model}; {os.cpu_count()} logical cores ({usable} usable){extra}; Python {platform.python_version()}"
