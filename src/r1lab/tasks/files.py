"""User datasets: JSONL (one object per line) or Parquet, read with ``datasets``.

Each row needs ``answer`` and either ``prompt`` (a string) or ``messages`` (a list of {role, content}).
A malformed row is reported with its file, line (JSONL) or row (Parquet) and field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from r1lab.data.jsonl import jsonl_rows
from r1lab.tasks.base import Task, drop_held_out, normalised_match, split_task
from r1lab.types import Example


class DatasetFormatError(ValueError):
    pass


def _validate_row(row: Any, where: str) -> Example:
    if not isinstance(row, dict):
        raise DatasetFormatError(f"{where}: expected a JSON object with fields 'prompt' or 'messages', and 'answer'")
    if "answer" not in row or row["answer"] is None:
        raise DatasetFormatError(f"{where}: missing field 'answer'")
    prompt, messages = row.get("prompt"), row.get("messages")
    if prompt is None and messages is None:
        raise DatasetFormatError(f"{where}: needs field 'prompt' (a string) or 'messages' (a list of turns)")
    if prompt is not None and not isinstance(prompt, str):
        raise DatasetFormatError(f"{where}: field 'prompt' must be a string, got {type(prompt).__name__}")
    if messages is not None:
        if not isinstance(messages, list) or not messages:
            raise DatasetFormatError(f"{where}: field 'messages' must be a non-empty list of {{role, content}}")
        for j, turn in enumerate(messages):
            if not isinstance(turn, dict) or not isinstance(turn.get("role"), str) or not isinstance(turn.get("content"), str):
                raise DatasetFormatError(f"{where}: field 'messages[{j}]' must have string 'role' and 'content'")
    meta = {k: v for k, v in row.items() if k not in ("prompt", "messages", "answer")}
    return Example(id=where, prompt=prompt, messages=messages, answer=str(row["answer"]), meta=meta)


def read_examples(path: str | Path) -> list[Example]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path}")
    if path.suffix in (".jsonl", ".json"):
        # Parse line by line first so a broken line is reported by number; then hand rows to `datasets`.
        rows = list(jsonl_rows(path, DatasetFormatError))
        examples = [_validate_row(row, f"{path}:{lineno}") for lineno, row in rows]
        import datasets  # lazy

        datasets.Dataset.from_list([{"prompt": e.question, "answer": e.answer} for e in examples])  # schema check
        return examples
    if path.suffix == ".parquet":
        import datasets  # lazy

        ds = datasets.Dataset.from_parquet(str(path))
        return [_validate_row(row, f"{path}:row {i + 1}") for i, row in enumerate(ds)]
    raise DatasetFormatError(f"{path}: unsupported dataset format {path.suffix!r}; use .jsonl or .parquet")


def _match_gold(answer: str, example: Example) -> float:
    return normalised_match(answer, example.answer)


def load_file_task(path: str, seed: int, eval_size: int | None, eval_path: str | None = None,
                   split: str = "held_out") -> Task:
    """``split`` as in ``split_task``; a separate held-out file ``eval_path`` replaces the split."""
    examples = read_examples(path)
    if eval_path:
        held_out = read_examples(eval_path)
        return Task(name=str(path), train=drop_held_out(examples, held_out), eval=held_out, scorer=_match_gold)
    return split_task(str(path), examples, seed, eval_size, _match_gold, split)
