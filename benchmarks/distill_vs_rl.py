"""Distillation vs RL at the same wall-clock budget (the R1 report's Table 6 finding, at our scale).

    .venv/bin/python benchmarks/distill_vs_rl.py [--minutes 5] [--out runs/distill_vs_rl]

Four routes from SmolLM2-135M-Instruct (the embedded default), each given the same training time on this machine,
all measured by the same evaluator (`r1lab eval`, greedy, bf16 as the rollouts, the demo's 200 held-out problems, seed 1234, the demo's
prompt, at most 96 new tokens):

  (a) grpo       GRPO with the accuracy reward (the `r1lab zero` recipe, with rollouts of up to 48 tokens)
  (b) sft        SFT on verified teacher traces (rejection sampling of a fallible step-by-step teacher)
  (c) sft+grpo   SFT for half the time, then GRPO for the other half from the SFT model
  (d) journey    SFT on journey-learning data (wrong attempt, reflection, corrected path; half shortcut rows)

The teacher is r1lab's programmatic column-addition teacher with a 30% mistake rate (dropped carries, slips), so
rejection sampling has something to reject and journey learning has wrong paths to show. Every step is the real
CLI (`r1lab generate`, `filter`, `journey`, `sft`, `grpo`, `eval`), run one at a time. Ends by printing the table
(also written to OUT/results.json and OUT/results.md). The first call dequantises the embedded model (~40 s, once).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from machine import describe as describe_machine  # benchmarks/machine.py (the script's folder is on sys.path)

# The teacher's traces take ~35 tokens and a journey (wrong path, reflection, right path) ~80: every route is
# evaluated with room for either. GRPO rollouts get 48, room for a full trace, without tripling the step time.
EVAL_TOKENS = 96
GRPO_TOKENS = 48


def r1lab(*args: str, log: Path) -> float:
    """Run one r1lab command (its output to ``log``); return its wall-clock seconds. Stops the benchmark on error."""
    cmd = [str(Path(sys.executable).with_name("r1lab")), *args]
    start = time.monotonic()
    with open(log, "w") as fh:
        fh.write(" ".join(cmd) + "\n\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    took = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\nsee {log}")
    return took


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def last_step(run: Path) -> int:
    steps = [json.loads(line).get("step", 0) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    return max(steps, default=0)




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training minutes per route")
    parser.add_argument("--prompts", type=int, default=2000, help="training prompts the teacher answers")
    parser.add_argument("--k", type=int, default=4, help="teacher samples per prompt")
    parser.add_argument("--error-rate", type=float, default=0.3, help="the teacher's mistake rate")
    parser.add_argument("--sft-lr", type=float, default=5e-5, help="SFT learning rate (not tuned)")
    parser.add_argument("--out", default="runs/distill_vs_rl")
    parser.add_argument("--fresh", action="store_true", help="delete OUT first (else finished steps are reused)")
    args = parser.parse_args()

    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    data, logs = out / "data", out / "logs"
    data.mkdir(exist_ok=True)
    minutes, half = args.minutes, args.minutes / 2
    started = time.monotonic()
    print(f"machine: {describe_machine()}; {minutes:g} training minutes per route", flush=True)

    # 1. teacher traces, rejection sampling, journey data
    traces = data / "traces.jsonl"
    if not (data / "verified.jsonl").is_file():
        r1lab("generate", "--teacher", "program:arithmetic", "--task", "rg:basic_arithmetic", "--k", str(args.k),
              "--num-prompts", str(args.prompts), "--output", str(traces),
              *sets(f"teacher.error_rate={args.error_rate}", "output.progress=false"), log=logs / "generate.log")
        r1lab("filter", "--input", str(traces), "--output", str(data / "labelled.jsonl"),
              *sets("verify.keep_wrong=true"), log=logs / "filter_labelled.log")
        r1lab("journey", "--input", str(data / "labelled.jsonl"), "--output", str(data / "journey.jsonl"),
              log=logs / "journey.log")
        r1lab("filter", "--input", str(traces), "--output", str(data / "verified.jsonl"),
              *sets("max_per_prompt=1"), log=logs / "filter.log")
    counts = {name: sum(1 for _ in open(data / f"{name}.jsonl")) for name in ("labelled", "verified", "journey")}
    counts["traces"] = sum(1 for _ in open(traces))
    print(f"data: {counts['traces']} teacher traces -> {counts['verified']} verified (1 per prompt); "
          f"{counts['journey']} journey-learning rows", flush=True)

    grpo_common = sets(f"rollout.max_new_tokens={GRPO_TOKENS}", f"eval.max_new_tokens={EVAL_TOKENS}", "eval.every=0",
                       "train.steps=100000", "log.checkpoint_every=0", "log.progress=false")
    sft_common = sets(f"train.lr={args.sft_lr}", "train.schedule=constant", "train.epochs=100", "eval.every=0", "data.eval_size=0",
                      "log.checkpoint_every=0", "log.progress=false")

    def trained(name: str, command: list[str]) -> dict:
        run = out / name
        if not (run / "final" / "config.json").is_file():
            if run.exists():
                shutil.rmtree(run)
            r1lab(*command, *sets(f"log.output_dir={run}"), log=logs / f"{name}.log")
        return {"model": str(run / "final"), "steps": last_step(run)}

    routes: dict[str, dict] = {"base (no training)": {"model": "smollm2-135m", "steps": 0, "minutes": 0.0}}
    routes["(a) grpo"] = {**trained("grpo", ["zero", *grpo_common, *sets(f"train.time_limit_minutes={minutes}")]),
                          "minutes": minutes}
    routes["(b) sft on verified traces"] = {**trained("sft", ["sft", "--data", str(data / "verified.jsonl"),
                                                             *sft_common, *sets(f"train.time_limit_minutes={minutes}")]),
                                            "minutes": minutes}
    first = trained("sft_half", ["sft", "--data", str(data / "verified.jsonl"), *sft_common,
                                 *sets(f"train.time_limit_minutes={half}")])
    then = trained("sft_then_grpo", ["zero", *grpo_common, *sets(f"model.name={first['model']}",
                                                                 f"train.time_limit_minutes={half}")])
    routes["(c) sft then grpo"] = {"model": then["model"], "steps": f"{first['steps']} + {then['steps']}",
                                   "minutes": minutes}
    routes["(d) sft on journey data"] = {**trained("journey", ["sft", "--data", str(data / "journey.jsonl"),
                                                               *sft_common,
                                                               *sets(f"train.time_limit_minutes={minutes}")]),
                                         "minutes": minutes}

    # 2. one evaluator for every route
    rows = []
    for i, (route, info) in enumerate(routes.items()):
        folder = out / "eval" / f"route{i}"
        if not (folder / "results.json").is_file():
            r1lab("eval", info["model"], "--task", "rg:basic_arithmetic", "--n", "1", "--set", "model.dtype=bfloat16",
                  *sets("sampling.temperature=0", f"sampling.max_new_tokens={EVAL_TOKENS}", "metrics.ks=[1]",
                        f"log.output_dir={folder}", "log.progress=false"), log=logs / f"eval{i}.log")
        m = json.loads((folder / "results.json").read_text())["metrics"]
        rows.append({"route": route, "minutes": info["minutes"], "steps": info["steps"], "accuracy": m["pass@1"],
                     "extract_rate": m["extract_rate"], "mean_length": m["mean_length"]})

    header = "| route | training minutes | optimizer steps | held-out greedy accuracy (n=200) | mean response tokens |"
    lines = [header, "|---|---|---|---|---|"]
    lines += [f"| {r['route']} | {r['minutes']:g} | {r['steps']} | {r['accuracy']:.3f} | {r['mean_length']:.1f} |"
              for r in rows]
    table = "\n".join(lines)
    meta = {"machine": describe_machine(), "minutes_per_route": minutes, "data": counts,
            "teacher_error_rate": args.error_rate, "sft_lr": args.sft_lr, "eval_max_new_tokens": EVAL_TOKENS,
            "grpo_max_new_tokens": GRPO_TOKENS, "seconds_total": time.monotonic() - started}
    (out / "results.json").write_text(json.dumps({**meta, "routes": rows}, indent=2))
    (out / "results.md").write_text(table + "\n")
    print(f"total {meta['seconds_total'] / 60:.1f} min; results in {out}/results.json")
    print(table)


if __name__ == "__main__":
    main()
