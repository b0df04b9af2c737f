"""The RL algorithms side by side: every method on the same task, budget and start, several seeds each.

    flock /tmp/r1lab-heavy.lock .venv/bin/python benchmarks/algorithms.py [--steps 5] [--seeds 0 1 2]
        [--tasks demo three_digit] [--methods grpo dapo_ds ...] [--out benchmarks/results/algorithms]

Each run is ``r1lab grpo configs/quick_cpu.yaml`` (train_grpo, in this process) from SmolLM2-135M-Instruct (the
embedded default) with the same rollout budget (train.prompts_per_step x rollout.group_size completions of at most rollout.max_new_tokens per
step, --steps steps) and two optimizer passes per batch (algo.num_iterations=2): with one pass every importance
ratio is 1 and ppo_clip, cispo and sapo take the same gradient. Held-out greedy accuracy is measured before step 1
and after the last step on the same task.eval_size problems. The table gives the mean over seeds ± the standard
error, the completions' tokens generated per step (dynamic sampling generates more per step), and wall seconds
of training. Finished runs are read from OUT/runs/ rather than re-run, so an interrupted benchmark continues.
Writes OUT.json, OUT.md and OUT.png (entropy and response length per step, mean over seeds).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import shutil
import statistics
import time
from pathlib import Path

from machine import describe as describe_machine  # benchmarks/machine.py (the script's folder is on sys.path)

# The quick recipe (chat template, "Answer with just the number.", accuracy on the last number, 16 new tokens): the
# held-out accuracy of the 135M model moves within a few steps there; the R1-Zero defaults need hundreds of tokens
BASE_CONFIG = "configs/quick_cpu.yaml"
TASKS = {  # name -> task overrides
    "demo": ["task.params={min_terms: 2, max_terms: 2, min_digits: 1, max_digits: 2, operators: ['+'], "
             "allow_parentheses: false, allow_negation: false}"],
    "three_digit": ["task.params={min_terms: 2, max_terms: 2, min_digits: 3, max_digits: 3, operators: ['+'], "
                    "allow_parentheses: false, allow_negation: false}"],
}
METHODS = {  # name -> (overrides, what it is)
    "grpo": ([], "GRPO: ppo_clip, group-normalised advantage"),
    "dapo_ds": (["algo.dynamic_sampling=true", "algo.dynamic_sampling_max_rounds=3", "algo.clip_high=0.28"],
                "DAPO: dynamic sampling (3 rounds) + clip-higher"),
    "gspo": (["algo.loss=gspo", "algo.clip_low=3e-4", "algo.clip_high=4e-4",
              "algo.loss_aggregation=seq_mean_token_mean"], "GSPO: sequence ratio, clip 3e-4/4e-4"),
    "cispo": (["algo.loss=cispo", "algo.clip_low=1.0", "algo.clip_high=0.28"], "CISPO: clipped IS weight, upper 1.28"),
    "sapo": (["algo.loss=sapo"], "SAPO: soft gate, tau 1.0/1.05"),
    "reinforce_pp": (["algo.advantage=reinforce_pp", "algo.kl_in=reward", "algo.beta=0.01"],
                     "REINFORCE++: global normalisation, k1 KL in the reward (beta 0.01)"),
    "ppo_gae": (["algo.advantage=gae", "critic.lam=0.95", "critic.lr=1e-5"], "PPO: critic + GAE (lambda 0.95)"),
}


LR = 3e-5


def base_overrides(steps: int, eval_size: int, max_new_tokens: int) -> list[str]:
    return ["train.prompts_per_step=4", "rollout.group_size=4", f"rollout.max_new_tokens={max_new_tokens}",
            f"eval.max_new_tokens={max_new_tokens}",
            f"train.steps={steps}", f"eval.every={steps}", "eval.sampled=false", f"task.eval_size={eval_size}",
            "task.train_size=2000", "algo.num_iterations=2", "train.micro_batch_size=16", f"train.lr={LR}",
            "train.time_limit_minutes=0", "log.progress=false", "log.tensorboard=false", "log.checkpoint_every=0",
            "log.samples_per_step=0"]


def run_one(out: Path, task: str, method: str, seed: int, steps: int, eval_size: int, max_new_tokens: int) -> dict:
    from r1lab.config import GRPOConfig, load_config
    from r1lab.train.grpo import train_grpo

    run_dir = out / "runs" / f"{task}-{method}-{seed}"
    done = run_dir / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    overrides = (base_overrides(steps, eval_size, max_new_tokens) + TASKS[task] + METHODS[method][0]
                 + [f"train.seed={seed}", f"task.seed={1234}", f"log.output_dir={run_dir}"])
    cfg = load_config(GRPOConfig, BASE_CONFIG, overrides)
    start = time.monotonic()
    train_grpo(cfg)
    wall = time.monotonic() - start
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/greedy_accuracy" in r]
    per_step = [r for r in records if r["step"] > 0]
    result = {"task": task, "method": method, "seed": seed, "overrides": overrides, "wall_s": wall,
              "train_s": per_step[-1]["time/train_total_s"],
              "acc_before": evals[0]["eval/greedy_accuracy"], "acc_after": evals[-1]["eval/greedy_accuracy"],
              # dynamic sampling: every round's tokens, discarded groups included
              "tokens_per_step": statistics.fmean(r.get("sampling/generated_tokens", r["tokens/generated"])
                                                  for r in per_step),
              "entropy": [r.get("policy/entropy") for r in per_step],
              "length": [r["completion/mean_length"] for r in per_step],
              "rounds": [r.get("sampling/rounds") for r in per_step]}
    done.write_text(json.dumps(result))
    for heavy in ("final", "checkpoints"):  # ~0.5-2 GB per run; the table needs only the metrics
        shutil.rmtree(run_dir / heavy, ignore_errors=True)
    return result


def mean_se(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def table(results: list[dict], tasks: list[str], methods: list[str]) -> list[str]:
    lines = ["| task | method | held-out acc. before | after (± SE) | change | tokens/step | train s/run | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    for task in tasks:
        for method in methods:
            rs = [r for r in results if r["task"] == task and r["method"] == method]
            if not rs:
                continue
            (b, _), (a, sa) = mean_se([r["acc_before"] for r in rs]), mean_se([r["acc_after"] for r in rs])
            d, sd = mean_se([r["acc_after"] - r["acc_before"] for r in rs])
            lines.append(f"| {task} | {method} | {b:.3f} | {a:.3f} ± {sa:.3f} | {d:+.3f} ± {sd:.3f} | "
                         f"{statistics.fmean(r['tokens_per_step'] for r in rs):.0f} | "
                         f"{statistics.fmean(r['train_s'] for r in rs):.0f} | {len(rs)} |")
    return lines


def plot(results: list[dict], tasks: list[str], methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 3.6 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        for col, (key, label) in enumerate((("entropy", "policy entropy (nats/token)"),
                                            ("length", "mean completion length (tokens)"))):
            ax = axes[row][col]
            for method in methods:
                rs = [r for r in results if r["task"] == task and r["method"] == method]
                if not rs:
                    continue
                n = min(len(r[key]) for r in rs)
                ys = [statistics.fmean(v for r in rs if (v := r[key][i]) is not None) if any(r[key][i] is not None for r in rs)
                      else float("nan") for i in range(n)]
                ax.plot(range(1, n + 1), ys, "-o", markersize=3, label=method)
            ax.set_title(f"{task}: {label}")
            ax.set_xlabel("step")
            if col == 1 and row == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-size", type=int, default=40)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--report-only", action="store_true",
                        help="write the table from the finished runs only (an interrupted benchmark's partial table)")
    parser.add_argument("--out", default="benchmarks/results/algorithms")
    args = parser.parse_args()
    out = Path(args.out)
    work = Path("runs/bench_algorithms")
    results = []
    for seed in args.seeds:  # seed-major: a cut-short benchmark still has every method at the first seeds
        for task in args.tasks:
            for method in args.methods:
                if args.report_only:
                    done = work / "runs" / f"{task}-{method}-{seed}" / "result.json"
                    if done.is_file():
                        results.append(json.loads(done.read_text()))
                    continue
                r = run_one(work, task, method, seed, args.steps, args.eval_size, args.max_new_tokens)
                results.append(r)
                print(f"{task} {method} seed {seed}: acc {r['acc_before']:.3f} -> {r['acc_after']:.3f}, "
                      f"{r['tokens_per_step']:.0f} tok/step, {r['train_s']:.0f} s", flush=True)
    command = ("flock /tmp/r1lab-heavy.lock .venv/bin/python benchmarks/algorithms.py --steps "
               f"{args.steps} --seeds {' '.join(map(str, args.seeds))} --eval-size {args.eval_size} "
               f"--max-new-tokens {args.max_new_tokens}")
    lines = [f"command: `{command}`", f"machine: {describe_machine()}",
             f"date: {datetime.date.today().isoformat()}", "",
             f"SmolLM2-135M-Instruct, {args.steps} steps x 4 prompts x 4 completions ({args.max_new_tokens} new tokens), "
             f"2 optimizer passes per batch, lr {LR}, {BASE_CONFIG}; held-out greedy accuracy on {args.eval_size} problems; "
             "mean over seeds ± SE.", ""] + table(results, args.tasks, args.methods)
    lines += ["", "methods: " + "; ".join(f"{m} = {METHODS[m][1]}" for m in args.methods)]
    text = "\n".join(lines)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.md").write_text(text + "\n")
    Path(f"{out}.json").write_text(json.dumps({"command": command, "machine": describe_machine(),
                                                "results": results}, indent=1))
    plot(results, args.tasks, args.methods, Path(f"{out}.png"))
    print(f"wrote {out}.md, {out}.json, {out}.png")


if __name__ == "__main__":
    main()
