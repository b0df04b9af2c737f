"""Shared fixtures: tiny models built in code, isolated caches, no network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(1)

# CPU kinds `auto` precision tells apart (r1lab.models.precision): the suite must pass on each, whatever the host.
CPU_KINDS = {
    "amx": ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2"),  # Sapphire Rapids and later: bf16 is fast
    "avx512_bf16": ("avx512_bf16", "avx512f", "avx2"),  # bf16 dot products without AMX: bf16 slower than fp32
    "avx2": ("avx2",),  # bf16 emulated
}


def pytest_addoption(parser):
    parser.addoption("--cpu-features", default="host", choices=["host", *CPU_KINDS],
                     help="run the suite as if on a CPU of this kind (auto precision follows it, in this process "
                          "and in the CLI subprocesses tests start); host: this machine's own features")


def pytest_configure(config):
    kind = config.getoption("--cpu-features")
    if kind == "host":
        return
    from r1lab.models import precision

    precision.cpu_matrix_features = lambda: CPU_KINDS[kind]
    os.environ["R1LAB_TEST_CPU_FEATURES"] = ",".join(CPU_KINDS[kind])
    emulation = str(Path(__file__).parent / "cpu_emulation")  # its sitecustomize.py patches child processes
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [emulation, os.environ.get("PYTHONPATH")]))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """An HF folder holding a tiny random Llama + character tokenizer, loadable by the CLI like any model."""
    from r1lab.models.tiny import save_tiny_model

    folder = tmp_path_factory.mktemp("tiny-model")
    save_tiny_model(folder, seed=0)
    return folder
