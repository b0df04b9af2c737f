"""This CPU's achieved matmul rate (GFLOP/s), fp32 and bf16, on the shapes of SmolLM2-135M's linear layers.

The physical limit of a GRPO step: a step does about 6*N FLOPs per trained token (forward + backward) and
2*N per generated token (forward only), N = parameter count (Kaplan et al. 2020, arXiv 2001.08361, sec. 2.1),
so model-FLOPs utilisation (MFU) = those FLOPs / step seconds / the matmul rate measured here.

    .venv/bin/python benchmarks/matmul_rate.py [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json

import torch

from machine import describe as describe_machine  # benchmarks/machine.py (the script's folder is on sys.path)
from r1lab.models.precision import matmul_rate

HIDDEN, INTERMEDIATE, KV, VOCAB, LAYERS_N = 576, 1536, 192, 49152, 30  # SmolLM2-135M (config.json; 3 KV heads x 64)
# (name, K, N, count in the model): y (M, N) = x (M, K) @ W (K, N); the projections of 30 decoder layers and the
# tied LM head.
LAYERS = [("q/o", HIDDEN, HIDDEN, 2 * LAYERS_N), ("k/v", HIDDEN, KV, 2 * LAYERS_N),
          ("up/gate", HIDDEN, INTERMEDIATE, 2 * LAYERS_N), ("down", INTERMEDIATE, HIDDEN, LAYERS_N),
          ("lm head", HIDDEN, VOCAB, 1)]
ROWS = {"decode (64 seqs)": 64, "train (4096 tokens)": 4096}


def measure(threads: int | None = None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    out = {"machine": describe_machine(), "threads": torch.get_num_threads(), "torch": torch.__version__, "rows": {}}
    for label, M in ROWS.items():
        for dtype in (torch.float32, torch.bfloat16):
            # r1lab's own probe (the one `auto` precision uses), timed over 0.5 s per shape
            per_layer = {name: matmul_rate(M, dtype, K, N, min_seconds=0.5) for name, K, N, _ in LAYERS}
            # FLOP-weighted harmonic mean over the model's matmuls = the rate a forward pass would see
            flops = {name: K * N * count for name, K, N, count in LAYERS}
            model_rate = sum(flops.values()) / sum(flops[n] / per_layer[n] for n in per_layer)
            out["rows"][f"{label} {str(dtype).removeprefix('torch.')}"] = {"per_layer": per_layer, "model": model_rate}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    result = measure(args.threads)
    print(f"{result['machine']}\ntorch {result['torch']}, {result['threads']} threads; GFLOP/s of torch.matmul")
    for label, row in result["rows"].items():
        layers = "  ".join(f"{n} {r:7.1f}" for n, r in row["per_layer"].items())
        print(f"{label:28s} model-weighted {row['model']:7.1f}   ({layers})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
