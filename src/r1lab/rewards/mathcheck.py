"""Math answers checked with math-verify (huggingface/Math-Verify) in a pool of worker processes.

The R1 report's accuracy reward for math is a deterministic check of the final answer against the gold one.
math-verify does the parsing (LaTeX and plain expressions) and the comparison (numbers, symbolic equality, sets,
intervals, equations). Its own timeouts use ``signal.alarm``, which only works on the main thread, so they are
switched off and each item runs in a worker process under a wall-clock limit enforced here: a pathological
expression costs one item (an exception, docs/architecture.md principle 6: an infrastructure failure, not a wrong
answer) and one worker restart, never a stalled training step.

Behaviour we chose (pinned in tests/rewards/test_mathcheck.py):

- the gold is parsed first, as LaTeX (wrapped in ``$...$`` when bare); a gold math-verify cannot parse is an
  error, not a 0;
- the prediction is the content of the last ``<answer>`` block when there is one, else the content of the last
  ``\\boxed{}``, else the whole text, where math-verify looks for an anchored "final answer is ..." and then the
  last expression or number; when several boxes appear, the last one wins (models correct themselves);
- a bare answer (no delimiters, no prose words) is read as LaTeX, so ``\\frac12`` equals ``0.5``;
- plain-text mixed numbers ``2 1/2`` (proper fraction) mean 5/2, like LaTeX ``2\\frac{1}{2}`` does in math-verify;
- exact numbers compare exactly (math-verify alone equates 1/2004! and 1/2006!);
- everything else is math-verify's behaviour: ``\\text{13}`` = 13, ``50\\%`` = 50 = 0.5, ``x=3`` = 3,
  ``1,234`` = 1234, 6-decimal rounding when one side is a float (1/3 = 0.333333).
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from multiprocessing.connection import wait as wait_for_output
from pathlib import Path
from typing import Sequence

from r1lab.rewards.extract import from_answer_tag, from_boxed
from r1lab.rewards.functions import REWARDS, RewardContext, batched
from r1lab.types import Example

DEFAULT_TIMEOUT = 5.0  # seconds per item; math-verify's own default limits are 5 s for parsing and for comparing
DEFAULT_MEMORY_MB = 2048  # address-space cap of each worker
START_TIMEOUT = 120.0  # a worker imports sympy and math-verify (~1 s idle, far more on a loaded machine)
WORKER_SCRIPT = Path(__file__).with_name("mathcheck_worker.py")


class MathVerifyError(RuntimeError):
    """The check itself failed (worker crashed, gold unparseable): the sample must not be scored."""


class MathVerifyTimeout(TimeoutError):
    """An item ran past the per-item limit; its worker was killed and replaced."""


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


# ---------------------------------------------------------------------------------------------------------------
# What part of a completion is the answer (runs in the caller's process: cheap string work)
# ---------------------------------------------------------------------------------------------------------------
_DELIMITERS = re.compile(r"\$|\\\(|\\\[")
_PROSE_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")  # a word of 3+ letters that is not a \command
# "2 1/2": an integer, spaces, then a proper fraction; not part of a longer number, power or fraction.
_MIXED_NUMBER = re.compile(r"(?<![\w.,/^_])(-?)(\d+)[ \t]+(\d+)/(\d+)(?![\w.,/^]|[ \t]*\d)")
_ROMAN_LETTER = re.compile(r"\\mathrm\{([a-zA-Z])\}")
_SQRT_PARENS = re.compile(r"\\sqrt\s*\(([^()]*)\)")
_CURRENCY = re.compile(r"\\\$")


def _mixed_to_fraction(match: re.Match) -> str:
    sign, whole, num, den = match.group(1), int(match.group(2)), int(match.group(3)), int(match.group(4))
    if not 0 < num < den:
        return match.group(0)  # "4 10/3" is not a mixed number; leave it to math-verify
    return f"{sign}{whole * den + num}/{den}"


def normalise(text: str) -> str:
    """Fix spellings math-verify misreads, on both the gold and the prediction.

    When math-verify cannot parse the rest of an expression it keeps the parsed prefix, so each of these was a
    false positive against the prefix's value:

    - plain mixed numbers: "1 1/4" parses as 1 (huggingface/Math-Verify issue 34), so a whole number followed
      by a proper fraction becomes one fraction;
    - ``\\mathrm{e}``: "1 - \\frac{1}{\\mathrm{e}}" parses as 1 (issue 14), so a single roman letter is unwrapped;
    - ``\\sqrt(2)``: "4\\sqrt(2)" parses as 4 (issue 41), so the parentheses become braces.

    And a currency sign ``\\$`` is dropped: "\\boxed{\\$18}" is the number 18.
    """
    text = _MIXED_NUMBER.sub(_mixed_to_fraction, text)
    text = _ROMAN_LETTER.sub(r"\1", text)
    text = _SQRT_PARENS.sub(r"\\sqrt{\1}", text)
    return _CURRENCY.sub("", text)


def is_bare_answer(text: str) -> bool:
    """An answer on its own ("x=3", "\\frac12", "1,234"), not a sentence or a derivation."""
    text = text.strip()
    return bool(text) and "\n" not in text and not _DELIMITERS.search(text) and not _PROSE_WORD.search(text)


def prediction_of(completion: str) -> tuple[str, bool]:
    """(text to verify, whether it is the answer itself) for a completion or an already-extracted answer.

    Boxed-first: the last ``<answer>`` block (its box unwrapped) or else the last ``\\boxed{}`` is the answer;
    without either, the whole completion goes to math-verify's search for the final expression.
    """
    scope = from_answer_tag(completion)
    if scope is None:
        scope = from_boxed(completion)
    if scope is None:
        scope = completion
    scope = normalise(scope)
    return scope, is_bare_answer(scope)


# ---------------------------------------------------------------------------------------------------------------
# The worker pool
# ---------------------------------------------------------------------------------------------------------------
class _Worker:
    """One ``mathcheck_worker.py`` process: a fresh interpreter (exec, like the ``spawn`` start method), so it is
    safe next to torch's threads, and one that imports neither torch nor the caller's ``__main__``."""

    def __init__(self, memory_mb: int):
        self.stderr = tempfile.TemporaryFile()  # kept to explain a worker that fails to start
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER_SCRIPT), str(memory_mb), str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, close_fds=True,
        )
        self.fd = self.proc.stdout.fileno()
        self.buffer = b""
        self.ready = False
        self.start_deadline = time.monotonic() + START_TIMEOUT
        self.request_id: int | None = None  # the request in flight, if any
        self.deadline = 0.0

    def send(self, request_id: int, line: bytes, deadline: float) -> None:
        self.proc.stdin.write(line)
        self.proc.stdin.flush()
        self.request_id, self.deadline = request_id, deadline

    def read(self) -> tuple[list[dict], bool]:
        """Complete messages now readable, and whether the worker has closed its output (died)."""
        chunk = os.read(self.fd, 1 << 16)
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()], not chunk

    def stderr_tail(self, limit: int = 2000) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")[-limit:].strip()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.stderr):
            try:
                stream.close()
            except OSError:
                pass


class MathVerifierPool:
    """Scores (prediction, gold) pairs with math-verify in ``workers`` processes, ``timeout`` seconds per item.

    Workers start on first use and are reused; a worker that overruns its item is killed and replaced, and the
    item's result is a ``MathVerifyTimeout``. One batch at a time (calls from several threads are serialised).
    """

    def __init__(self, workers: int | None = None, timeout: float = DEFAULT_TIMEOUT,
                 memory_mb: int = DEFAULT_MEMORY_MB):
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.n_workers = workers or default_workers()
        if self.n_workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.timeout = float(timeout)
        self.memory_mb = int(memory_mb)
        self.restarts = 0  # workers killed for overrunning or replaced after dying
        self._workers: list[_Worker] = []
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def __enter__(self) -> "MathVerifierPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers (empty before first use)."""
        return [w.proc.pid for w in self._workers]

    def close(self) -> None:
        """Stop every worker (idle ones exit on end of input; any other is killed)."""
        workers, self._workers = self._workers, []
        for worker in workers:
            try:
                worker.proc.stdin.close()
            except OSError:
                pass
        for worker in workers:
            try:
                worker.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            worker.kill()

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float | BaseException]:
        """1.0 / 0.0 per (prediction, gold), or the exception that kept that item from being checked."""
        # The completions of a GRPO group often end in the same answer: each distinct check runs once.
        slot_of: dict[tuple[str, bool, str], int] = {}
        slots = []
        for prediction, gold in pairs:
            key = (*prediction_of(prediction), normalise(str(gold)))
            slots.append(slot_of.setdefault(key, len(slot_of)))
        requests = [{"pred": pred, "latex": latex, "gold": gold} for pred, latex, gold in slot_of]
        with self._lock:
            try:
                results = self._run(requests)
            except BaseException:
                self.close()  # workers may hold requests of the abandoned batch: start clean next time
                raise
        return [results[slot] for slot in slots]

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers[self._workers.index(worker)] = _Worker(self.memory_mb)
        self.restarts += 1

    def _run(self, requests: list[dict]) -> list[float | BaseException]:
        if not requests:
            return []
        while len(self._workers) < self.n_workers:
            self._workers.append(_Worker(self.memory_mb))
        results: list[float | BaseException | None] = [None] * len(requests)
        index_of: dict[int, int] = {}  # request id -> position in this batch
        queue = deque(range(len(requests)))
        while queue or any(w.request_id is not None for w in self._workers):
            now = time.monotonic()
            for worker in list(self._workers):
                if worker.ready and worker.request_id is None and queue:
                    i = queue.popleft()
                    request_id = next(self._ids)
                    line = (json.dumps({"id": request_id, **requests[i]}) + "\n").encode()
                    try:
                        worker.send(request_id, line, now + self.timeout)
                        index_of[request_id] = i
                    except OSError:  # died while idle: not this item's fault, so it waits for another worker
                        queue.appendleft(i)
                        self._replace(worker)
            waits = [w.deadline if w.request_id is not None else w.start_deadline
                     for w in self._workers if w.request_id is not None or not w.ready]
            wait = max(0.0, min(waits) - time.monotonic()) if waits else None
            readable = wait_for_output([w.fd for w in self._workers], wait)  # poll-based: any fd number
            for worker in [w for w in self._workers if w.fd in readable]:
                messages, closed = worker.read()
                for message in messages:
                    if message.get("ready"):
                        worker.ready = True
                    elif message.get("id") == worker.request_id:  # a reply to an abandoned batch is dropped
                        i = index_of[worker.request_id]
                        error = message.get("error")
                        results[i] = MathVerifyError(error) if error else float(message["score"])
                        worker.request_id = None
                if closed:
                    if not worker.ready:
                        raise MathVerifyError(f"math-verify worker failed to start (exit {worker.proc.wait()}): "
                                              f"{worker.stderr_tail() or 'no output'}")
                    if worker.request_id is not None:
                        results[index_of[worker.request_id]] = MathVerifyError(
                            f"math-verify worker died (exit {worker.proc.wait()}) while checking this answer")
                    self._replace(worker)
            now = time.monotonic()
            for worker in list(self._workers):
                if worker.request_id is not None and now >= worker.deadline:
                    results[index_of[worker.request_id]] = MathVerifyTimeout(
                        f"math-verify did not finish within {self.timeout:g} s; the worker was killed")
                    self._replace(worker)
                elif not worker.ready and now >= worker.start_deadline:
                    raise MathVerifyError(f"math-verify worker did not start within {START_TIMEOUT:g} s")
        return results  # type: ignore[return-value]


