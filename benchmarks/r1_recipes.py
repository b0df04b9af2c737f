"""The R1 report's comparison at our scale: R1-Zero style vs the full R1 pipeline vs distillation alone.

    .venv/bin/python benchmarks/r1_recipes.py [--only zero|pipeline|distill] [--fresh] [--out benchmarks/results]

Three recipes from SmolLM2-135M-Instruct (the embedded default), each one `r1lab pipeline` run whose own
evaluation (same 100 held-out two-term additions, greedy, bf16, 96 new tokens, same prompt) scores every model:

  zero      configs/r1zero_cpu.yaml   GRPO from the base model (the pipeline's stage 2 alone, no cold start), given
                                      the full pipeline's 32 training minutes; its in-training evaluation every 8
                                      steps gives the curve
  pipeline  configs/r1_cpu.yaml       cold-start SFT -> reasoning RL -> rejection sampling + general data -> SFT of
                                      the base model -> reward model -> RL for all scenarios
  distill   configs/distill_cpu.yaml  SFT of the base model on ~1,900 verified traces of the programmatic teacher

Each recipe runs in its config's own output_dir (runs/r1zero_cpu, runs/r1_cpu, runs/distill_cpu); a finished run is
read, not re-run (--fresh deletes it first), and an interrupted one continues (--resume). Run one at a time on an
otherwise idle machine: the training stages are time-boxed, so a busy CPU means fewer steps. Ends by printing the
table; writes OUT/r1_recipes.json, .md and .png (accuracy against cumulative training minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from machine import describe as describe_machine  # benchmarks/machine.py (the script's folder is on sys.path)

RECIPES = {  # name -> (config, what it is)
    "zero": ("configs/r1zero_cpu.yaml", "R1-Zero style: reasoning RL alone, from the base model"),
    "pipeline": ("configs/r1_cpu.yaml", "full R1 pipeline (5 stages)"),
    "distill": ("configs/distill_cpu.yaml", "distillation alone: SFT on teacher traces"),
}
TRAINING = ("sft", "grpo", "rm")


def output_dir(config: str) -> Path:
    return Path(yaml.safe_load(Path(config).read_text())["output_dir"])


def run_recipe(config: str, fresh: bool) -> float | None:
    """Run (or continue) one pipeline; returns its wall seconds, or None when a finished run was only read."""
    out = output_dir(config)
    if fresh and out.exists():
        shutil.rmtree(out)
    state = out / "pipeline_state.json"
    if (out / "summary.json").is_file() and state.is_file():
        stages = json.loads(state.read_text())["stages"]
        names = [s["name"] for s in yaml.safe_load(Path(config).read_text())["stages"]]
        if all(stages.get(n, {}).get("status") == "done" for n in names):
            return None
    cmd = [str(Path(sys.executable).with_name("r1lab")), "pipeline", config] + (["--resume"] if state.is_file() else [])
    print("$ " + " ".join(cmd), flush=True)
    start = time.monotonic()
    if subprocess.run(cmd).returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)} (fix the cause and run this again: the pipeline resumes)")
    return time.monotonic() - start


def recipe_row(name: str, config: str) -> dict:
    """The final model's evaluation, and where each model-producing stage sits in cumulative training time."""
    out = output_dir(config)
    state = json.loads((out / "pipeline_state.json").read_text())
    evals, stages = state["evals"], state["stages"]
    order = [s["name"] for s in yaml.safe_load(Path(config).read_text())["stages"]]
    points, train_s, wall_s = [("base", 0.0, evals["base"]["accuracy"])], 0.0, 0.0
    for stage in order:
        entry = stages[stage]
        wall_s += entry["duration_s"] + evals.get(stage, {}).get("duration_s", 0.0)
        if entry["kind"] in TRAINING:
            train_s += entry["duration_s"]
        if stage in evals:
            points.append((stage, train_s / 60, evals[stage]["accuracy"]))
    final = evals[[s for s in order if s in evals][-1]]
    acc, n = final["accuracy"], final["num_problems"]
    row = {"recipe": name, "config": config, "what": RECIPES[name][1], "accuracy": acc,
           "stderr": math.sqrt(acc * (1 - acc) / n), "num_problems": n, "format_rate": final.get("format_rate"),
           "mean_length": final["mean_length"], "base_accuracy": evals["base"]["accuracy"],
           "training_minutes": train_s / 60,
           "time_limit_minutes": sum(stages[s].get("time_limit_s") or 0 for s in order) / 60,
           "pipeline_minutes": wall_s / 60, "stage_points": points}
    if name == "zero":  # the RL run's own held-out evaluations along the way (same problems, greedy)
        metrics = out / "stages" / order[-1] / "metrics.jsonl"
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        curve, seconds = [], 0.0
        for r in rows:
            seconds = r.get("time/train_total_s", seconds)
            if "eval/greedy_accuracy" in r:
                curve.append((r["step"], seconds / 60, r["eval/greedy_accuracy"]))
        row["curve"] = curve
    return row


def table(rows: list[dict]) -> str:
    head = ("recipe", "held-out accuracy (± SE)", "format rate", "mean length", "training time limits, min",
            "training stages' wall time, min", "pipeline wall time, min")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        fmt_rate = "-" if r["format_rate"] is None else f"{r['format_rate']:.2f}"
        lines.append(f"| {r['what']} | {r['accuracy']:.3f} ± {r['stderr']:.3f} | {fmt_rate} | "
                     f"{r['mean_length']:.1f} | {r['time_limit_minutes']:.0f} | {r['training_minutes']:.1f} | "
                     f"{r['pipeline_minutes']:.1f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in rows:
        if r.get("curve"):  # one RL run: its own evaluations against its own training clock (evaluations excluded)
            xs, ys = [c[1] for c in r["curve"]], [c[2] for c in r["curve"]]
            ax.plot(xs, ys, marker=".", label=f"{r['what']} (in-training evaluation every 8 steps)")
            continue
        xs, ys = [p[1] for p in r["stage_points"]], [p[2] for p in r["stage_points"]]
        ax.plot(xs, ys, marker="o", label=r["what"])
        for stage, x, y in r["stage_points"][1:]:
            ax.annotate(stage, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("cumulative training minutes (stage wall time; the R1-Zero run: GRPO's training clock)")
    ax.set_ylabel("held-out accuracy (greedy, 100 problems)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(RECIPES), action="append", help="run only this recipe (repeatable)")
    parser.add_argument("--fresh", action="store_true", help="delete each recipe's run folder first")
    parser.add_argument("--out", default="benchmarks/results", help="where r1_recipes.{json,md,png} go")
    args = parser.parse_args()
    machine = describe_machine()
    print(f"machine: {machine}", flush=True)
    ran = {}
    for name in args.only or list(RECIPES):
        ran[name] = run_recipe(RECIPES[name][0], args.fresh)
    rows = [recipe_row(name, config) for name, (config, _) in RECIPES.items()
            if (output_dir(config) / "summary.json").is_file()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = table(rows)
    (out / "r1_recipes.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    (out / "r1_recipes.md").write_text(f"Machine: {machine}\n\n{text}\n")
    plot(rows, out / "r1_recipes.png")
    print(text)
    print(f"results in {out}/r1_recipes.{{json,md,png}}; wall seconds of the runs started now: "
          + ", ".join(f"{k} {'read' if v is None else f'{v:.0f}'}" for k, v in ran.items()))


if __name__ == "__main__":
    main()
