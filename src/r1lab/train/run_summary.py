"""What ``r1lab zero`` / ``r1lab grpo`` print at the end: the held-out evaluation before and after training as a
table (accuracy, format rate, response length), two held-out completions before and after, and the two closing
lines ``held-out accuracy: A -> B (n=...)`` and ``format rate: A -> B``. Reads only the run folder's records."""

from __future__ import annotations

import json
from pathlib import Path

ROWS = (("accuracy", "eval/greedy_accuracy", "{:.3f}"), ("format rate", "eval/format_rate", "{:.3f}"),
        ("mean length (tokens)", "eval/mean_length", "{:.1f}"), ("p90 length (tokens)", "eval/p90_length", "{:.0f}"),
        ("truncated", "eval/truncated_fraction", "{:.3f}"), ("reflection share", "eval/reflection_share", "{:.3f}"))


def _cell(record: dict, key: str, fmt: str) -> str:
    value = record.get(key)
    return "-" if value is None else fmt.format(value)


def _completions(run_dir: Path, step: int) -> list[dict]:
    path = run_dir / "eval" / f"step_{step}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _one_line(text: str, width: int = 150) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def summary_lines(run_dir: str | Path, before: dict, after: dict, n: int, examples: int = 2) -> list[str]:
    """The end-of-run report; ``before`` / ``after`` are the first and last evaluation records of metrics.jsonl."""
    run_dir = Path(run_dir)
    width = max(len(name) for name, _, _ in ROWS)
    lines = [f"{'held-out (greedy)':<{width}}  {'before':>8}  {'after':>8}   (step {before['step']} -> {after['step']})"]
    lines += [f"{name:<{width}}  {_cell(before, key, fmt):>8}  {_cell(after, key, fmt):>8}" for name, key, fmt in ROWS]
    first, last = _completions(run_dir, before["step"]), _completions(run_dir, after["step"])
    by_id = {r["id"]: r for r in last}
    shown = [r for r in first if r["id"] in by_id][:examples]
    for r in shown:
        lines.append(f"held-out problem {r['id']} (gold {r['gold']}):")
        for label, rec in (("before", r), ("after", by_id[r["id"]])):
            mark = "correct" if rec["correct"] else "wrong"
            lines.append(f"  {label} [{mark}, {rec['length']} tokens]: {_one_line(rec['completion'])}")
    lines.append(f"held-out accuracy: {before['eval/greedy_accuracy']:.3f} -> {after['eval/greedy_accuracy']:.3f} "
                 f"(n={n})")
    lines.append(f"format rate: {before['eval/format_rate']:.3f} -> {after['eval/format_rate']:.3f}")
    return lines
