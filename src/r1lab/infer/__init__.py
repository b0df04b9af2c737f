"""Inference-time scaling methods behind one signature, chosen by name from ``METHODS``:
``METHODS.get(name)(examples, ctx, params) -> list[Answer]`` (see ``r1lab.infer.base``).

Importing registers them all; heavy dependencies (torch, transformers, reward models) load when a method runs.
"""

from r1lab.infer.base import METHODS, Answer, InferContext, method_params
from r1lab.infer import budget, sampling, search  # noqa: F401, E402 - register the methods

__all__ = ["METHODS", "Answer", "InferContext", "method_params"]
