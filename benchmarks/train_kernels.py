"""Pieces of a GRPO training step on this CPU, each against the plain form.

1. One layer's attention, forward + backward, at GRPO's shapes for SmolLM2-135M (16 sequences, 127 queries over
   167 keys, 9 query / 3 key-value heads, head dim 64, bf16, a causal + left-padding mask): r1lab's grouped-query
   eager attention (r1lab.algos.gqa_attention) against transformers' ``eager_attention_forward``.
2. One AdamW step over SmolLM2-135M's parameters: the fused kernel (r1lab.train.optim) against ``foreach``; and
   over the same parameters in bf16, r1lab's LowPrecisionAdamW (fp32 moments; stochastic rounding, Kahan) against
   torch's fused AdamW on bf16 (bf16 moments, every update rounded to nearest: what bf16 alone would do).
3. Making one LM-head tile (1,024 x 49,152 fp32): a fresh tensor against refilling a kept buffer (why the
   LM-head tiles in r1lab.algos.logprobs reuse their buffers).
4. Three micro-batches of 8 sequences x 128 completion tokens through SmolLM2-135M, forward + backward under bf16
   autocast: each re-casting the weights in its own autocast region, against sharing one cast of them
   (r1lab.algos.logprobs.shared_weight_casts, as GRPO's optimizer pass does). The gradients must be equal.
5. Activation checkpointing (``train.gradient_checkpointing``): one GRPO micro-batch of 16 sequences (2 prompts of
   40 tokens x 8 completions of 128) through SmolLM2-135M in the precision of ``--autocast``, forward +
   backward, with and without; the bytes autograd keeps for backward (counted with saved-tensor hooks), the
   process's peak RSS growth, and the time.

    .venv/bin/python benchmarks/train_kernels.py [--repeats 5] [--only checkpointing] [--autocast bfloat16]

Each figure is the median of ``--repeats`` timed calls after one untimed call.
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import torch

from machine import describe as describe_machine  # benchmarks/machine.py (the script's folder is on sys.path)


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def attention(repeats: int) -> None:
    from transformers.models.llama.modeling_llama import eager_attention_forward

    from r1lab.algos.gqa_attention import gqa_eager_attention

    B, H, KV, L, P, D = 16, 9, 3, 127, 40, 64
    S = P + L
    gen = torch.Generator().manual_seed(0)
    allowed = torch.ones(B, 1, L, S, dtype=torch.bool)
    allowed[:, :, :, P:] = torch.tril(torch.ones(L, L, dtype=torch.bool))
    allowed[:4, :, :, :5] = False  # left padding in four rows
    additive = torch.zeros(B, 1, L, S).masked_fill(~allowed, torch.finfo(torch.float32).min)
    q0 = torch.randn(B, L, H, D, generator=gen).bfloat16().transpose(1, 2)  # as HF's projections make it
    k0, v0 = torch.randn(B, KV, S, D, generator=gen).bfloat16(), torch.randn(B, KV, S, D, generator=gen).bfloat16()
    module = SimpleNamespace(num_key_value_groups=H // KV, training=True)

    def step(fn, mask):
        q, k, v = (t.detach().requires_grad_() for t in (q0, k0, v0))
        out, _ = fn(module, q, k, v, mask, scaling=D ** -0.5)
        out.float().sum().backward()

    hf = median_seconds(lambda: step(eager_attention_forward, additive), repeats)
    ours = median_seconds(lambda: step(gqa_eager_attention, allowed), repeats)
    print(f"attention, one layer fwd+bwd: HF eager {hf * 1e3:.1f} ms, r1lab grouped-query {ours * 1e3:.1f} ms "
          f"({hf / ours:.2f}x)")


def adamw(repeats: int) -> None:
    from r1lab.models.loading import load_model

    model = load_model("smollm2-135m").model
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    results = {}
    for kernel in ("foreach", "fused"):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.99), **{kernel: True})
        results[kernel] = median_seconds(optimizer.step, repeats)
    print(f"AdamW step over {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters: foreach "
          f"{results['foreach']:.3f} s, fused {results['fused']:.3f} s ({results['foreach'] / results['fused']:.2f}x)")
    from r1lab.train.low_precision_adamw import LowPrecisionAdamW

    model = model.to(torch.bfloat16)  # gradients are cast with their parameters
    bf16 = {"fused, no remedy": torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.99), fused=True)}
    for update in ("stochastic_rounding", "kahan"):
        bf16[update] = LowPrecisionAdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.99), weight_decay=0.0,
                                         update=update)
    times = {name: median_seconds(optimizer.step, repeats) for name, optimizer in bf16.items()}
    print("AdamW step over the bf16 parameters: " + ", ".join(f"{name} {t:.3f} s" for name, t in times.items())
          + f" (fp32 fused above: {results['fused']:.3f} s)")


def tile(repeats: int) -> None:
    source = torch.randn(1024, 49152).bfloat16()
    kept = torch.empty(1024, 49152)
    fresh = median_seconds(lambda: source.float(), repeats)
    reused = median_seconds(lambda: kept.copy_(source), repeats)
    print(f"one 1024 x 49152 fp32 tile from bf16: fresh tensor {fresh * 1e3:.1f} ms, kept buffer {reused * 1e3:.1f} ms "
          f"({fresh / reused:.2f}x)")


def micro_batches(repeats: int) -> None:
    import contextlib

    from r1lab.algos.logprobs import completion_logprobs, shared_weight_casts
    from r1lab.models.loading import load_model

    model = load_model("smollm2-135m").model.train()
    gen = torch.Generator().manual_seed(0)
    prompt_ids, prompt_mask = torch.randint(100, 40000, (1, 35), generator=gen), torch.ones(1, 35, dtype=torch.long)
    completions = [torch.randint(100, 40000, (8, 128), generator=gen) for _ in range(3)]
    mask, prompt_index = torch.ones(8, 128), torch.zeros(8, dtype=torch.long)
    grads = {}

    def three(shared: bool):
        model.zero_grad(set_to_none=True)
        with shared_weight_casts("cpu") if shared else contextlib.nullcontext():
            for ids in completions:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    logp, _ = completion_logprobs(model, prompt_ids, prompt_mask, ids, mask, with_entropy=True,
                                                  prompt_index=prompt_index)
                (logp * mask).sum().backward()
        grads[shared] = [p.grad.clone() for p in model.parameters()]

    times = {False: [], True: []}
    three(True)
    for _ in range(repeats):  # alternated, so a drift of the machine's speed hits both alike
        for shared in (False, True):
            t0 = time.perf_counter()
            three(shared)
            times[shared].append(time.perf_counter() - t0)
    same = all(torch.equal(a, b) for a, b in zip(grads[False], grads[True]))
    per, one = statistics.median(times[False]), statistics.median(times[True])
    print(f"3 micro-batches of 8 x 128 tokens, fwd+bwd: weights cast per micro-batch {per:.2f} s, cast once "
          f"{one:.2f} s ({per / one:.2f}x); gradients bit-identical: {same}")


def checkpointing(repeats: int, autocast: str) -> None:
    import contextlib
    import resource

    from r1lab.algos.logprobs import attention_implementation, completion_logprobs, training_attention
    from r1lab.models.checkpointing import enable_activation_checkpointing
    from r1lab.models.loading import load_model

    gen = torch.Generator().manual_seed(0)
    prompt_ids, prompt_mask = torch.randint(100, 40000, (2, 40), generator=gen), torch.ones(2, 40, dtype=torch.long)
    ids, mask = torch.randint(100, 40000, (16, 128), generator=gen), torch.ones(16, 128)
    prompt_index = torch.arange(16) // 8

    def step(model) -> int:
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
        saved: dict[int, int] = {}  # storage -> bytes: views of one tensor and the weights count once / not at all

        def pack(t):
            ptr = t.untyped_storage().data_ptr()
            if ptr not in weights:
                saved[ptr] = t.untyped_storage().nbytes()
            return t

        model.zero_grad(set_to_none=True)
        cast = torch.autocast("cpu", dtype=torch.bfloat16) if autocast == "bfloat16" else contextlib.nullcontext()
        with attention_implementation(model, training_attention(model, 168)):
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), cast:
                logp, _ = completion_logprobs(model, prompt_ids, prompt_mask, ids, mask, prompt_index=prompt_index)
            logp.sum().backward()
        return sum(saved.values())

    rows = {}
    for replay in (True, False):  # with first: the peak RSS only ever grows, so the second figure is what it adds
        model = load_model("smollm2-135m").model.train()
        if replay:
            enable_activation_checkpointing(model)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        saved = step(model)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        rows[replay] = saved, grown, median_seconds(lambda: step(model), repeats)
        del model
    (s0, g0, t0), (s1, g1, t1) = rows[False], rows[True]
    print(f"activation checkpointing, 16 x (40 + 128) tokens, autocast {autocast}: activations kept for backward "
          f"{s0 / 2**20:.0f} MB without, {s1 / 2**20:.0f} MB with ({s0 / max(s1, 1):.1f}x less); peak RSS grew "
          f"{g1 / 1024:.0f} MB with (run first), then {g0 / 1024:.0f} MB more without; fwd+bwd {t0:.2f} s without, "
          f"{t1:.2f} s with ({t1 / t0:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per figure (median reported)")
    parser.add_argument("--only", choices=("attention", "tile", "adamw", "micro_batches", "checkpointing"),
                        help="run one piece only")
    parser.add_argument("--autocast", choices=("none", "bfloat16"), default="none",
                        help="the checkpointing piece's training precision (none = fp32, r1lab's choice on CPUs "
                             "without AMX; bfloat16 on those with it)")
    args = parser.parse_args()
    print(f"machine: {describe_machine()}; {torch.get_num_threads()} threads")
    pieces = {"attention": lambda: attention(args.repeats), "tile": lambda: tile(args.repeats),
              "adamw": lambda: adamw(args.repeats), "micro_batches": lambda: micro_batches(max(3, args.repeats // 2)),
              "checkpointing": lambda: checkpointing(max(3, args.repeats // 2), args.autocast)}
    for name, run in pieces.items():
        if args.only in (None, name):
            run()


if __name__ == "__main__":
    main()
