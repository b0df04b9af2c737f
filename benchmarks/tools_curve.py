"""With and without the Python tool at equal wall time: `r1lab grpo configs/tools_cpu.yaml` (multi-turn rollouts,
the sandboxed python tool) against the same task, model, seed and budget with tools.enabled=false and a
think-then-answer prompt, each for ``--minutes`` of training time (generation + scoring + updates; the held-out
evaluations before and after are not counted). Reports the held-out greedy accuracy before and after, and per
step the reward, the tool-call rate, the tool error rate and the transcript length.

    flock /tmp/r1lab-heavy.lock .venv/bin/python benchmarks/tools_curve.py [--minutes 3] [--eval-size 30]

Writes benchmarks/results/tools_curve.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from machine import describe as describe_machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CONFIG = str(ROOT / "configs" / "tools_cpu.yaml")
NO_TOOLS = ["tools.enabled=false", "prompt.prefill=",
            "prompt.system=You are a helpful assistant. Think step by step, then give the final answer inside "
            "<answer> </answer>."]


def run_arm(name: str, minutes: float, eval_size: int, extra: list[str], out: Path) -> list[dict]:
    settings = [f"train.time_limit_minutes={minutes}", "train.steps=1000", "eval.every=100000",
                f"task.eval_size={eval_size}", "log.progress=false", "log.tensorboard=false", "train.threads=2",
                f"log.output_dir={out}", *extra]
    command = [sys.executable, "-m", "r1lab.cli", "grpo", CONFIG] + [a for s in settings for a in ("--set", s)]
    print(f"[{name}] {' '.join(command[3:])}", flush=True)
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"[{name}] failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def summary(records: list[dict]) -> dict:
    steps = [r for r in records if r.get("step", 0) > 0 and "reward/mean" in r]
    evals = [r for r in records if "eval/greedy_accuracy" in r]
    third = max(1, len(steps) // 3)

    def mean(key, rows):
        values = [r[key] for r in rows if r.get(key) is not None]
        return statistics.fmean(values) if values else None

    return {"steps": len(steps), "train_seconds": steps[-1]["time/train_total_s"] if steps else 0.0,
            "eval_before": evals[0]["eval/greedy_accuracy"] if evals else None,
            "eval_after": evals[-1]["eval/greedy_accuracy"] if len(evals) > 1 else None,
            "reward_first_third": mean("reward/mean", steps[:third]), "reward_last_third": mean("reward/mean", steps[-third:]),
            "call_rate_first_third": mean("tools/call_rate", steps[:third]),
            "call_rate_last_third": mean("tools/call_rate", steps[-third:]),
            "error_rate_first_third": mean("tools/error_rate", steps[:third]),
            "error_rate_last_third": mean("tools/error_rate", steps[-third:]),
            "curve": [{k: r.get(k) for k in ("step", "reward/mean", "tools/call_rate", "tools/error_rate",
                                             "tools/calls_per_sample", "completion/mean_length")}
                      for r in steps]}


def fmt(value, digits=3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="training minutes per arm")
    parser.add_argument("--eval-size", type=int, default=30, help="held-out problems (greedy, before and after)")
    args = parser.parse_args()
    machine, date = describe_machine(), f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    print(f"machine: {machine}\ndate: {date}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("with tools", []), ("without tools", NO_TOOLS)):
            results[name] = summary(run_arm(name, args.minutes, args.eval_size, extra, Path(tmp) / name.replace(" ", "_")))
    lines = [f"Machine: {machine}. Date: {date}. Command: `flock /tmp/r1lab-heavy.lock .venv/bin/python "
             f"benchmarks/tools_curve.py --minutes {args.minutes:g} --eval-size {args.eval_size}`.", "",
             "| arm | steps | held-out accuracy before -> after | reward, first -> last third | tool-call rate, "
             "first -> last third | tool error rate, first -> last third |", "|---|---|---|---|---|---|"]
    for name, s in results.items():
        lines.append(f"| {name} | {s['steps']} ({s['train_seconds']:.0f} s) | {fmt(s['eval_before'])} -> "
                     f"{fmt(s['eval_after'])} | {fmt(s['reward_first_third'])} -> {fmt(s['reward_last_third'])} | "
                     f"{fmt(s['call_rate_first_third'])} -> {fmt(s['call_rate_last_third'])} | "
                     f"{fmt(s['error_rate_first_third'])} -> {fmt(s['error_rate_last_third'])} |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tools_curve.json").write_text(json.dumps({"machine": machine, "date": date, "minutes": args.minutes,
                                                          "eval_size": args.eval_size, "arms": results}, indent=1))
    (RESULTS / "tools_curve.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
