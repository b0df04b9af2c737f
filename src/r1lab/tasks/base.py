"""The Task protocol: train and held-out Examples plus a scorer, and the split guarantees every task keeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from r1lab.types import Example


def overlap_key(example: Example) -> str:
    """Two examples are the same problem when their question text is the same (whitespace-normalised)."""
    return " ".join(example.question.split())


@dataclass
class Task:
    """``train`` and ``eval`` never share a question (checked at construction); ``score`` returns [0, 1]."""

    name: str
    train: list[Example]
    eval: list[Example]
    scorer: Callable[[str, Example], float]

    def __post_init__(self) -> None:
        held_out = {overlap_key(e) for e in self.eval}
        shared = [e.id for e in self.train if overlap_key(e) in held_out]
        if shared:
            raise ValueError(f"task {self.name}: {len(shared)} training examples also in the held-out set, e.g. {shared[:3]}")
        if not self.train:
            raise ValueError(f"task {self.name}: no training examples left after removing held-out questions")

    def score(self, answer: str, example: Example) -> float:
        return float(self.scorer(answer, example))


def drop_held_out(train: list[Example], held_out: list[Example]) -> list[Example]:
    """Training examples whose question is not in the held-out set (procedural generators repeat problems)."""
    keys = {overlap_key(e) for e in held_out}
    return [e for e in train if overlap_key(e) not in keys]


def normalised_match(answer: str, gold: str) -> float:
    """Default verifier for user data: numbers compare by value, everything else by case/space-folded text."""
    a, g = answer.strip(), gold.strip()
    try:
        return float(abs(float(a.replace(",", "")) - float(g.replace(",", ""))) < 1e-9)
    except ValueError:
        return float(" ".join(a.casefold().split()) == " ".join(g.casefold().split()))
