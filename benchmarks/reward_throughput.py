"""Rewards per second: 512 math completions through the ``math`` reward (math-verify in its worker pool), and
128 code completions through the ``code`` reward (sandboxed tests) when that reward is registered.

    .venv/bin/python benchmarks/reward_throughput.py [--workers 1,2] [--timeout 5]

The math completions are a realistic mix with known labels: boxed LaTeX (right and wrong), plain final numbers,
R1-format ``<think>/<answer>`` replies, long chains of thought (3-12k characters, hundreds of intermediate
expressions) and truncated replies with no final answer. Each labelled score is checked, so a fast wrong
verifier cannot post a number. Timings are wall-clock for whole batches with warm workers (pool start-up and
warm-up are reported separately: training pays them once). The CPU time per reward is printed too: on a shared machine it
is the steadier number (rewards/s on N free cores is about N / CPU per reward).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import sys
import time
from importlib import metadata

from r1lab.rewards import REWARDS, RewardContext
from r1lab.rewards.mathcheck import default_workers, shared_pool
from r1lab.types import Example

from machine import describe as describe_machine  # benchmarks/machine.py (the script's folder is on sys.path)


def _problem(rng: random.Random) -> tuple[str, list[str], list[str]]:
    """(gold, right answers as a model may write them, wrong answers) for one random problem."""
    kind = rng.randrange(8)
    if kind == 0:  # integer, possibly negative or with thousands
        n = rng.choice([rng.randint(-99, -1), rng.randint(2, 999), rng.randint(1000, 99999)])
        rights = [str(n), f"{n}.0", rf"\text{{{n}}}"] + ([f"{n:,}"] if abs(n) >= 1000 else [])
        return str(n), rights, [str(n + 1), str(n - 10), str(-n)]
    if kind == 1:  # fraction in lowest terms
        b = rng.choice([3, 4, 5, 7, 8, 9, 11, 16])
        a = rng.choice([k for k in range(1, b) if math.gcd(k, b) == 1])
        rights = [rf"\frac{{{a}}}{{{b}}}", rf"\dfrac{{{2 * a}}}{{{2 * b}}}", f"{a}/{b}"]
        wrongs = [rf"\frac{{{b}}}{{{a}}}", rf"\frac{{{a + 1}}}{{{b}}}", f"{a / b + 0.01:.2f}"]
        return rf"\frac{{{a}}}{{{b}}}", rights, wrongs
    if kind == 2:  # surd
        k, m = rng.randint(2, 9), rng.choice([2, 3, 5, 7])
        rights = [rf"{k}\sqrt{{{m}}}", rf"\sqrt{{{k * k * m}}}"]
        return rf"{k}\sqrt{{{m}}}", rights, [rf"{k + 1}\sqrt{{{m}}}", rf"{k}\sqrt{{{m + 4}}}"]
    if kind == 3:  # half-open interval
        a, b = sorted(rng.sample(range(-20, 20), 2))
        return f"({a}, {b}]", [f"({a}, {b}]", f"({a},{b}]"], [f"[{a}, {b}]", f"({a}, {b})", f"({a}, {b + 1}]"]
    if kind == 4:  # mixed number
        w, q = rng.randint(1, 9), rng.choice([2, 4, 5, 8])
        p = rng.choice([k for k in range(1, q) if math.gcd(k, q) == 1])
        rights = [rf"{w}\frac{{{p}}}{{{q}}}", rf"\frac{{{w * q + p}}}{{{q}}}", f"{w + p / q:g}"]
        return rf"{w}\frac{{{p}}}{{{q}}}", rights, [rf"\frac{{{p}}}{{{q}}}", str(w), f"{w + 1 + p / q:g}"]
    if kind == 5:  # percentage
        pct = rng.randint(1, 99)
        return rf"{pct}\%", [rf"{pct}\%", str(pct), f"{pct / 100:g}"], [rf"{pct + 5}\%", str(pct + 1)]
    if kind == 6:  # polynomial
        k = rng.randint(1, 9)
        return f"x^2 - {k * k}", [f"(x-{k})(x+{k})", f"x^2-{k * k}"], [f"(x-{k})^2", f"x^2+{k * k}"]
    c = rng.randint(2, 9)  # a formula with constants
    return rf"{c}\pi r^2", [rf"{c}\pi r^2", rf"{c} r^2 \pi"], [rf"{2 * c}\pi r", rf"{c + 1}\pi r^2"]


FILLER = [
    "Let me think about this carefully.", "Wait, let me double-check that step.", "So far so good.",
    "Hmm, that does not look right; let me redo it.", "Now I combine the two results.",
]


def _chain_of_thought(rng: random.Random, chars: int) -> str:
    """Reasoning text with many intermediate expressions in $...$ and bare numbers, like an R1-style trace."""
    lines, value, step = [], rng.randint(2, 50), 0
    while sum(len(x) for x in lines) < chars:
        step += 1
        a, b = rng.randint(2, 99), rng.randint(2, 9)
        kind = rng.random()
        if kind < 0.4:
            lines.append(f"Step {step}: we have $a_{{{step}}} = {value} + {a} = {value + a}$.")
            value += a
        elif kind < 0.7:
            lines.append(f"Then $\\frac{{{value}}}{{{b}}} \\approx {value / b:.3f}$, so the remainder is {value % b}.")
        elif kind < 0.85:
            lines.append(f"Check: ${a}^2 = {a * a}$ and $\\sqrt{{{a * a}}} = {a}$.")
        else:
            lines.append(rng.choice(FILLER))
    return "\n".join(lines)


def math_batch(prompts: int = 64, group: int = 8, seed: int = 0) -> tuple[list[str], list[Example], list[float | None]]:
    """A GRPO-shaped batch: ``group`` completions for each of ``prompts`` problems, their examples and the
    expected score (None where the completion has no answer)."""
    rng = random.Random(seed)
    completions, examples, expected = [], [], []
    for i in range(prompts):
        gold, rights, wrongs = _problem(rng)
        for j in range(group):
            correct = rng.random() < 0.5
            answer = rng.choice(rights if correct else wrongs)
            kind = rng.random()
            if kind < 0.25:  # short boxed LaTeX
                text = f"Combining the cases, the result is $\\boxed{{{answer}}}$."
            elif kind < 0.40:  # a plain final number, no box (LaTeX answers stay boxed)
                if re.fullmatch(r"-?[\d.,]+", answer):
                    text = f"Adding everything up, the final answer is {answer}"
                else:
                    text = f"Therefore the answer is $\\boxed{{{answer}}}$."
            elif kind < 0.60:  # R1-format reply
                text = f"<think>{_chain_of_thought(rng, 600)}</think>\n<answer>{answer}</answer>"
            elif kind < 0.90:  # long chain of thought ending in a box
                text = f"{_chain_of_thought(rng, rng.randint(3000, 12000))}\nSo the answer is $\\boxed{{{answer}}}$."
            else:  # truncated: the generation hit its length limit before answering
                text, correct = _chain_of_thought(rng, rng.randint(3000, 12000)), None
            completions.append(text)
            examples.append(Example(id=f"p{i}", answer=gold, prompt=f"problem {i}"))
            expected.append(None if correct is None else float(correct))
    return completions, examples, expected




def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (Linux /proc), to report cost independent of other load."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def bench_math(workers_list: list[int], timeout: float) -> None:
    completions, examples, expected = math_batch(64, 8)
    chars = sum(len(c) for c in completions)
    print(f"math: 512 completions (64 prompts x 8), {chars / 1e6:.2f} M characters, "
          f"{sum(e is not None for e in expected)} labelled ({sum(e == 1.0 for e in expected)} right)")
    reward = REWARDS.get("math")
    for workers in workers_list:
        ctx = RewardContext(task=None, params={"math": {"workers": workers, "timeout": timeout}})
        # Pool start-up and each worker's first use of sympy's code paths are paid once per training run: a
        # warm-up batch of other problems (a different seed, so no answer is already cached) takes them.
        start = time.perf_counter()
        warm_completions, warm_examples, _ = math_batch(8 * workers, 8, seed=1)
        reward(warm_completions, warm_examples, ctx)
        startup = time.perf_counter() - start
        pool = shared_pool(workers, timeout)
        cpu_workers, cpu_caller = _cpu_seconds(pool.pids), time.process_time()
        start = time.perf_counter()
        scores = reward(completions, examples, ctx)
        elapsed = time.perf_counter() - start
        cpu_workers, cpu_caller = _cpu_seconds(pool.pids) - cpu_workers, time.process_time() - cpu_caller
        errors = [s for s in scores if isinstance(s, BaseException)]
        wrong = sum(1 for s, e in zip(scores, expected) if e is not None and s != e)
        print(f"  workers={workers}: start + warm-up {startup:.2f} s; 512 in {elapsed:.2f} s -> "
              f"math rewards/s: {512 / elapsed:.1f}; errors {len(errors)}; labelled mismatches {wrong}; "
              f"CPU per reward {1000 * cpu_workers / 512:.1f} ms in workers + {1000 * cpu_caller / 512:.2f} ms "
              f"in the caller (restarts {pool.restarts})")
        pool.close()


def code_batch(n: int, seed: int = 0) -> tuple[list[str], list[Example], list[bool]]:
    """HumanEval problems: half the reference solution, a quarter a stub returning None (fails its tests),
    an eighth a syntax error, an eighth prose with no code."""
    from r1lab.tasks import load_task

    task = load_task("humaneval", seed=seed, eval_size=20)
    problems = task.train + task.eval
    rng = random.Random(seed)
    completions, examples, is_reference = [], [], []
    for i in range(n):
        example = problems[i % len(problems)]
        kind = rng.random()
        is_reference.append(kind < 0.5)
        if kind < 0.5:
            text = f"Here is the function.\n```python\n{example.answer}```"
        elif kind < 0.75:
            text = f"```python\n{example.meta['setup']}    return None\n```"
        elif kind < 0.875:
            text = f"```python\n{example.meta['setup']}    return (\n```"
        else:
            text = "I am not sure how to solve this one."
        completions.append(text)
        examples.append(example)
    return completions, examples, is_reference


def bench_code() -> None:
    if "code" not in REWARDS:
        print("code: code reward not available (no reward named 'code' is registered)")
        return
    try:
        completions, examples, is_reference = code_batch(128)
        reward = REWARDS.get("code")
        ctx = RewardContext(task=None)
        start = time.perf_counter()
        scores = reward(completions, examples, ctx)
        elapsed = time.perf_counter() - start
    except Exception as err:  # noqa: BLE001 - report why, the math numbers above still stand
        print(f"code: code reward not available: {type(err).__name__}: {err}")
        return
    errors = [s for s in scores if isinstance(s, BaseException)]
    full = [not isinstance(s, BaseException) and s >= 1.0 for s in scores]
    mismatches = sum(f != r for f, r in zip(full, is_reference))  # only the reference solutions may pass
    print(f"code: 128 completions ({sum(is_reference)} reference solutions) in {elapsed:.2f} s -> code rewards/s: "
          f"{128 / elapsed:.1f}; full passes {sum(full)}; labelled mismatches {mismatches}; errors {len(errors)}"
          + (f" (first: {errors[0]})" if errors else ""))


def bench_shaping() -> None:
    """The shaping rewards (per completion, in the caller's process) on the 512 math completions: lengths come
    from the rollout (``token_lengths``, as the trainer passes them), so no tokenizer runs here."""
    from r1lab.rewards import score_batch

    completions, examples, _ = math_batch(64, 8)
    lengths = [len(c) // 4 for c in completions]  # about 4 characters per token
    ctx = RewardContext(task=None, max_new_tokens=4096)
    for name in ("language_consistency", "repetition", "soft_overlong"):
        start = time.perf_counter()
        results = score_batch(completions, examples, {name: 1.0}, ctx, token_lengths=lengths)
        elapsed = time.perf_counter() - start
        invalid = sum(not r.valid for r in results)
        print(f"  {name}: 512 in {elapsed:.3f} s -> {512 / elapsed:.0f} rewards/s; invalid {invalid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default=f"1,{default_workers()}", help="comma-separated math pool sizes")
    parser.add_argument("--timeout", type=float, default=5.0, help="math-verify seconds per item")
    args = parser.parse_args()
    workers_list = sorted({int(w) for w in args.workers.split(",")})
    print(f"machine: {describe_machine()}")
    print(f"math-verify {metadata.version('math-verify')}, sympy {metadata.version('sympy')}")
    bench_math(workers_list, args.timeout)
    print("shaping (one process):")
    bench_shaping()
    bench_code()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
