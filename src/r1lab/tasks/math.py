"""Math tasks whose answers are checked by math-verify: a user JSONL/Parquet file named ``math:PATH``.

The file format, split and ``DatasetFormatError`` are those of ``r1lab.tasks.files``; only the verifier changes,
from normalised text/number match to math-verify equivalence (so a gold ``\\frac{1}{2}`` accepts ``0.5``, and
``x=3`` accepts ``3``). Reasoning-gym's math datasets (``rg:basic_arithmetic``, ``rg:chain_sum``,
``rg:gsm_symbolic``, ``rg:fraction_simplification``, ...) keep their own ``score_answer``, which knows each
dataset's answer format; load them as ``rg:NAME``.
"""

from __future__ import annotations

import dataclasses
from functools import partial

from r1lab.rewards.mathcheck import check_math_params, verify_math
from r1lab.tasks.base import Task
from r1lab.tasks.files import load_file_task
from r1lab.types import Example

PREFIX = "math:"


def math_scorer(answer: str, example: Example, settings: dict | None = None) -> float:
    """math-verify equivalence of an extracted answer with the gold; raises when the check itself fails."""
    return verify_math(answer, example.answer, settings)


def load_math_file_task(
    path: str, seed: int, eval_size: int | None, eval_path: str | None = None, verifier: dict | None = None,
    split: str = "held_out",
) -> Task:
    """``path`` without the ``math:`` prefix; the held-out file (``eval_path``), if any, is read the same way.
    ``verifier`` holds the math-verify pool settings (timeout, workers, memory_mb) from ``task.params``."""
    settings = check_math_params(dict(verifier or {}), owner=f"task {PREFIX}{path}: task.params")
    task = load_file_task(path, seed, eval_size, eval_path, split)
    return dataclasses.replace(task, name=f"{PREFIX}{path}", scorer=partial(math_scorer, settings=settings))
