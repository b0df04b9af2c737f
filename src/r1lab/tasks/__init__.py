"""Tasks: sources of Examples with a verifier. ``load_task`` dispatches on the name."""

from __future__ import annotations

from typing import Any

from r1lab.tasks.base import Task


def load_task(
    name: str, params: dict[str, Any] | None = None, seed: int = 0, train_size: int = 5000, eval_size: int = 200,
    eval_path: str | None = None,
) -> Task:
    """``rg:NAME`` -> a reasoning-gym dataset (``params`` go to its config); a .jsonl/.parquet path -> user data."""
    params = dict(params or {})
    if name.startswith("rg:"):
        from r1lab.tasks.gym import load_gym_task

        return load_gym_task(name[3:], params, seed, train_size, eval_size)
    if name.endswith((".jsonl", ".json", ".parquet")):
        from r1lab.tasks.files import load_file_task

        if params:
            raise ValueError(f"task {name}: task.params apply only to rg: tasks, got {params}")
        return load_file_task(name, seed, eval_size, eval_path)
    raise ValueError(f"unknown task {name!r}: use 'rg:<reasoning-gym dataset>' (e.g. rg:chain_sum) or a .jsonl/.parquet file")


__all__ = ["Task", "load_task"]
