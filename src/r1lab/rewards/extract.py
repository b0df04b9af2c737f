"""Answer extraction from a completion: ``<answer>`` tags, ``\\boxed{}`` (nested braces), or the last number.

Methods are tried in the configured order; the first that finds something wins. Within one method the *last*
occurrence is taken, since models restate and correct themselves before the final answer.
"""

from __future__ import annotations

import re
from typing import Callable

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
# Optional sign, digits with optional thousands commas, optional decimals; or a bare decimal like .5
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])|(?<![\w.])-?\.\d+")


def from_answer_tag(text: str) -> str | None:
    """Content of the last ``<answer>`` block; a ``\\boxed{}`` inside it is unwrapped (models often do both)."""
    found = _ANSWER_TAG.findall(text)
    if not found:
        return None
    inner = found[-1].strip()
    return from_boxed(inner) or inner


def from_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), matching nested braces."""
    last = None
    for match in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    last = text[start:i].strip()
                    break
    return last


def from_last_number(text: str) -> str | None:
    found = _NUMBER.findall(text)
    return found[-1].replace(",", "") if found else None


EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "answer_tag": from_answer_tag,
    "boxed": from_boxed,
    "last_number": from_last_number,
}


def extract_answer(text: str, methods: tuple[str, ...] | list[str] = ("answer_tag", "boxed", "last_number")) -> str | None:
    """The answer found by the first method in ``methods`` that finds one, else None."""
    for name in methods:
        found = EXTRACTORS[name](text)
        if found is not None and found != "":
            return found
    return None
