"""The math-verify worker program: reads requests as JSON lines on stdin, answers one JSON line each on stdout.

Started by ``r1lab.rewards.mathcheck.MathVerifierPool`` as ``python <this file>``: a fresh interpreter (the
exec equivalent of the ``spawn`` start method, so it is safe however many threads torch runs in the parent)
that imports only sympy and math-verify. It must not import ``r1lab``: the package's reward modules pull in
torch, which would cost every worker ~3 s and ~280 MB more at start and after every restart.

math-verify's own timeouts use ``signal.alarm`` (main thread only), so both are switched off here
(``parse(parsing_timeout=None)``, ``verify(timeout_seconds=None)``); the parent enforces a wall-clock limit per
item and kills a worker that overruns it.

Protocol: after start-up the worker writes ``{"ready": true}``. A request is
``{"id": int, "pred": str, "latex": bool, "gold": str}``; the reply is ``{"id": int, "score": 0.0 | 1.0}`` or
``{"id": int, "error": "Type: message"}`` (the gold answer could not be parsed: a data problem, not a wrong
answer).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    # Run as a script, this file's folder (r1lab/rewards) heads sys.path, and its code.py would shadow the
    # standard library's `code` module: drop the folder before importing anything else.
    _here = os.path.dirname(os.path.realpath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _here]

import functools  # noqa: E402 - after the sys.path fix above
import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402

# An answer that is already delimited LaTeX (or boxed) is handed to math-verify as it is; a bare one such as
# "\frac{1}{2}" or "x=3" is wrapped in $...$ first, since math-verify only reads LaTeX inside delimiters.
_DELIMITED = re.compile(r"\$|\\\(|\\\[|\\boxed|\\fbox")


class GoldParseError(ValueError):
    pass


@functools.lru_cache(maxsize=None)
def _math_verify():
    """Import math-verify once; its parse configuration reads \\boxed{} before anything else (priority 0)."""
    import math_verify

    # The "timeout disabled" warnings are expected: the parent process owns the timeout.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    config = (math_verify.LatexExtractionConfig(boxed_match_priority=0), math_verify.ExprExtractionConfig())
    return math_verify, config


def _parse(text: str) -> list:
    mv, config = _math_verify()
    return mv.parse(text, extraction_config=config, parsing_timeout=None)


def _has_math(parsed: list) -> bool:
    """True when math-verify produced a sympy object (not only its raw-string fallback)."""
    return any(not isinstance(item, str) for item in parsed)


@functools.lru_cache(maxsize=4096)
def parse_gold(gold: str) -> tuple:
    """The gold answer, parsed first and cached: a GRPO group scores many completions against one gold."""
    text = gold.strip()
    parsed = _parse(text if _DELIMITED.search(text) else f"${text}$")
    if not _has_math(parsed):
        parsed = _parse(text)
    if not _has_math(parsed):  # only a raw string: nothing a prediction could be checked against
        raise GoldParseError(f"math-verify cannot parse the gold answer {gold!r}")
    return tuple(parsed)


def parse_prediction(pred: str, latex: bool) -> list:
    """``latex``: ``pred`` is the answer itself (a box's content, a bare answer); else free text to search."""
    if latex:
        parsed = _parse(pred if _DELIMITED.search(pred) else f"${pred}$")
        if _has_math(parsed):
            return parsed
    # Free text: math-verify's own search (anchored "final answer is ..." first, then the last LaTeX
    # expression or number).
    return _parse(pred)


def _exact_number(expr):
    """``expr`` evaluated when it is an exact number (no symbols, floats or percentages), else None."""
    import sympy

    if not isinstance(expr, sympy.Expr) or expr.free_symbols:
        return None
    if expr.atoms(sympy.Float) or expr.atoms(sympy.UnevaluatedExpr):  # floats round; X% is X*UnevaluatedExpr(1/100)
        return None
    value = expr.doit()
    return value if value.is_number else None


def exact_values_differ(gold, pred) -> bool:
    """True when two exact numbers provably differ.

    math-verify compares numbers by ``(a - b).evalf(chop=True)``, which chops tiny differences to zero, so
    1/2004! equals 1/2006! and 1/2^99 equals 1/2^98 (huggingface/Math-Verify issue 14). Exact inputs deserve an
    exact answer: rationals compare exactly, other exact constants at 60 significant digits.
    """
    import sympy

    try:
        a, b = _exact_number(gold), _exact_number(pred)
        if a is None or b is None:
            return False
        if a.is_Rational and b.is_Rational:
            return a != b
        x, y = sympy.N(a, 60), sympy.N(b, 60)
        scale = max(abs(x), abs(y))
        if not (scale.is_finite and scale.is_comparable):
            return False
        return bool(abs(x - y) > scale * sympy.Float("1e-40", 60))
    except (TypeError, ValueError, ArithmeticError, AttributeError):
        return False  # not comparable as numbers: math-verify's verdict stands


@functools.lru_cache(maxsize=4096)
def score(pred: str, latex: bool, gold: str) -> float:
    """1.0 when some parse of the prediction equals some parse of the gold, else 0.0.

    Cached: the same problem comes back in later steps and epochs, often with the same answers.
    """
    mv, _ = _math_verify()
    golds = parse_gold(gold)
    preds = parse_prediction(pred, latex)
    for g in golds:
        for p in preds:
            if mv.verify(g, p, timeout_seconds=None) and not exact_values_differ(g, p):
                return 1.0
    return 0.0


def _limit_memory(megabytes: int) -> None:
    """Cap the address space so a runaway expression fails inside this worker instead of starving the host."""
    import resource

    if megabytes > 0:
        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel kills this worker when its parent dies, even in the middle of a runaway item (without
    this, a worker stuck on a power tower would outlive a killed trainer). The signal follows the parent
    *thread* that started the worker: workers started from a thread that has exited are gone by the next batch,
    and the pool replaces them there, as it does any worker that died while idle."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the request was registered
        sys.exit(0)


def main() -> None:
    memory_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if len(sys.argv) > 2:
        _die_with_parent(int(sys.argv[2]))
    # Replies go to a private copy of stdout; anything a library prints (from Python or C) lands on stderr.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _limit_memory(memory_mb)
    score("1", True, "1")  # warm up: imports and the LaTeX parser load before the first timed item
    out.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = {"id": request["id"], "score": score(request["pred"], request["latex"], request["gold"])}
        except Exception as err:  # noqa: BLE001 - reported to the parent, which fails this one item
            reply = {"id": request["id"], "error": f"{type(err).__name__}: {err}"}
        out.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
