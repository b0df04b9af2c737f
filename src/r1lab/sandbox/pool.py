"""Many sandboxed runs at once: a bounded pool (default: one run per usable core).

Each run is a bwrap process; the pool's threads only wait on them, so threads (not processes) are enough and
the caller's process holds no extra interpreter. ``SandboxPool.submit`` returns a future, so a trainer can hand
a batch to the pool and keep generating while it runs.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

from r1lab.sandbox.limits import SandboxLimits
from r1lab.sandbox.runner import ExecutionResult, run_program


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

    def __init__(self, workers: int | None = None, limits: SandboxLimits | None = None):
        self.workers = workers or default_workers()
        if self.workers < 1:
            raise ValueError(f"SandboxPool needs at least one worker, got {workers}")
        self.limits = limits or SandboxLimits()
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="r1lab-sandbox")

    def submit(self, job: Job) -> Future:
        return self._executor.submit(run_program, job.program, job.tests, job.entry_point, job.setup, self.limits)

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

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_many(jobs: Sequence[Job], limits: SandboxLimits | None = None,
             workers: int | None = None) -> list[ExecutionResult | BaseException]:
    """Run ``jobs`` concurrently on a temporary pool; see ``SandboxPool.map``."""
    if not jobs:
        return []
    with SandboxPool(min(workers or default_workers(), len(jobs)), limits) as pool:
        return pool.map(jobs)
