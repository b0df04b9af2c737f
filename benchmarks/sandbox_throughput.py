"""Sandboxed executions per second with N runs in parallel, over HumanEval's canonical solutions.

    .venv/bin/python benchmarks/sandbox_throughput.py [--workers 1,2,4] [--programs 164] [--rounds 1]

Each execution is a full run as the ``code`` reward does it: a fresh bubblewrap sandbox, the trusted harness,
the program in its own interpreter with rlimits, and the problem's tests calling it through the harness. Every
result is checked (all canonical solutions must pass), so a broken sandbox cannot post a number. Ends with one
line ``sandboxed executions/s: X`` for the best N.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from r1lab.rewards.code import problem_of
from r1lab.sandbox import Job, SandboxLimits, SandboxPool, default_workers, sandbox_setup
from r1lab.tasks.code import humaneval_examples


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4", help="comma-separated pool sizes to measure")
    parser.add_argument("--programs", type=int, default=164, help="how many HumanEval problems (max 164)")
    parser.add_argument("--rounds", type=int, default=1, help="timed passes over the programs per pool size")
    args = parser.parse_args()

    setup = sandbox_setup()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores ({default_workers()} usable), "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"sandbox: {setup.version}, interpreter {setup.python}, bwrap run as "
          f"{'uid %d' % setup.run_as[0] if setup.run_as else 'this user'}, "
          f"missing hardening: {', '.join(setup.missing) or 'none'}")

    examples = humaneval_examples()[: args.programs]
    jobs = []
    for example in examples:
        tests, entry_point, prefix = problem_of(example)
        jobs.append(Job(example.meta["reference"], tests, entry_point, prefix))
    limits = SandboxLimits(time_limit=10.0)
    print(f"programs: {len(jobs)} HumanEval canonical solutions, {args.rounds} round(s) per pool size")

    best = 0.0
    for workers in [int(w) for w in args.workers.split(",")]:
        with SandboxPool(workers, limits) as pool:
            pool.map(jobs[: 2 * workers])  # warm the page cache and the pool's threads
            rates, latencies = [], []
            for _ in range(args.rounds):
                started = time.perf_counter()
                results = pool.map(jobs)
                elapsed = time.perf_counter() - started
                failures = [e.id for e, r in zip(examples, results) if isinstance(r, BaseException) or not r.all_passed]
                if failures:
                    raise SystemExit(f"{len(failures)} canonical solutions did not pass, e.g. {failures[:3]}: "
                                     f"{[r for r in results if isinstance(r, BaseException) or not r.all_passed][:1]}")
                rates.append(len(jobs) / elapsed)
                latencies += [r.wall_s for r in results]
        rate = max(rates)
        best = max(best, rate)
        print(f"N={workers}: {rate:6.1f} executions/s  (per run: median {statistics.median(latencies) * 1000:.0f} ms, "
              f"p95 {sorted(latencies)[int(0.95 * (len(latencies) - 1))] * 1000:.0f} ms)")
    print(f"sandboxed executions/s: {best:.1f}")


if __name__ == "__main__":
    main()
