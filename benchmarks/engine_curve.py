"""GRPO learning curves with each rollout engine: `r1lab grpo` on the same prompts, seed and settings with
``rollout.engine=native`` and ``=vllm``, compared as benchmarks/grpo_curve.py compares r1lab with TRL (mean reward
± SE over steps in the first and last third; the engines sample different completions, so the curves are
independent draws of one process and agree when their difference is within ~2 combined standard errors).

    .venv-vllm/bin/python benchmarks/engine_curve.py [--engines native,vllm] [--steps 16] [--set KEY=VALUE ...]

Run it from .venv-vllm (`make test-vllm` builds it). Writes benchmarks/results/engine_curve.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from grpo_curve import compare  # benchmarks/grpo_curve.py (the script's folder is on sys.path)
from machine import describe as describe_machine

RESULTS = Path(__file__).resolve().parent / "results"
# The demo's task on the embedded model at a CPU-sized budget; every engine gets exactly these.
SETTINGS = ["train.prompts_per_step=8", "rollout.group_size=8", "rollout.max_new_tokens=64", "eval.every=0",
            "log.progress=false", "log.tensorboard=false", "train.time_limit_minutes=0", "model.rollout_dtype=float32",
            "model.autocast=none", "task.seed=1234"]


def run_engine(engine: str, steps: int, extra: list[str], out: Path) -> list[dict]:
    sets = [f"rollout.engine={engine}", f"train.steps={steps}", f"log.output_dir={out}", *SETTINGS, *extra]
    proc = subprocess.run([sys.executable, "-m", "r1lab", "grpo", "configs/zero_cpu.yaml",
                           *[a for s in sets for a in ("--set", s)]], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{engine}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"reward/mean"' in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="native,vllm")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    engines = args.engines.split(",")
    records = {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in engines:
            records[engine] = run_engine(engine, args.steps, args.extra, Path(tmp) / engine)
    rewards = {e: [r["reward/mean"] for r in records[e]] for e in engines}
    rows = compare(rewards[engines[0]], rewards[engines[1]])
    a, b = engines[:2]
    lines = [f"machine: {describe_machine()}", f"settings: {SETTINGS + args.extra}, {args.steps} steps", "",
             f"| window | {a} reward | {b} reward | {a} - {b} | within 2 SE |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['window']} | {r['r1lab']:.3f} ± {r['r1lab_se']:.3f} | {r['trl']:.3f} ± {r['trl_se']:.3f} "
                     f"| {r['difference']:+.3f} ± {r['difference_se']:.3f} | {'yes' if r['within_2se'] else 'no'} |")
    for e in engines:
        steps = records[e]
        lines.append(f"{e}: mean s/step {sum(s['time/step_s'] for s in steps) / len(steps):.2f}, "
                     f"mean weight sync {sum(s.get('time/weight_sync_s') or 0 for s in steps) / len(steps):.3f} s, "
                     f"mean |log ratio| engine vs trainer "
                     f"{sum(s.get('rollout/abs_log_ratio') or 0 for s in steps) / len(steps):.2e}")
    lines += ["", "per-step reward: " + "; ".join(f"{e}: " + ", ".join(f"{x:.2f}" for x in rewards[e]) for e in engines)]
    text = "\n".join(lines)
    print(text)
    (RESULTS / "engine_curve.md").write_text(text + "\n")
    (RESULTS / "engine_curve.json").write_text(json.dumps({"settings": SETTINGS + args.extra, "records": records,
                                                           "comparison": rows}, indent=2))


if __name__ == "__main__":
    main()
