"""DAPO dynamic sampling (Yu et al. 2025, arXiv 2503.14476, section 3.2): a group whose rewards are all equal has
zero group-relative advantage and teaches nothing, so it is dropped and more prompts are generated until the step
holds ``prompts_per_step`` informative groups, or a cap on generation rounds is reached.

The extra prompts are drawn from the run's PromptSampler (its saved state includes them, so a resume is exact),
and each round's prompts take seeds from (step, round * prompts_per_step + index): the same draws whether a run
was resumed or not.
"""

from __future__ import annotations

from typing import Callable

import torch

from r1lab.types import RolloutBatch


def informative_groups(rewards: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(N, G) rewards -> (N,) bool: at least two valid samples whose rewards are not all equal."""
    big = torch.finfo(rewards.dtype).max
    hi = torch.where(valid, rewards, torch.full_like(rewards, -big)).amax(dim=1)
    lo = torch.where(valid, rewards, torch.full_like(rewards, big)).amin(dim=1)
    return (valid.sum(dim=1) >= 2) & (hi > lo)


def _pad(t: torch.Tensor, width: int, left: bool) -> torch.Tensor:
    extra = width - t.shape[1]
    if extra == 0:
        return t
    pad = torch.zeros((t.shape[0], extra), dtype=t.dtype, device=t.device)
    return torch.cat([pad, t] if left else [t, pad], dim=1)


def select_groups(parts: list[tuple[RolloutBatch, list[int]]]) -> RolloutBatch:
    """One batch from chosen groups of several batches: prompts re-padded on the left, completions on the right
    (masks carry the lengths, so the padding values are never read)."""
    G = parts[0][0].group_size
    rows = [torch.cat([torch.arange(g * G, (g + 1) * G) for g in groups]) for _, groups in parts if groups]
    chosen = [(b, r) for (b, groups), r in zip([p for p in parts if p[1]], rows)]
    P = max(b.prompt_ids.shape[1] for b, _ in chosen)
    C = max(b.completion_ids.shape[1] for b, _ in chosen)

    def cat(name: str, width: int | None = None, left: bool = False):
        if getattr(chosen[0][0], name) is None:
            return None
        pieces = [getattr(b, name)[r.to(getattr(b, name).device)] for b, r in chosen]
        if width is not None:
            pieces = [_pad(p, width, left) for p in pieces]
        return torch.cat(pieces)

    return RolloutBatch(prompt_ids=cat("prompt_ids", P, True), prompt_mask=cat("prompt_mask", P, True),
                        completion_ids=cat("completion_ids", C), completion_mask=cat("completion_mask", C),
                        truncated=cat("truncated"), texts=[b.texts[i] for b, r in chosen for i in r.tolist()],
                        group_size=G, rollout_logprobs=cat("rollout_logprobs", C), loss_mask=cat("loss_mask", C),
                        tool_calls=(None if chosen[0][0].tool_calls is None
                                    else [b.tool_calls[i] for b, r in chosen for i in r.tolist()]))


def collect_informative(rollout_round: Callable[[int], tuple[list, RolloutBatch, list]], prompts: int,
                        max_rounds: int) -> tuple[list, RolloutBatch, list, dict]:
    """Run ``rollout_round(r)`` -> (examples, batch, results) for r = 0, 1, ... keeping informative groups in order
    until ``prompts`` of them (the surplus of the last round dropped) or ``max_rounds`` rounds. Returns the kept
    examples, batch and per-row results, and the step's ``sampling/*`` metrics. If no group is informative at all,
    the last round is kept whole (the step then has nothing to learn, as without dynamic sampling)."""
    kept_examples, kept_results, parts, generated, tokens, last = [], [], [], 0, 0.0, None
    for r in range(max_rounds):
        examples, batch, results = rollout_round(r)
        G = batch.group_size
        rewards = torch.tensor([x.total for x in results], dtype=torch.float64).view(-1, G)
        valid = torch.tensor([x.valid for x in results]).view(-1, G)
        good = informative_groups(rewards, valid).nonzero().flatten().tolist()[: prompts - len(kept_examples)]
        generated += len(examples)
        tokens += float(batch.lengths.sum())
        parts.append((batch, good))
        kept_examples += [examples[g] for g in good]
        kept_results += [x for g in good for x in results[g * G : (g + 1) * G]]
        last = (examples, batch, results)
        if len(kept_examples) >= prompts:
            break
    metrics = {"sampling/rounds": r + 1, "sampling/generated_groups": generated,
               "sampling/informative_groups": len(kept_examples), "sampling/discarded_groups": generated - len(kept_examples),
               "sampling/generated_tokens": tokens}  # every round's, discarded groups included
    if not kept_examples:
        return (*last, metrics)
    return kept_examples, select_groups(parts), kept_results, metrics
