"""From a response to a scored answer: extraction, the task's verifier, and answer equivalence for voting.

Equivalence (what maj@k votes over) is decided by the task's own verifier, not by raw strings: answers a and b are
the same when the scorer gives a full score to a with b as the gold answer (``as_gold``). So under a math-verify
task "0.5", "1/2" and "\\frac{1}{2}" cast one vote, and under a reasoning-gym task the dataset's ``score_answer``
decides. The check is made against each cluster's representative (its earliest answer), in one direction; a
verifier that raises counts as "not the same". Code tasks (HumanEval, ``code:``) score whole programs by running
tests, which says nothing about two programs being equal, so their answers cluster by whitespace-normalised text.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # r1lab.types and r1lab.rewards import torch; this module stays light for `r1lab eval --help`
    from r1lab.types import Example


def is_code_task(task) -> bool:
    """Code tasks score the whole completion (the program) rather than an extracted answer."""
    return task.name == "humaneval" or task.name.startswith("code:")


def answer_of(text: str, task, extraction: tuple[str, ...] | list[str]) -> str | None:
    """The answer the verifier sees: the whole completion for code tasks, else the first extraction that hits."""
    if is_code_task(task):
        return text if text.strip() else None
    from r1lab.rewards.extract import extract_answer

    return extract_answer(text, tuple(extraction))


def as_gold(example: Example, answer: str) -> Example:
    """A copy of ``example`` whose gold answer is ``answer`` (reasoning-gym keeps its gold in ``meta['entry']``)."""
    meta = dict(example.meta)
    entry = meta.get("entry")
    if isinstance(entry, dict) and "answer" in entry:
        meta["entry"] = {**entry, "answer": answer}
    return dataclasses.replace(example, answer=answer, meta=meta)


def equivalence(task, example: Example) -> Callable[[str, str], bool]:
    """``same(a, b)`` for answers to ``example``: True when the task's verifier accepts a given b as the gold."""
    if is_code_task(task):
        return lambda a, b: " ".join(a.split()) == " ".join(b.split())

    def same(a: str, b: str) -> bool:
        try:
            return task.score(a, as_gold(example, b)) >= 1.0
        except Exception:  # noqa: BLE001 - an unverifiable pair is not evidence of equality
            return False

    return same
