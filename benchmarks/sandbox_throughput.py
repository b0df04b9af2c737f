"""Sandboxed executions per second with N runs in parallel, over HumanEval's canonical solutions.

    .venv/bin/python benchmarks/sandbox_throughput.py [--modes warm,cold] [--workers 1,2,4] [--programs 164]
                                                      [--rounds 1]

Each execution is a full run as the ``code`` reward does it: the trusted harness, the program in its own process
with rlimits, and the problem's tests calling it through the harness. ``cold``: a fresh bubblewrap sandbox and
two interpreter start-ups per run; ``warm``: N resident sandboxes (started before the timing, start-up reported),
each run a fresh fork inside one, cleaned up after. Per-execution start-up = the host's wall time of a run minus
the time the program spent loading and answering the tests. Every result is checked (all canonical solutions
must pass), so a broken sandbox cannot post a number. Ends with one line ``executions/s: X`` (the best
configuration).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import datetime, timezone

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
    parser.add_argument("--modes", default="warm,cold", help="comma-separated: warm (resident sandboxes), cold")
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

    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    best, best_name = 0.0, ""
    configurations = [(mode, int(w)) for mode in args.modes.split(",") for w in args.workers.split(",")]
    for mode, workers in configurations:
        with SandboxPool(workers, limits, warm=mode == "warm") as pool:
            warm_start = time.perf_counter()
            pool.map(jobs[: 2 * workers])  # warm the page cache, the pool's threads (and start warm sandboxes)
            warm_start = time.perf_counter() - warm_start
            rates, latencies, startups = [], [], []
            cpu_before = sum(b.cpu_s for b in pool._sandboxes)
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
                startups += [r.wall_s - r.duration_s for r in results]
            restarted = pool.started - workers if pool.warm else 0
            cpu_ms = (sum(b.cpu_s for b in pool._sandboxes) - cpu_before) / (len(jobs) * args.rounds) * 1000
        rate = max(rates)
        if rate > best:
            best, best_name = rate, f"{mode} N={workers}"
        extra = (f"; CPU inside the sandboxes {cpu_ms:.1f} ms per execution; {workers} sandboxes started in "
                 f"{warm_start:.2f}s with their first runs") if mode == "warm" else ""
        print(f"{mode} N={workers}: {rate:6.1f} executions/s  (per run: median {statistics.median(latencies) * 1000:.1f} ms, "
              f"p95 {sorted(latencies)[int(0.95 * (len(latencies) - 1))] * 1000:.1f} ms; per-execution start-up: "
              f"median {statistics.median(startups) * 1000:.1f} ms{extra}"
              + (f"; {restarted} sandboxes replaced" if restarted else "") + ")")
    print(f"best: {best_name}")
    print(f"executions/s: {best:.1f}")


if __name__ == "__main__":
    main()