# One pool per process and setting, started on first use and reused by every batch (start-up costs ~1 s per
# worker). Keyed by pid so a forked child never talks to its parent's workers.
_SHARED: dict[tuple, MathVerifierPool] = {}
_SHARED_LOCK = threading.Lock()


def shared_pool(workers: int | None = None, timeout: float = DEFAULT_TIMEOUT,
                memory_mb: int = DEFAULT_MEMORY_MB) -> MathVerifierPool:
    key = (os.getpid(), workers or default_workers(), float(timeout), int(memory_mb))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = MathVerifierPool(workers, timeout, memory_mb)
        return _SHARED[key]


@atexit.register
def close_shared_pools() -> None:
    with _SHARED_LOCK:
        pools = [pool for key, pool in _SHARED.items() if key[0] == os.getpid()]
        _SHARED.clear()
    for pool in pools:
        pool.close()


def verify_math(prediction_text: str, gold: str, settings: dict | None = None) -> float:
    """1.0 when the answer in ``prediction_text`` (a completion or an extracted answer) equals ``gold``, else 0.0.

    Raises ``MathVerifyTimeout`` / ``MathVerifyError`` when the check could not be done. Uses the shared pool
    for ``settings`` (timeout, workers, memory_mb; checked by ``check_math_params``).
    """
    result = pool_for_settings(settings or {}).score([(prediction_text, gold)])[0]
    if isinstance(result, BaseException):
        raise result
    return result


