"""Many sandboxed runs at once: a bounded pool (default: one run per usable core).

``warm=True`` (what the ``code`` reward uses): each pool thread owns a warm sandbox (``warm.WarmSandbox``) that
starts once and runs program after program, each in a freshly forked harness and worker, cleaned up after; a
sandbox that died is replaced. ``warm=False``: every run is a fresh bwrap process (``runner.run_program``).
Either way the pool's threads only wait on sandboxes, so threads (not processes) are enough and the caller's
process holds no extra interpreter. ``SandboxPool.submit`` returns a future, so a trainer can hand a batch to the
pool and keep generating while it runs.
"""

from __future__ import annotations

import atexit
import functools
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

from r1lab.sandbox.limits import SandboxLimits
from r1lab.sandbox.runner import ExecutionResult, run_program
from r1lab.sandbox.warm import WarmSandbox


@dataclass(frozen=True)
class Job:
    """One program and its tests (see ``run_program`` for the fields)."""

    program: str
    tests: str
    entry_point: str | None = None
    setup: str = ""


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class SandboxPool:
    """``with SandboxPool(workers) as pool: results = pool.map(jobs)``; at most ``workers`` sandboxes at a time."""

    def __init__(self, workers: int | None = None, limits: SandboxLimits | None = None, warm: bool = False):
        self.workers = workers or default_workers()
        if self.workers < 1:
            raise ValueError(f"SandboxPool needs at least one worker, got {workers}")
        self.limits = limits or SandboxLimits()
        self.warm = warm
        self._local = threading.local()  # warm: this thread's sandbox (it started it: --die-with-parent)
        self._sandboxes: list[WarmSandbox] = []
        self._lock = threading.Lock()
        self.started = 0  # warm sandboxes started, replacements included
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="r1lab-sandbox")

    def submit(self, job: Job) -> Future:
        if self.warm:
            return self._executor.submit(self._run_warm, job)
        return self._executor.submit(run_program, job.program, job.tests, job.entry_point, job.setup, self.limits)

    def _run_warm(self, job: Job) -> ExecutionResult:
        box = getattr(self._local, "box", None)
        if box is None or not box.alive:
            box = self._local.box = WarmSandbox(self.limits)
            with self._lock:
                self._sandboxes = [b for b in self._sandboxes if b.alive] + [box]
                self.started += 1
        return box.run(job.program, job.tests, job.entry_point, job.setup)

    def resident(self, namespace: str) -> set[int]:
        """Pids (inside the sandbox) that belong to a live warm sandbox of this pool in ``namespace``: its init
        and resident process. Anything else still in that namespace after a run would be a leak (tests)."""
        with self._lock:
            return {p for b in self._sandboxes if b.alive and b.namespace == namespace for p in (1, b.pid_inside)}

    def map(self, jobs: Sequence[Job]) -> list[ExecutionResult | BaseException]:
        """Results in job order; a run that raised (``SandboxError``, ``TestsError``) is returned as its exception,
        so one infrastructure failure invalidates one sample, not the batch."""
        futures = [self.submit(job) for job in jobs]
        results: list[ExecutionResult | BaseException] = []
        for future in futures:
            error = future.exception()
            results.append(error if error is not None else future.result())
        return results

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            for box in self._sandboxes:
                box.close()
            self._sandboxes = []

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@functools.lru_cache(maxsize=8)
def shared_pool(limits: SandboxLimits, workers: int) -> SandboxPool:
    """A warm pool kept for the life of the process (one per limits and size), so a trainer scoring batch after
    batch starts its sandboxes once; closed at exit."""
    pool = SandboxPool(workers, limits, warm=True)
    atexit.register(pool.close)
    return pool


def run_many(jobs: Sequence[Job], limits: SandboxLimits | None = None,
             workers: int | None = None, warm: bool = False) -> list[ExecutionResult | BaseException]:
    """Run ``jobs`` concurrently; see ``SandboxPool.map``. ``warm``: on the process's shared warm pool
    (``shared_pool``), else on a temporary pool of cold runs."""
    if not jobs:
        return []
    if warm:
        return shared_pool(limits or SandboxLimits(), workers or default_workers()).map(jobs)
    with SandboxPool(min(workers or default_workers(), len(jobs)), limits) as pool:
        return pool.map(jobs)
