"""Weighted sum of reward functions with a per-function breakdown; failures are recorded, never scored 0."""

from __future__ import annotations

import math

from r1lab.rewards.functions import REWARDS, RewardContext, is_batched
from r1lab.types import Example, RewardResult


def score_completion(completion: str, example: Example, weights: dict[str, float], ctx: RewardContext) -> RewardResult:
    return score_batch([completion], [example], weights, ctx)[0]


def _scores_of(name: str, completions: list[str], examples: list[Example], ctx: RewardContext) -> list:
    """One reward function over the batch: a float or the exception for each sample."""
    try:
        fn = REWARDS.get(name)
    except KeyError as err:
        return [err] * len(completions)
    if is_batched(fn):
        try:
            scores = list(fn(completions, examples, ctx))
        except Exception as err:  # noqa: BLE001 - the whole batch failed; every sample carries the error
            return [err] * len(completions)
        if len(scores) != len(completions):
            err = RuntimeError(f"returned {len(scores)} scores for {len(completions)} completions")
            return [err] * len(completions)
        return scores
    scores = []
    for completion, example in zip(completions, examples):
        try:
            scores.append(fn(completion, example, ctx))
        except Exception as err:  # noqa: BLE001 - any verifier failure is surfaced, see RewardResult.error
            scores.append(err)
    return scores


def score_batch(
    completions: list[str], examples: list[Example], weights: dict[str, float], ctx: RewardContext
) -> list[RewardResult]:
    """Score completion i against examples[i] with every weighted reward function."""
    if len(completions) != len(examples):
        raise ValueError(f"{len(completions)} completions but {len(examples)} examples")
    per_function = {name: _scores_of(name, completions, examples, ctx) for name in weights}
    results = []
    for i in range(len(completions)):
        breakdown: dict[str, float] = {}
        error = None
        for name in weights:
            value = per_function[name][i]
            if isinstance(value, BaseException):
                error = f"{name}: {type(value).__name__}: {value}"
                break
            value = float(value)
            if not math.isfinite(value):
                error = f"{name}: non-finite score {value}"
                break
            breakdown[name] = value
        if error is not None:
            results.append(RewardResult(total=math.nan, breakdown=breakdown, error=error))
        else:
            results.append(RewardResult(total=sum(weights[n] * breakdown[n] for n in weights), breakdown=breakdown))
    return results
