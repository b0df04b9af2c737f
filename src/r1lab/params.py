"""Named parameters of registered functions (reward functions, inference methods): one way to declare the
accepted keys with their defaults, and one check that names the unknown key and the allowed ones."""

from __future__ import annotations

from typing import Callable


def declare_params(**defaults) -> Callable:
    """Attach a function's accepted parameters and their defaults as ``fn.param_defaults`` (shown in help)."""

    def wrap(fn: Callable) -> Callable:
        fn.param_defaults = dict(defaults)
        return fn

    return wrap


def merge_params(owner: str, given: dict, defaults: dict, where: str = "") -> dict:
    """``given`` over ``defaults``; an unknown key is a ValueError naming ``owner`` (e.g. "reward 'x'"), the key,
    ``where`` it was set, and the allowed keys."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{owner}: unknown parameter(s) {', '.join(unknown)}{where}; "
                         f"allowed: {', '.join(sorted(defaults))}")
    return {**defaults, **given}
