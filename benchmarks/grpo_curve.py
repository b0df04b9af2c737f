"""Learning curves, r1lab against TRL: reward against step on the same prompts, seed and settings.

Speed must not come from cutting corners, so the two trainers' reward curves should agree within sampling noise.
This reads the per-step rewards that ``grpo_vs_trl.py`` records for each side (run it with ``--tag``), plots
them with a 4-step rolling mean, and compares the two sides' mean reward over the first and the last third of
the steps (standard errors over steps; the two curves sample different completions, so they are independent
draws of the same process and agree when their difference is within ~2 combined standard errors).

    .venv/bin/python benchmarks/grpo_vs_trl.py --tag _curve_fp32_nonamx --steps 24 --warmup 0 --trl-bf16 off \\
        --set rollout.max_new_tokens=64 --set task.seed=1234 --set 'task.params={...}'
    .venv/bin/python benchmarks/grpo_curve.py --tag _curve_fp32_nonamx

Writes benchmarks/results/grpo<TAG>.{md,png}, e.g. grpo_curve_fp32_nonamx.{md,png} (``--out NAME`` for another
name). Name the tag after what the comparison holds fixed (precision, machine), so several comparisons coexist.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _rewards(tag: str, side: str) -> tuple[list[float], dict]:
    path = RESULTS / f"grpo_vs_trl_{side}{tag}.json"
    if not path.is_file():
        raise SystemExit(f"{path} missing: run benchmarks/grpo_vs_trl.py --tag {tag} first")
    raw = json.loads(path.read_text())
    return [float(s["reward"]) for s in raw["steps"]], raw


def _mean_se(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def compare(r1lab: list[float], trl: list[float]) -> list[dict]:
    """Mean reward (± SE over steps) of each side over the first and last third of the common steps."""
    n = min(len(r1lab), len(trl))
    third = max(n // 3, 2)
    rows = []
    for name, sl in (("first third", slice(0, third)), ("last third", slice(n - third, n))):
        (a, sa), (b, sb) = _mean_se(r1lab[sl]), _mean_se(trl[sl])
        diff, se = a - b, math.sqrt(sa ** 2 + sb ** 2)
        rows.append({"window": f"{name} (steps {sl.start + 1}-{sl.stop})", "r1lab": a, "r1lab_se": sa, "trl": b,
                     "trl_se": sb, "difference": diff, "difference_se": se, "within_2se": abs(diff) <= 2 * se})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", required=True, help="the --tag the grpo_vs_trl.py run used, e.g. _curve_fp32_nonamx")
    parser.add_argument("--trl-tag", default=None,
                        help="TRL's side from a run with another tag (default: --tag), when the two sides were run "
                             "separately (same prompts, seed and settings)")
    parser.add_argument("--out", default=None,
                        help="file stem under benchmarks/results for the table (.md) and plot (.png); default "
                             "grpo<TAG>")
    args = parser.parse_args()
    args.out = args.out or f"grpo{args.tag}"
    trl_tag = args.trl_tag or args.tag
    r1lab, raw_r = _rewards(args.tag, "r1lab")
    trl, raw_t = _rewards(trl_tag, "trl")
    rows = compare(r1lab, trl)
    lines = [f"r1lab run: tag {args.tag}, overrides {raw_r['config'].get('overrides')}; TRL run: tag {trl_tag}, "
             f"config {raw_t['config']}", "",
             "| window | r1lab reward | TRL reward | r1lab - TRL | within 2 SE |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['window']} | {r['r1lab']:.3f} ± {r['r1lab_se']:.3f} | {r['trl']:.3f} ± {r['trl_se']:.3f} "
                     f"| {r['difference']:+.3f} ± {r['difference_se']:.3f} | {'yes' if r['within_2se'] else 'no'} |")
    lines += ["", "per-step reward (r1lab, TRL): " + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(r1lab, trl))]
    text = "\n".join(lines)
    print(text)
    table, plot = RESULTS / f"{args.out}.md", RESULTS / f"{args.out}.png"
    table.write_text(text + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, ys, color in (("r1lab", r1lab, "tab:blue"), ("TRL GRPOTrainer", trl, "tab:orange")):
        steps = list(range(1, len(ys) + 1))
        ax.plot(steps, ys, "o", color=color, alpha=0.35, markersize=4)
        rolling = [statistics.fmean(ys[max(0, i - 3) : i + 1]) for i in range(len(ys))]
        ax.plot(steps, rolling, "-", color=color, label=f"{name} (4-step mean)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("mean reward of the step's 64 completions")
    ax.set_title("GRPO learning curves, same prompts and seed")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plot, dpi=120)
    print(f"wrote {table} and {plot}")


if __name__ == "__main__":
    main()
