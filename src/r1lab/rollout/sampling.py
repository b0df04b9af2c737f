"""Next-token choice from a (B, V) row of logits: greedy, or temperature / top-k / top-p sampling.

The same processing, in the same order, as HF ``generate`` (temperature, then top-k, then top-p, on fp32
logits; Holtzman et al. 2020 for nucleus sampling), so a rollout engine with its own decode loop samples from
the distribution ``generate`` would.
"""

from __future__ import annotations

import torch

from r1lab.rollout.base import SamplingParams


def warp_logits(logits: torch.Tensor, sampling: SamplingParams, in_place: bool = False) -> torch.Tensor:
    """(B, V) fp32 logits -> the logits sampled from: / temperature, outside top-k and top-p set to -inf
    (``in_place``: overwriting ``logits``, as the decode loop does in its kept buffer)."""
    if not in_place:
        logits = logits.clone()
    if sampling.temperature != 1.0:
        logits.div_(sampling.temperature)
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits.masked_fill_(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        # Smallest set whose probability reaches top_p: drop the low tail whose cumulative mass is <= 1 - top_p
        # (ascending order, so the most likely token is last and always kept).
        sorted_logits, order = torch.sort(logits, dim=-1)
        tail = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= 1 - sampling.top_p
        tail[:, -1] = False
        logits.masked_fill_(tail.scatter(1, order, tail), float("-inf"))
    return logits


def next_tokens(logits: torch.Tensor, sampling: SamplingParams, banned: torch.Tensor | None = None,
                scratch: torch.Tensor | None = None, uniforms: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, V) logits -> (B,) token ids and their (B,) log-probs under the distribution they were drawn from
    (after temperature/top-k/top-p; greedy: the model's own). ``banned`` (K,) ids get -inf first (EOS before
    min_new_tokens).

    ``scratch``: a (>= B, V) fp32 buffer kept by the caller across decode steps. The step's fp32 logits and
    sampling weights are computed in it, in place, instead of in fresh (B, V) tensors: at 64 x 49,152 each fresh
    12.5 MB tensor pays page faults, and sampling a step took 7.3 ms (8.2 ms with EOS banned) with fresh tensors
    against 3.6 ms (3.5 ms) in a kept buffer on the reference Xeon (benchmarks/decode_kernels.py).

    ``uniforms``: (B,) draws in [0, 1) that pick each row's token (``row_uniforms``), instead of the global RNG.
    """
    B = logits.shape[0]
    x = scratch[:B] if scratch is not None else torch.empty(logits.shape, dtype=torch.float32, device=logits.device)
    x.copy_(logits)
    if banned is not None:
        x.index_fill_(1, banned, float("-inf"))
    if sampling.temperature <= 0:
        token = x.argmax(dim=-1)
        return token, x.gather(1, token[:, None]).squeeze(1) - torch.logsumexp(x, dim=-1)
    weights = warp_logits(x, sampling, in_place=True)
    weights = weights.sub_(weights.amax(dim=-1, keepdim=True)).exp_()  # unnormalised softmax, in place
    token = sample_categorical(weights, uniforms=uniforms)
    return token, (weights.gather(1, token[:, None]).squeeze(1) / weights.sum(dim=-1)).log()


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None, block: int = 256,
                       uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """One draw per row of (B, V) probabilities (or any non-negative weights: each row is scaled by its own total)
    by inverting the CDF in two levels: first a block of ``block`` tokens (from the cumulative block sums), then the
    token inside it (from that block's own cumulative sum).

    The categorical distribution torch.multinomial samples, at a fraction of its cost here: multinomial draws an
    exponential variate for every vocabulary entry (64 x 49,152 per token, measured ~0.1 s per decode step on
    this CPU), and even one full-vocabulary float64 cumsum costs ~5 ms per step; this sums blocks (a vectorised
    reduction) and scans only V / block + block entries per row. Block sums are fp32 (relative error ~1e-7, far
    below any sampling noise), the scans float64 so a token's interval keeps its width; zero-probability tokens
    have empty intervals and are never drawn. ``uniforms`` (B,): the draws to invert, else one per row from
    ``generator`` (or the global RNG).
    """
    B, V = probs.shape
    pad = (-V) % block
    blocks = torch.nn.functional.pad(probs, (0, pad)) if pad else probs
    blocks = blocks.reshape(B, -1, block)  # (B, nb, block)
    block_cdf = blocks.sum(dim=-1).double().cumsum(dim=-1)  # (B, nb)
    # float32 u <= 1 - 2**-24, so u * total < total exactly in float64: the chosen block has positive mass
    if uniforms is None:
        uniforms = torch.rand(B, device=probs.device, generator=generator)
    u = uniforms.to(probs.device, torch.float32).double().unsqueeze(1)
    target = u * block_cdf[:, -1:]  # (B, 1)
    chosen = torch.searchsorted(block_cdf, target, right=True)  # (B, 1): first block whose cdf exceeds target
    below = torch.where(chosen > 0, block_cdf.gather(1, (chosen - 1).clamp(min=0)), torch.zeros_like(target))
    inner_cdf = blocks[torch.arange(B, device=probs.device), chosen.squeeze(1)].double().cumsum(dim=-1)  # (B, block)
    # the fp32 block sum and the float64 scan may round apart: keep the remainder strictly inside the block's mass
    rest = torch.minimum(target - below, torch.nextafter(inner_cdf[:, -1:], torch.zeros_like(target)))
    within = torch.searchsorted(inner_cdf, rest, right=True)  # (B, 1): first token whose cdf exceeds the rest
    return (chosen * block + within).squeeze(1)


def prompt_seed(run_seed: int, step: int, index: int) -> int:
    """The seed of the prompt at ``index`` of step ``step``'s global batch: the same on every rank and at every
    world size, so a data-parallel step samples exactly what the single process samples."""
    return ((run_seed * 1_000_003 + step) * 1_000_003 + index) % 2**63


def sample_seed(seed: int, sample: int) -> int:
    """The seed of sample ``sample`` of a prompt whose seed is ``seed``."""
    return (seed * 1_000_003 + sample) % 2**63


def row_generators(seeds: list[int], n: int) -> list[torch.Generator]:
    """One CPU generator per completion row (prompt i's sample j is row i * n + j), seeded from its prompt's seed
    and its sample index only. A row's tokens then depend on nothing else in the batch: the same prompt with the
    same seed samples the same completion whichever rank, batch or decode order it lands in (data-parallel runs
    equal the single process)."""
    generators = []
    for seed in seeds:
        for j in range(n):
            generators.append(torch.Generator().manual_seed(sample_seed(seed, j)))
    return generators


def row_uniforms(generators: list[torch.Generator], rows: list[int]) -> torch.Tensor:
    """(len(rows),) float32 draws, one from each listed row's generator: a decode step's draws for the rows still
    in the batch (each row draws once per step while it decodes, so its t-th draw is its token t's)."""
    return torch.cat([torch.rand(1, generator=generators[r]) for r in rows])
