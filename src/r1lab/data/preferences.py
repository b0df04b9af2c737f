"""Preference pairs for reward-model training: reading JSONL, the built-in sets, and a held-out split by prompt.

A row is ``{"prompt": str, "chosen": str, "rejected": str}``; any other fields (e.g. ``category``) are kept in
``meta``. A malformed row is reported with its file, line and field. The built-in sets ship inside the package
(``r1lab/data/builtin/``, written for r1lab, licence in its README).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from r1lab.data.jsonl import jsonl_rows

BUILTIN = "builtin"  # the name that selects the shipped preference set
FIELDS = ("prompt", "chosen", "rejected")


class PreferenceFormatError(ValueError):
    pass


@dataclass(frozen=True)
class PreferencePair:
    id: str  # "file:line", so any score or error points back to its row
    prompt: str
    chosen: str
    rejected: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


def builtin_path(file_name: str) -> Path:
    """Path of a file shipped in ``r1lab/data/builtin`` (``preferences.jsonl``, ``general_prompts.jsonl``)."""
    path = Path(str(resources.files("r1lab.data").joinpath("builtin", file_name)))
    if not path.is_file():
        raise FileNotFoundError(f"built-in data file {file_name!r} is missing from the installed package ({path})")
    return path


def _pair(row: Any, where: str) -> PreferencePair:
    if not isinstance(row, dict):
        raise PreferenceFormatError(f"{where}: expected a JSON object with fields {', '.join(FIELDS)}, "
                                    f"got {type(row).__name__}")
    for name in FIELDS:
        if name not in row or row[name] is None:
            raise PreferenceFormatError(f"{where}: missing field '{name}'")
        if not isinstance(row[name], str):
            raise PreferenceFormatError(f"{where}: field '{name}' must be a string, got {type(row[name]).__name__}")
        if not row[name].strip():
            raise PreferenceFormatError(f"{where}: field '{name}' is empty")
    if row["chosen"] == row["rejected"]:
        raise PreferenceFormatError(f"{where}: fields 'chosen' and 'rejected' are identical; a pair needs two answers")
    meta = {k: v for k, v in row.items() if k not in FIELDS}
    return PreferencePair(id=where, prompt=row["prompt"], chosen=row["chosen"], rejected=row["rejected"], meta=meta)


def read_preferences(path: str | Path) -> list[PreferencePair]:
    """All pairs of a JSONL file (``builtin`` = the shipped set), in file order; blank lines are skipped."""
    path = builtin_path("preferences.jsonl") if str(path) == BUILTIN else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"preference file not found: {path}")
    if path.suffix != ".jsonl":
        raise PreferenceFormatError(f"{path}: preference data must be a .jsonl file (one JSON object per line)")
    pairs = []
    for lineno, row in jsonl_rows(path, PreferenceFormatError):
        pairs.append(_pair(row, f"{path}:{lineno}"))
    if not pairs:
        raise PreferenceFormatError(f"{path}: no preference pairs in the file")
    return pairs


def prompt_key(prompt: str) -> str:
    """Two pairs share a prompt when the whitespace-normalised text is equal."""
    return " ".join(prompt.split())


def split_by_prompt(pairs: list[PreferencePair], eval_fraction: float, seed: int
                    ) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, held_out): a seeded ``eval_fraction`` of the distinct prompts, with all their pairs, is held out,
    so no prompt is in both (a prompt seen in training would flatter held-out accuracy)."""
    keys = sorted({prompt_key(p.prompt) for p in pairs})
    n_eval = round(eval_fraction * len(keys))
    if not 1 <= n_eval < len(keys):
        raise ValueError(f"{len(keys)} distinct prompts: eval_fraction={eval_fraction} holds out {n_eval}; it must "
                         f"leave at least one prompt on each side")
    random.Random(seed).shuffle(keys)
    held = set(keys[:n_eval])
    return [p for p in pairs if prompt_key(p.prompt) not in held], [p for p in pairs if prompt_key(p.prompt) in held]


def drop_shared_prompts(train: list[PreferencePair], held_out: list[PreferencePair]) -> list[PreferencePair]:
    """Training pairs whose prompt is not in ``held_out`` (for a separate held-out file)."""
    held = {prompt_key(p.prompt) for p in held_out}
    return [p for p in train if prompt_key(p.prompt) not in held]
