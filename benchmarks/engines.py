"""The rollout engines side by side: the same generation work through native, hf and vllm in one run.

    .venv-vllm/bin/python benchmarks/engines.py [--model smollm2-135m] [--prompts 8] [--n 8] [--max-new-tokens 128]
        [--dtype auto] [--engines native,hf,vllm] [--repeats 3] [--threads 0] [--vllm-kv-cache-gb 0]

Run it from .venv-vllm (`make test-vllm` builds it), the environment that has all three; where vLLM is missing its
column reads n/a. Each engine runs in a child process of its own, so the peak RSS is that engine's (with the policy
it generates from) and what vLLM changes in its process touches nothing else.

The work: ``--prompts`` arithmetic questions through the model's chat template, ``--n`` samples each at temperature
1.0 with one seed per prompt, EOS suppressed to the end (min_new_tokens = max_new_tokens), so every engine
generates exactly prompts x n x max_new_tokens tokens. The policy is loaded in fp32 (the trainer's master weights)
and each engine generates in ``--dtype`` (auto: as GRPO's rollouts choose). Per engine:

- build_s: building the engine from the loaded policy (vLLM: saving it and loading it into vLLM);
- tokens/s: generated tokens / wall time of one generate call, the median of ``--repeats`` after one warm-up call;
- ttft_s: time to first token, the same batch with max_new_tokens=1 (prefill and one sampled token per sequence);
- sync_s: ``sync_weights`` after the policy's weights change, the median of ``--repeats``;
- peak_rss_gb: the child process's peak resident memory.

The last line reads ``tokens/s: native N1, hf N2, vllm N3``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from machine import describe as describe_machine  # benchmarks/machine.py (the script's folder is on sys.path)

ENGINES = ("native", "hf", "vllm")


def _prompts(tokenizer, count: int) -> list[str]:
    questions = [f"What is {17 + 7 * i} + {38 + 5 * i}? Answer with just the number." for i in range(count)]
    if getattr(tokenizer, "chat_template", None):
        return [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                              tokenize=False) for q in questions]
    return questions


def _load_policy(name: str):
    import torch

    if name == "tiny":  # a tiny random Llama built in code, for a seconds-long check that the script runs
        from r1lab.models.loading import prepare_tokenizer
        from r1lab.models.tiny import tiny_model, tiny_tokenizer

        tokenizer = tiny_tokenizer()
        prepare_tokenizer(tokenizer)
        policy = tiny_model(tokenizer, hidden=128)  # hidden 128: vLLM's CPU attention takes head sizes from 32
        policy.generation_config.eos_token_id = tokenizer.eos_token_id
        return policy, tokenizer
    from r1lab.models.loading import load_model

    loaded = load_model(name, dtype=torch.float32, device="cpu")
    return loaded.model, loaded.tokenizer


def run_child(args) -> dict:
    """One engine's measurements, in this (child) process."""
    import torch

    from r1lab.config import RolloutConfig
    from r1lab.models.precision import generation_dtype
    from r1lab.rollout.base import SamplingParams
    from r1lab.rollout.engines import build_engine

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            return {"engine": "vllm", "error": "vLLM is not installed in this environment"}
    policy, tokenizer = _load_policy(args.model)
    policy.requires_grad_(False)
    dtype = getattr(torch, generation_dtype("cpu", args.dtype))
    rollout = RolloutConfig(engine=args.child, batch_size=args.prompts * args.n, min_new_tokens=args.max_new_tokens,
                            max_new_tokens=args.max_new_tokens)
    rollout.vllm.kv_cache_gb = args.vllm_kv_cache_gb
    start = time.perf_counter()
    engine = build_engine(rollout, policy, tokenizer, dtype=dtype, seed=0)
    build_s = time.perf_counter() - start
    prompts = _prompts(tokenizer, args.prompts)
    seeds = list(range(args.prompts))
    work = SamplingParams(temperature=1.0, max_new_tokens=args.max_new_tokens)

    def timed(sampling: SamplingParams) -> tuple[float, int]:
        start = time.perf_counter()
        batch = engine.generate(prompts, n=args.n, sampling=sampling, seeds=seeds)
        return time.perf_counter() - start, int(batch.completion_mask.sum())

    timed(work)  # warm-up: kernels compiled and caches allocated on the first call
    runs = [timed(work) for _ in range(args.repeats)]
    tokens = runs[0][1]
    engine.min_new_tokens = 1  # one token per sequence: the prefill and the first sample
    ttft = statistics.median(timed(SamplingParams(temperature=1.0, max_new_tokens=1))[0]
                             for _ in range(args.repeats))
    syncs = []
    for _ in range(args.repeats):
        with torch.no_grad():  # a stand-in for an optimizer step: every weight moves
            for p in policy.parameters():
                p.mul_(1.0 - 1e-4)
        syncs.append(engine.sync_weights(policy))
    return {"engine": args.child, "dtype": str(dtype).removeprefix("torch."), "build_s": build_s,
            "tokens": tokens, "tokens_per_s": tokens / statistics.median(s for s, _ in runs), "ttft_s": ttft,
            "sync_s": statistics.median(syncs),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="a model name load_model takes, or tiny")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=8, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"))
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--vllm-kv-cache-gb", type=float, default=0.0,
                        help="vLLM's KV cache (rollout.vllm.kv_cache_gb; 0: auto, 2 GiB on CPU), counted in its RSS")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)  # one engine, in this process
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args)))
        return

    print(f"machine: {describe_machine()}")
    print(f"work: {args.prompts} prompts x {args.n} samples x {args.max_new_tokens} tokens, model {args.model}, "
          f"dtype {args.dtype}, {args.repeats} repeats")
    forwarded = [f"--model={args.model}", f"--prompts={args.prompts}", f"--n={args.n}", f"--dtype={args.dtype}",
                 f"--max-new-tokens={args.max_new_tokens}", f"--repeats={args.repeats}", f"--threads={args.threads}",
                 f"--vllm-kv-cache-gb={args.vllm_kv_cache_gb}"]
    results = {}
    for name in args.engines.split(","):
        proc = subprocess.run([sys.executable, __file__, f"--child={name}", *forwarded], capture_output=True,
                              text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        results[name] = json.loads(lines[-1]) if proc.returncode == 0 and lines else {
            "engine": name, "error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
        r = results[name]
        if "error" in r:
            print(f"{name:7s} n/a: {r['error']}")
        else:
            print(f"{name:7s} {r['dtype']:8s} build {r['build_s']:7.2f} s  {r['tokens_per_s']:9.1f} tok/s  "
                  f"ttft {r['ttft_s']:7.3f} s  sync {r['sync_s']:7.3f} s  peak RSS {r['peak_rss_gb']:5.2f} GB  "
                  f"({r['tokens']} tokens)")
    speeds = [f"{name} {results[name]['tokens_per_s']:.1f}" if "error" not in results[name] else f"{name} n/a"
              for name in results]
    print("tokens/s: " + ", ".join(speeds))


if __name__ == "__main__":
    main()
