"""Test-time scaling on the embedded default: accuracy against generated tokens for each inference method.

    .venv/bin/python benchmarks/test_time_scaling.py [--problems 100] [--n 8] [--model smollm2-135m]

Same model, same held-out problems (the `r1lab zero` demo task: rg:basic_arithmetic, two-term addition with 1- or
2-digit operands, seed 1234), same sampling (the R1 report's temperature 0.6, top-p 0.95), chat template with
the demo's system prompt, bf16 weights, at most 32 new tokens per call (a thinking budget or a search step may be
less). For each method and setting it measures accuracy (the task's verifier on the extracted answer) and mean
tokens generated per problem, then writes test_time_scaling.json and test_time_scaling.png (default folder:
benchmarks/results).

- direct / cot: one sample, asked for the number alone or to think step by step (Kojima et al. 2022);
- self-consistency (maj@k) and best-of-k with the verifier as an oracle (pass@k, an upper bound no deployable
  selector reaches) for k = 1..n, from one set of n direct samples (the evaluator's unbiased estimators; tokens =
  k x the mean response length);
- budget forcing (s1) at several thinking budgets, with and without "Wait" extensions;
- PRM-guided beam search and DVTS with the model itself as the step judge (P("Yes") that a step is correct).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from machine import describe as describe_machine  # benchmarks/machine.py (the script's folder is on sys.path)

DEMO_PARAMS = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2, "operators": ["+"],
               "allow_parentheses": False, "allow_negation": False}
SYSTEM, INSTRUCTION = "You are a helpful assistant.", "Answer with just the number."
COT = "Let's think step by step, then give the final answer."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--problems", type=int, default=100, help="held-out problems (seeded)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="longest response of one generation call")
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"),
                        help="generation dtype (bf16, as the demo's rollouts: about 2x faster on this CPU)")
    parser.add_argument("--n", type=int, default=8, help="samples per problem for maj@k / pass@k")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    import torch

    from r1lab.evals.generations import GenerationCache, generate_cached
    from r1lab.evals.metrics import summarize
    from r1lab.evals.runner import score_generations
    from r1lab.infer import METHODS, InferContext
    from r1lab.infer.generation import EngineGenerator
    from r1lab.infer.prm import JudgePRM
    from r1lab.models.loading import load_model
    from r1lab.models.templates import build_prompt
    from r1lab.rollout.base import SamplingParams
    from r1lab.rollout.native_engine import NativeEngine
    from r1lab.tasks import load_task

    torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    loaded = load_model(args.model, dtype=getattr(torch, args.dtype))
    tok = loaded.tokenizer
    engine = NativeEngine(loaded.model, tok, batch_size=64)
    task = load_task("rg:basic_arithmetic", DEMO_PARAMS, seed=1234, train_size=200, eval_size=args.problems)
    examples = task.eval
    extraction = ("answer_tag", "boxed", "last_number")
    rows: list[dict] = []
    print(f"model loaded in {time.monotonic() - t0:.1f} s; {len(examples)} problems; torch {torch.__version__}, "
          f"{args.threads} threads; {describe_machine()}")

    def render(example, instruction):
        return build_prompt(example, tok, "chat", SYSTEM, INSTRUCTION if instruction is None else instruction)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"model": args.model, "task": "rg:basic_arithmetic", "task_params": DEMO_PARAMS, "task_seed": 1234,
            "problems": len(examples), "sampling": {"temperature": 0.6, "top_p": 0.95,
                                                    "max_new_tokens": args.max_new_tokens},
            "dtype": args.dtype, "threads": args.threads, "torch": torch.__version__}

    def record(method: str, setting: str, accuracy: float, tokens: float, seconds: float, label: str = "") -> None:
        # binomial standard error over the problems (for maj@k / pass@k, an approximation: those average k-subsets)
        se = (accuracy * (1 - accuracy) / len(examples)) ** 0.5
        rows.append({"method": method, "setting": setting, "accuracy": accuracy, "se": se, "tokens": tokens,
                     "seconds": seconds, "label": label})
        # rewritten after every row, so a run cut short keeps what it measured
        (out / "test_time_scaling.json").write_text(json.dumps({**meta, "results": rows}, indent=2))
        print(f"{method:18s} {setting:28s} accuracy {accuracy:.3f} +- {se:.3f}  tokens/problem {tokens:7.1f}  ({seconds:.0f} s)",
              flush=True)

    # 1. n direct samples: maj@k (self-consistency) and pass@k (best-of-k with an oracle verifier)
    start = time.monotonic()
    sampling = SamplingParams(0.6, 0.95, 0, args.max_new_tokens)
    torch.manual_seed(0)
    prompts = [render(e, None) for e in examples]
    gens = generate_cached(prompts, args.n, sampling, GenerationCache(None, {}), lambda: engine, 64, 0, False)
    problems, _ = score_generations(task, examples, gens, list(extraction), ["wait"], 2)
    ks = [k for k in (1, 2, 4, 8, 16, 32) if k <= args.n]
    m = summarize(problems, ks)
    took = time.monotonic() - start
    for k in ks:
        record("self_consistency", f"maj@{k} (n={args.n} samples)", m[f"maj@{k}"], k * m["mean_length"], took, f"{k}")
    for k in ks:
        record("best_of_n_oracle", f"pass@{k}", m[f"pass@{k}"], k * m["mean_length"], took, f"{k}")

    # 2. the methods of r1lab.infer, one call each over all problems
    ctx = InferContext(generator=EngineGenerator(engine, tok), render=render, task=task,
                       sampling=sampling, extraction=extraction, tokenizer=tok,
                       model_name=args.model, prm=JudgePRM(loaded.model, tok))  # the model judges its own steps
    settings = [
        ("direct", "1 sample", {"instruction": INSTRUCTION}, ""),
        ("cot", "1 sample, 'think step by step'", {"instruction": COT}, ""),
        ("budget_forcing", "think <= 16 tokens", {"max_thinking_tokens": 16, "instruction": COT}, "16"),
        ("budget_forcing", "think <= 48 tokens", {"max_thinking_tokens": 48, "instruction": COT}, "48"),
        ("budget_forcing", "think <= 48, 2 x 'Wait'", {"max_thinking_tokens": 48, "num_waits": 2,
                                                         "instruction": COT}, "48+2 Wait"),
        # steps are lines of the direct answer ("2 + 3 = 5"); a 135M model's step-by-step text outruns any budget here
        ("beam_search", "2 beams x 2, judge PRM", {"beams": 2, "expand": 2, "max_steps": 3, "step_tokens": 32}, ""),
        ("dvts", "n=4 (2 subtrees x 2), judge PRM", {"n": 4, "expand": 2, "max_steps": 3, "step_tokens": 32}, ""),
    ]
    for name, setting, params, label in settings:
        start = time.monotonic()
        torch.manual_seed(0)
        answers = METHODS.get(name)(examples, ctx, params)
        accuracy = sum(ctx.score(a.answer, e) >= 1.0 for a, e in zip(answers, examples)) / len(examples)
        record(name, setting, accuracy, sum(a.tokens for a in answers) / len(answers), time.monotonic() - start, label)

    meta["seconds"] = time.monotonic() - t0
    (out / "test_time_scaling.json").write_text(json.dumps({**meta, "results": rows}, indent=2))
    plot(rows, out / "test_time_scaling.png", f"{args.model} on 2-term addition ({len(examples)} problems)")
    print(f"total {time.monotonic() - t0:.0f} s; wrote {out / 'test_time_scaling.json'} and .png")


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for method in dict.fromkeys(r["method"] for r in rows):
        points = sorted((r["tokens"], r["accuracy"], r.get("label", "")) for r in rows if r["method"] == method)
        xs, ys, _ = zip(*points)
        ax.plot(xs, ys, marker="o", linestyle="-" if len(points) > 1 else "none", label=method)
        for x, y, text in points:
            if text:  # k for the voting curves, the thinking budget for budget forcing
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("generated tokens per problem")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
