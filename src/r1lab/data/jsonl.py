"""Reading user JSONL files so that a broken line is reported by file and line number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator


def jsonl_rows(path: str | Path, error: type[Exception]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each non-blank line of ``path``, in order. A line that is not valid JSON
    raises ``error`` with "PATH:LINE: not valid JSON (...)"; checking the value's fields is the caller's job."""
    with open(path, encoding="utf-8-sig") as f:  # skips a leading BOM (Notepad and Excel write one), as pandas does
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as err:
                raise error(f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno})") from None