# ---------------------------------------------------------------------------------------------------------------
# The reward
# ---------------------------------------------------------------------------------------------------------------
# rewards.params.math: name -> (test, what the value must be)
_PARAMS = {
    "timeout": (lambda v: v > 0, "a number of seconds > 0"),
    "workers": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    "memory_mb": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0 (0: no cap)"),
}


def check_math_params(params: dict, owner: str = "reward 'math'") -> dict:
    """Validate the verifier settings (``rewards.params.math``, or a math: task's ``task.params``)."""
    for key, value in params.items():
        if key not in _PARAMS:
            raise ValueError(f"{owner}: unknown parameter {key!r}; allowed: {', '.join(_PARAMS)}")
        test, what = _PARAMS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not test(value):
            raise ValueError(f"{owner}: parameter {key!r} must be {what}, got {value!r}")
    return params


def pool_for_settings(params: dict) -> MathVerifierPool:
    check_math_params(params)
    return shared_pool(params.get("workers"), params.get("timeout", DEFAULT_TIMEOUT),
                       params.get("memory_mb", DEFAULT_MEMORY_MB))


@REWARDS.register("math")
@batched
def math_reward(completions: list[str], examples: list[Example], ctx: RewardContext) -> list[float | BaseException]:
    """math-verify equivalence of each completion's final answer with ``example.answer`` (1 or 0), batch in the
    pool. Parameters (``rewards.params.math``): ``timeout`` s per item, ``workers``, ``memory_mb`` per worker
    (0 = no cap)."""
    return pool_for_settings(ctx.params_of("math")).score([(c, e.answer) for c, e in zip(completions, examples)])


math_reward.check_params = check_math_params  # config-time validation of rewards.params.math
