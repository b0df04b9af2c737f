"""Passing a key/value cache to a transformers model, and reading one back, across the `past_key_values` rename.

transformers 5 renamed the cache argument and output field of its models from ``past_key_values`` to ``cache``;
the old names still work but warn on every run ("deprecated ... removed in version 5.40.0"). r1lab supports both
sides of the rename (``transformers>=4.56`` in pyproject.toml), so it asks the model which name its forward takes
instead of comparing version numbers: that also holds for models whose code comes with their checkpoint.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch


def cache_argument_name(model: torch.nn.Module) -> str:
    """``"cache"`` when ``model.forward`` takes that argument, else ``"past_key_values"`` (older transformers, or a
    wrapper whose forward only has ``**kwargs``: every version until 5.40 accepts the old name)."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def output_cache(output: Any) -> Any:
    """The key/value cache in a model output: its ``cache`` field, or ``past_key_values`` before the rename."""
    cache = output.get("cache")  # ModelOutput is a dict of the fields that were set
    return cache if cache is not None else output.get("past_key_values")
