"""Shared fixtures: tiny models built in code, isolated caches, no network."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """An HF folder holding a tiny random Llama + character tokenizer, loadable by the CLI like any model."""
    from r1lab.models.tiny import save_tiny_model

    folder = tmp_path_factory.mktemp("tiny-model")
    save_tiny_model(folder, seed=0)
    return folder
