"""The Task protocol: train and held-out Examples plus a scorer, and the split guarantees every task keeps."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from r1lab.types import Example


def overlap_key(example: Example) -> str:
    """Two examples are the same problem when their question text is the same (whitespace-normalised)."""
    return " ".join(example.question.split())


# Which problems a task holds: held_out (training jobs: a training set and held-out problems) or all (evaluation
# of a fixed benchmark: every problem is evaluated, none is set aside for training)
SPLITS = ("held_out", "all")


@dataclass
class Task:
    """``train`` and ``eval`` never share a question (checked at construction); ``score`` returns [0, 1].
    ``eval_only``: every problem is in ``eval`` and ``train`` is empty (split all; no training job loads one)."""

    name: str
    train: list[Example]
    eval: list[Example]
    scorer: Callable[[str, Example], float]
    eval_only: bool = False

    def __post_init__(self) -> None:
        held_out = {overlap_key(e) for e in self.eval}
        shared = [e.id for e in self.train if overlap_key(e) in held_out]
        if shared:
            raise ValueError(f"task {self.name}: {len(shared)} training examples also in the held-out set, e.g. {shared[:3]}")
        if not self.train and not self.eval_only:
            raise ValueError(f"task {self.name}: no training examples left after removing held-out questions")

    def score(self, answer: str, example: Example) -> float:
        return float(self.scorer(answer, example))


def drop_held_out(train: list[Example], held_out: list[Example]) -> list[Example]:
    """Training examples whose question is not in the held-out set (procedural generators repeat problems)."""
    keys = {overlap_key(e) for e in held_out}
    return [e for e in train if overlap_key(e) not in keys]


def split_held_out(examples: list[Example], eval_size: int, seed: int, name: str) -> tuple[list[Example], list[Example]]:
    """(train, held_out): ``eval_size`` distinct questions chosen by ``seed`` are held out with every copy of them,
    so no held-out problem is trained on."""
    keys = sorted({overlap_key(e) for e in examples})
    if eval_size >= len(keys):
        raise ValueError(f"task {name}: {len(keys)} distinct problems, cannot hold out {eval_size} and still train; "
                         f"lower task.eval_size")
    random.Random(seed).shuffle(keys)
    held = set(keys[:eval_size])
    return [e for e in examples if overlap_key(e) not in held], [e for e in examples if overlap_key(e) in held]


def split_task(name: str, examples: list[Example], seed: int, eval_size: int | None,
               scorer: Callable[[str, Example], float], split: str = "held_out") -> Task:
    """A fixed list of problems as a Task. ``held_out``: ``split_held_out``'s training set and ``eval_size``
    held-out problems. ``all``: every problem is evaluated; with ``eval_size``, only the problems ``held_out`` would
    hold out with that size and seed (so the held-out set of a training run is also evaluable as a subset)."""
    if split == "held_out":
        train, held_out = split_held_out(examples, eval_size, seed, name)
        return Task(name=name, train=train, eval=held_out, scorer=scorer)
    count = len({overlap_key(e) for e in examples})
    if eval_size is not None and eval_size > count:
        raise ValueError(f"task {name}: {count} distinct problems, fewer than task.eval_size={eval_size}; leave "
                         f"task.eval_size unset to evaluate all of them")
    chosen = examples if eval_size in (None, count) else split_held_out(examples, eval_size, seed, name)[1]
    return Task(name=name, train=[], eval=list(chosen), scorer=scorer, eval_only=True)


def normalised_match(answer: str, gold: str) -> float:
    """Default verifier for user data: numbers compare by value, everything else by case/space-folded text."""
    a, g = answer.strip(), gold.strip()
    try:
        return float(abs(float(a.replace(",", "")) - float(g.replace(",", ""))) < 1e-9)
    except ValueError:
        return float(" ".join(a.casefold().split()) == " ".join(g.casefold().split()))
