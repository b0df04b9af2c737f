"""Weighted sum of reward functions with a per-function breakdown; failures are recorded, never scored 0."""

from __future__ import annotations

import dataclasses
import math

from r1lab.rewards.functions import REWARDS, RewardContext, is_batched
from r1lab.types import Example, RewardResult

# Which examples a reward scores (rewards.apply_to). R1's final RL stage (arXiv 2501.12948, Sec. 2.3.4) uses rule
# rewards where a verifier exists and a reward model for general prompts; "verifiable" = the example has an answer.
APPLY_TO = ("all", "verifiable", "general")


def is_verifiable(example: Example) -> bool:
    """An example is verifiable when it carries a gold answer (general prompts have none)."""
    return example.answer is not None and str(example.answer).strip() != ""


def applies(scope: str, example: Example) -> bool:
    """Whether a reward with scope ``scope`` (one of APPLY_TO) scores ``example``."""
    if scope == "all":
        return True
    return is_verifiable(example) if scope == "verifiable" else not is_verifiable(example)


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
    token_lengths: list[int] | None = None, apply_to: dict[str, str] | None = None,
) -> list[RewardResult]:
    """Score completion i against examples[i] with every weighted reward function.

    ``token_lengths[i]``, when given, is the number of tokens generated for completion i; per-completion rewards
    see it as ``ctx.completion_tokens`` (exact, where re-tokenising the decoded text may differ at the edges).
    ``apply_to[name]`` (default "all") limits reward ``name`` to some examples: it is not run on the others, adds 0
    to their total and is absent from their breakdown.
    """
    if len(completions) != len(examples):
        raise ValueError(f"{len(completions)} completions but {len(examples)} examples")
    if token_lengths is not None and len(token_lengths) != len(completions):
        raise ValueError(f"{len(token_lengths)} token lengths but {len(completions)} completions")
    apply_to = apply_to or {}
    per_function = {}
    for name in weights:
        rows = [i for i, e in enumerate(examples) if applies(apply_to.get(name, "all"), e)]
        scores = _scores_of(name, [completions[i] for i in rows], [examples[i] for i in rows], ctx,
                            None if token_lengths is None else [token_lengths[i] for i in rows]) if rows else []
        per_function[name] = dict(zip(rows, scores))
    results = []
    for i in range(len(completions)):
        breakdown: dict[str, float] = {}
        error = None
        for name in weights:
            if i not in per_function[name]:
                continue
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
            results.append(RewardResult(total=sum(weights[n] * breakdown[n] for n in breakdown), breakdown=breakdown))
    return results
