"""Data-parallel GRPO at 1 and N ranks on this machine (torchrun, gloo on CPU, nccl on CUDA), ddp and fsdp:
seconds per step, generated tokens/s and peak RSS of the largest process, on the same global batch; and the bytes
per parameter each rank holds.

On a 2-core CPU the ranks share two cores, so steps/s is a report of the overhead, not a speed-up. The model is
``--model`` (e.g. smollm2-135m; weights do not matter for throughput), else a random Llama built from a config
(hidden 256, 4 layers by default).

    .venv/bin/python benchmarks/scaling.py [--model NAME] [--ranks 1 2] [--parallel ddp fsdp] [--steps 4]
        [--hidden 256] [--layers 4] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import describe as describe_machine  # benchmarks/machine.py (the script's folder is on sys.path)

# fp32 master weights + fp32 gradients + AdamW's two fp32 moments: what a ddp rank keeps for every parameter
DDP_BYTES_PER_PARAM = 4 + 4 + 8


def build_model(folder: Path, hidden: int, layers: int) -> int:
    """A random Llama (r1lab's test model family, ``layers`` deep) with its tokenizer, as an HF folder."""
    from r1lab.models.tiny import save_tiny_model, tiny_model, tiny_tokenizer

    save_tiny_model(folder, seed=0, hidden=hidden)  # the tokenizer and generation config
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer, seed=0, hidden=hidden, layers=layers)
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    model.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def run_ranks(ranks: int, parallel: str, model: str, out: Path, steps: int) -> dict:
    sets = ["configs/zero_cpu.yaml", "--set", f"model.name={model}", "--set", f"train.parallel={parallel}", "--set", f"log.output_dir={out}",
            "--set", f"train.steps={steps}", "--set", "eval.every=0", "--set", "log.progress=false",
            "--set", "log.tensorboard=false", "--set", "train.prompts_per_step=8", "--set", "rollout.group_size=8",
            "--set", "rollout.max_new_tokens=64", "--set", "rollout.min_new_tokens=64", "--set", "model.device=cpu",
            "--set", "rewards.weights={accuracy: 1.0, tag_count: 1.0}", "--set", "train.time_limit_minutes=0",
            "--set", "prompt.system=", "--set", "prompt.instruction="]
    launcher = [sys.executable, "-m", "r1lab"] if ranks == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", "-m", "r1lab"]
    # each rank gets an equal share of the cores; /usr/bin/time -v reports the largest rank's peak RSS
    threads = max(1, (os.cpu_count() or 1) // ranks)
    proc = subprocess.run(["/usr/bin/time", "-v", *launcher, "grpo", *sets, "--set", f"train.threads={threads}"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    peak_kb = max(int(line.split()[-1]) for line in proc.stderr.splitlines() if "Maximum resident" in line)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = records[1:] or records  # the first step pays one-time set-up (kernel compilation, caches)
    step_s = sum(r["time/step_s"] for r in timed) / len(timed)
    tokens = sum(r["tokens/generated"] for r in timed) / len(timed)
    return {"ranks": ranks, "parallel": parallel, "threads_per_rank": threads, "step_s": step_s, "generated_tokens_per_s": tokens / step_s,
            "peak_rss_mb_largest_process": peak_kb / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model name r1lab loads (default: a random Llama of --hidden/--layers)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--parallel", nargs="+", default=["ddp", "fsdp"], help="wrappings to run at ranks > 1")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            from r1lab.models.loading import load_model

            model, params = args.model, sum(p.numel() for p in load_model(args.model).model.parameters())
        else:
            model, params = str(Path(tmp) / "model"), build_model(Path(tmp) / "model", args.hidden, args.layers)
        runs = [(r, p) for r in args.ranks for p in (["ddp"] if r == 1 else args.parallel)]
        rows = [run_ranks(r, p, model, Path(tmp) / f"run{r}{p}", args.steps) for r, p in runs]
    result = {"machine": describe_machine(), "params": params, "rows": rows,
              "ddp_bytes_per_param": DDP_BYTES_PER_PARAM,
              "ddp_gb_per_rank_8b_model": 8e9 * DDP_BYTES_PER_PARAM / 1e9}
    print(result["machine"])
    print(f"model: {params:,} parameters; global batch 8 prompts x 8 samples x 64 tokens")
    for row in rows:
        print(f"{row['ranks']} rank(s) {row['parallel'] if row['ranks'] > 1 else ''} x {row['threads_per_rank']} "
              f"thread(s): {row['step_s']:.2f} s/step, "
              f"{row['generated_tokens_per_s']:.0f} generated tok/s, peak RSS {row['peak_rss_mb_largest_process']:.0f} MB")
    print(f"ddp keeps {DDP_BYTES_PER_PARAM} bytes/parameter per rank before activations: "
          f"{result['ddp_gb_per_rank_8b_model']:.0f} GB per rank for an 8B model")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
