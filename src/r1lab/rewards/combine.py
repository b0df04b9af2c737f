"""Weighted sum of reward functions with a per-function breakdown; failures are recorded, never scored 0."""

from __future__ import annotations

import math

from r1lab.rewards.functions import REWARDS, RewardContext
from r1lab.types import Example, RewardResult


def score_completion(completion: str, example: Example, weights: dict[str, float], ctx: RewardContext) -> RewardResult:
    breakdown: dict[str, float] = {}
    for name, weight in weights.items():
        try:
            value = float(REWARDS.get(name)(completion, example, ctx))
        except Exception as err:  # noqa: BLE001 - any verifier failure is surfaced, see RewardResult.error
            return RewardResult(total=math.nan, breakdown=breakdown, error=f"{name}: {type(err).__name__}: {err}")
        if not math.isfinite(value):
            return RewardResult(total=math.nan, breakdown=breakdown, error=f"{name}: non-finite score {value}")
        breakdown[name] = value
    total = sum(weights[name] * breakdown[name] for name in weights)
    return RewardResult(total=total, breakdown=breakdown)


def score_batch(
    completions: list[str], examples: list[Example], weights: dict[str, float], ctx: RewardContext
) -> list[RewardResult]:
    """Score completion i against examples[i]."""
    return [score_completion(c, e, weights, ctx) for c, e in zip(completions, examples, strict=True)]
