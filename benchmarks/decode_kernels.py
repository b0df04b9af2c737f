"""Pieces of a decode step on this CPU, each against the plain PyTorch form.

1. The matmuls: bf16 ``F.linear`` against pre-packed oneDNN weights (r1lab.rollout.packed_linear), on
   LlamaDecoder's shapes for SmolLM2-135M: fused q/k/v (960 x 576), o (576 x 576), fused gate/up (3072 x 576),
   down (576 x 1536) in each of 30 layers, and the 49,152-row LM head, at 64 rows (8 prompts x 8 samples).
   Prints microseconds per call and per decode step, and checks the outputs are bit-identical.
2. Sampling one token per row from (64, 49,152) bf16 logits at temperature 1, with EOS banned (min_new_tokens)
   and without: r1lab's ``next_tokens`` in the decode loop's kept buffer against the plain fresh-tensor
   form (fp32 copy, softmax, draw, log of the drawn probability).
3. One layer's attention at 64 rows (SmolLM2-135M's heads) over 40, 100 and 163 cached tokens: SDPA, as the
   PyTorch decode step calls it, against r1lab's C kernel (r1lab.rollout.native_kernels), with each one's largest
   error against an fp64 reference.
4. A whole decode step of SmolLM2-135M at 64 rows with 100 cached tokens (LlamaDecoder), in fp32 and in bf16:
   the PyTorch step against the step on the C kernels (same matmuls), each one's logits against the fp32 model's
   step on PyTorch's ops.

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
    attention(args.rows, gen)
    whole_step(args.rows)


def _fresh_tensor_sampling(logits: torch.Tensor, banned: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain form of next_tokens: every (rows, V) intermediate a new tensor."""
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


def attention(rows: int, gen: torch.Generator) -> None:
    from r1lab.rollout import native_kernels

    kv_heads, group, dim = 3, 3, 64
    kernels = native_kernels.load(group, dim)
    if kernels is None:
        raise SystemExit(f"no native kernels: {native_kernels.unavailable_reason(group, dim)}")
    heads = kv_heads * group
    k = torch.randn(rows, kv_heads, 200, dim, generator=gen).bfloat16()
    v = torch.randn(rows, kv_heads, 200, dim, generator=gen).bfloat16()
    q = torch.randn(rows, heads, dim, generator=gen).bfloat16()
    scratch = torch.empty(rows * heads * 200)
    for n in (40, 100, 163):
        mask = torch.ones(rows, 200, dtype=torch.bool)[:, :n]
        mask[: rows // 8, :4] = False  # left padding in some rows
        scores = q.double().view(rows, kv_heads, group, dim) @ k[:, :, :n].double().transpose(-1, -2) / dim ** 0.5
        exact = (scores.masked_fill(~mask.view(rows, 1, 1, n), float("-inf")).softmax(-1)
                 @ v[:, :, :n].double()).reshape(rows, heads * dim)

        def sdpa():
            return F.scaled_dot_product_attention(q.view(rows, kv_heads, group, dim), k[:, :, :n], v[:, :, :n],
                                                  attn_mask=mask.view(rows, 1, 1, n), scale=dim ** -0.5)

        def native():
            return kernels.attention(q, k, v, mask, dim ** -0.5, scratch)

        err_sdpa = (sdpa().reshape(rows, -1).double() - exact).abs().max().item()
        err_native = (native().double() - exact).abs().max().item()
        sdpa_s, native_s = seconds_per_call(sdpa), seconds_per_call(native)
        print(f"attention, {rows} rows x {n} cached tokens: SDPA {sdpa_s * 1e6:6.0f} us (max error {err_sdpa:.4f}), "
              f"r1lab kernel {native_s * 1e6:6.0f} us (max error {err_native:.4f}), {sdpa_s / native_s:.2f}x")


def whole_step(rows: int, cached: int = 100) -> None:
    import copy

    from r1lab.models.kv_cache import output_cache
    from r1lab.models.loading import load_model
    from r1lab.rollout.llama_decode import LlamaDecoder

    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(100, 40000, (rows, cached), generator=gen)
    token = torch.randint(100, 40000, (rows,), generator=gen)
    position = torch.full((rows, 1), cached)
    mask = torch.ones(rows, cached + 1, dtype=torch.bool)

    def decoder_for(model, native: bool = True):
        with torch.no_grad():
            prefill = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
        decoder = LlamaDecoder(model, native_kernels=native)
        decoder.refresh_weights()
        decoder.prefill(output_cache(prefill), 1, cached + 8)
        return decoder

    fp32 = load_model("smollm2-135m").model.eval()
    # fp32 on PyTorch's ops throughout: what both C-kernel steps and the bf16 steps approximate
    reference = decoder_for(fp32, native=False).step(token, position, cached, mask)
    for dtype in (torch.float32, torch.bfloat16):
        decoder = decoder_for(fp32 if dtype == torch.float32 else copy.deepcopy(fp32).to(dtype))
        kernels, label = decoder.kernels, str(dtype).removeprefix("torch.")
        if kernels is None:
            raise SystemExit(f"the {label} decode step does not run on the native kernels here")
        results = {}
        for name, chosen in (("PyTorch step", None), ("C-kernel step", kernels)):
            decoder.kernels = chosen  # the same decoder, cache and weights; only the step's non-matmul ops differ
            seconds = seconds_per_call(lambda: decoder.step(token, position, cached, mask), min_seconds=2.0)
            error = (decoder.step(token, position, cached, mask).float() - reference).abs()
            results[name] = seconds
            print(f"SmolLM2-135M {label} decode step, {rows} rows, {cached} cached tokens, {name:13s}: "
                  f"{seconds * 1e3:6.1f} ms; logits vs the fp32 PyTorch step: largest difference "
                  f"{error.max().item():.3g}, mean {error.mean().item():.3g}")
        print(f"{label}: C-kernel step {results['PyTorch step'] / results['C-kernel step']:.2f}x faster "
              f"(fp32 logits up to {reference.abs().max().item():.1f})")


if __name__ == "__main__":
    main()
