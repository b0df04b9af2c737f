"""Weighted sum of reward functions with a per-function breakdown; failures are recorded, never scored 0."""

from __future__ import annotations

import dataclasses
import math

from r1lab.rewards.functions import REWARDS, RewardContext, is_batched
from r1lab.types import Example, RewardResult


def score_completion(completion: str, example: Example, weights: dict[str, float], ctx: RewardContext) -> RewardResult:
    return score_batch([completion], [example], weights, ctx)[0]


def _scores_of(
    name: str, completions: list[str], examples: list[Example], ctx: RewardContext, token_lengths: list[int] | None
) -> list:
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
    for i, (completion, example) in enumerate(zip(completions, examples)):
        sample_ctx = ctx if token_lengths is None else dataclasses.replace(ctx, completion_tokens=token_lengths[i])
        try:
            scores.append(fn(completion, example, sample_ctx))
        except Exception as err:  # noqa: BLE001 - any verifier failure is surfaced, see RewardResult.error
            scores.append(err)
    return scores


def score_batch(
    completions: list[str], examples: list[Example], weights: dict[str, float], ctx: RewardContext,
    token_lengths: list[int] | None = None,
) -> list[RewardResult]:
    """Score completion i against examples[i] with every weighted reward function.

    ``token_lengths[i]``, when given, is the number of tokens generated for completion i; per-completion rewards
    see it as ``ctx.completion_tokens`` (exact, where re-tokenising the decoded text may differ at the edges).
    """
    if len(completions) != len(examples):
        raise ValueError(f"{len(completions)} completions but {len(examples)} examples")
    if token_lengths is not None and len(token_lengths) != len(completions):
        raise ValueError(f"{len(token_lengths)} token lengths but {len(completions)} completions")
    per_function = {name: _scores_of(name, completions, examples, ctx, token_lengths) for name in weights}
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
