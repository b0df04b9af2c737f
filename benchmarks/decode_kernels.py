"""Two pieces of a decode step on this CPU, each against the form it replaced.

1. The matmuls: bf16 ``F.linear`` against pre-packed oneDNN weights (r1lab.rollout.packed_linear), on
   LlamaDecoder's shapes for SmolLM2-135M: fused q/k/v (960 x 576), o (576 x 576), fused gate/up (3072 x 576),
   down (576 x 1536) in each of 30 layers, and the 49,152-row LM head, at 64 rows (8 prompts x 8 samples).
   Prints microseconds per call and per decode step, and checks the outputs are bit-identical.
2. Sampling one token per row from (64, 49,152) bf16 logits at temperature 1, with EOS banned (min_new_tokens)
   and without: r1lab's ``next_tokens`` in the decode loop's kept buffer against the fresh-tensor form it
   replaced (fp32 copy, softmax, draw, log of the drawn probability).

    .venv/bin/python benchmarks/decode_kernels.py [--rows 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from machine import describe as describe_machine  # benchmarks/machine.py (the script's folder is on sys.path)
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.packed_linear import PackedLinear
from r1lab.rollout.sampling import next_tokens, sample_categorical

# (name, out features, in features, calls per decode step)
SHAPES = [("qkv", 960, 576, 30), ("o", 576, 576, 30), ("gate_up", 3072, 576, 30), ("down", 576, 1536, 30),
          ("lm head", 49152, 576, 1)]


def seconds_per_call(fn, min_seconds: float = 0.5) -> float:
    for _ in range(5):  # warm-up: oneDNN picks and caches its kernel on the first calls
        fn()
    calls, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < min_seconds or calls < 5:
        fn()
        calls += 1
    return elapsed / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=64, help="decode batch rows (default 64)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {describe_machine()}; {args.threads} threads; {args.rows} rows, bf16")
    gen = torch.Generator().manual_seed(0)
    total_plain = total_packed = 0.0
    for name, out_features, in_features, count in SHAPES:
        weight = (torch.randn(out_features, in_features, generator=gen) * 0.02).bfloat16()
        x = torch.randn(args.rows, in_features, generator=gen).bfloat16()
        packed = PackedLinear(weight, rows_hint=args.rows)
        if packed.packed is None:
            raise SystemExit("oneDNN bf16 packing does not apply on this machine/PyTorch build")
        same = torch.equal(packed(x), F.linear(x, weight))
        plain_s, packed_s = seconds_per_call(lambda: F.linear(x, weight)), seconds_per_call(lambda: packed(x))
        total_plain, total_packed = total_plain + count * plain_s, total_packed + count * packed_s
        print(f"{name:8s} {out_features:5d}x{in_features:<4d} F.linear {plain_s * 1e6:8.0f} us   packed "
              f"{packed_s * 1e6:8.0f} us   {plain_s / packed_s:4.2f}x   bit-identical: {same}")
    print(f"per decode step: F.linear {total_plain * 1e3:.1f} ms, packed {total_packed * 1e3:.1f} ms "
          f"({total_plain / total_packed:.2f}x)")
    sampling_step(args.rows, gen)


def _fresh_tensor_sampling(logits: torch.Tensor, banned: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The form next_tokens replaced: every (rows, V) intermediate a new tensor."""
    x = logits.float()
    if banned is not None:
        x = x.index_fill(1, banned, float("-inf"))
    probs = x.softmax(dim=-1)
    token = sample_categorical(probs)
    return token, probs.gather(1, token[:, None]).squeeze(1).log()


def sampling_step(rows: int, gen: torch.Generator) -> None:
    logits = (3 * torch.randn(rows, 49152, generator=gen)).bfloat16()
    sampling, scratch, eos = SamplingParams(temperature=1.0), torch.empty(rows, 49152), torch.tensor([2])
    for banned in (None, eos):
        fresh = seconds_per_call(lambda: _fresh_tensor_sampling(logits, banned))
        kept = seconds_per_call(lambda: next_tokens(logits, sampling, banned=banned, scratch=scratch))
        print(f"sampling {rows} rows, EOS {'banned' if banned is not None else 'allowed'}: fresh tensors "
              f"{fresh * 1e3:.2f} ms, next_tokens in a kept buffer {kept * 1e3:.2f} ms ({fresh / kept:.2f}x)")


if __name__ == "__main__":
    main()
