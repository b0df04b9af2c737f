"""Methods built on independent samples: CoT vs direct prompting, self-consistency, best-of-N, weighted voting.

- CoT prompting: "think step by step" (zero-shot reasoner, Kojima et al. 2022, arXiv 2205.11916) vs asking for the
  answer alone;
- self-consistency: the majority answer of n samples (Wang et al. 2022, arXiv 2203.11171), answers clustered by the
  task's verifier (``r1lab.evals.answers``), ties to the answer voted for first;
- best-of-N: the sample a scorer ranks highest; the scorer is the task's verifier (an oracle: this is pass@N) or any
  registered reward function, e.g. ``reward_model`` (an outcome reward model) or ``llm_judge``;
- weighted voting: each answer's votes weighted by its samples' reward scores (Li et al. 2023, "Making Large
  Language Models Better Reasoners with Step-Aware Verifier", arXiv 2206.02336).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from r1lab.evals.answers import equivalence
from r1lab.evals.metrics import cluster_answers, vote
from r1lab.infer.base import METHODS, Answer, InferContext, declare, method_params

if TYPE_CHECKING:  # r1lab.types imports torch
    from r1lab.types import Example

COT_INSTRUCTION = "Let's think step by step, then give the final answer."
DIRECT_INSTRUCTION = "Give only the final answer, with no explanation."


def _single(examples: list[Example], ctx: InferContext, instruction: str) -> list[Answer]:
    prompts = [ctx.render(e, instruction) for e in examples]
    groups = ctx.generator.complete(prompts, 1, ctx.sampling)
    return [Answer(ctx.answer_of(g[0].text), g[0].text, g[0].tokens) for g in groups]


@METHODS.register("cot")
@declare(instruction=COT_INSTRUCTION)
def cot(examples: list[Example], ctx: InferContext, params: dict) -> list[Answer]:
    """chain-of-thought prompting: one response asked to think step by step (Kojima et al. 2022)"""
    p = method_params("cot", params, cot.param_defaults)
    return _single(examples, ctx, p["instruction"])


@METHODS.register("direct")
@declare(instruction=DIRECT_INSTRUCTION)
def direct(examples: list[Example], ctx: InferContext, params: dict) -> list[Answer]:
    """direct answer: one response asked for the answer alone (the baseline CoT is compared with)"""
    p = method_params("direct", params, direct.param_defaults)
    return _single(examples, ctx, p["instruction"])


def _samples(examples: list[Example], ctx: InferContext, n: int, instruction: str | None):
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return ctx.generator.complete([ctx.render(e, instruction) for e in examples], n, ctx.sampling)


@METHODS.register("self_consistency")
@declare(n=8, instruction=None)
def self_consistency(examples: list[Example], ctx: InferContext, params: dict) -> list[Answer]:
    """self-consistency: majority vote of n samples over verifier-equal answers, ties to the first (Wang et al. 2022)"""
    p = method_params("self_consistency", params, self_consistency.param_defaults)
    out = []
    for example, group in zip(examples, _samples(examples, ctx, p["n"], p["instruction"])):
        answers = [ctx.answer_of(c.text) for c in group]
        clusters = cluster_answers(answers, equivalence(ctx.task, example))
        winner = vote(clusters)
        tokens = sum(c.tokens for c in group)
        if winner is None:
            out.append(Answer(None, group[0].text, tokens, len(group), {"votes": {}}))
            continue
        first = clusters.index(winner)
        seen = dict.fromkeys(x for x in clusters if x is not None)
        votes = {answers[clusters.index(c)]: clusters.count(c) for c in seen}
        out.append(Answer(answers[first], group[first].text, tokens, len(group), {"votes": votes}))
    return out


def candidate_scores(texts: list[str], answers: list[str | None], example: Example, ctx: InferContext, scorer: str,
                     reward_params: dict) -> list[float]:
    """One score per candidate: ``oracle`` = the task's verifier, else the registered reward function ``scorer``.
    A candidate the reward could not score gets -inf (never chosen) rather than a made-up 0."""
    if scorer == "oracle":
        return [ctx.score(a, example) for a in answers]
    from r1lab.rewards import REWARDS, RewardContext, score_batch

    if scorer not in REWARDS:
        raise ValueError(f"scorer {scorer!r}: use 'oracle' or a reward function ({', '.join(REWARDS.names())})")
    rctx = RewardContext(task=ctx.task, extraction=ctx.extraction, params={scorer: reward_params},
                         tokenizer=ctx.tokenizer, max_new_tokens=ctx.sampling.max_new_tokens)
    results = score_batch(texts, [example] * len(texts), {scorer: 1.0}, rctx)
    return [r.total if r.valid else -math.inf for r in results]


def _scored_samples(examples: list[Example], ctx: InferContext, p: dict):
    """Per problem: its n samples, their texts, extracted answers and scores under ``p["scorer"]``."""
    for example, group in zip(examples, _samples(examples, ctx, p["n"], p["instruction"])):
        texts = [c.text for c in group]
        answers = [ctx.answer_of(t) for t in texts]
        yield example, group, texts, answers, candidate_scores(texts, answers, example, ctx, p["scorer"],
                                                               p["reward_params"])


@METHODS.register("best_of_n")
@declare(n=8, scorer="oracle", reward_params={}, instruction=None)
def best_of_n(examples: list[Example], ctx: InferContext, params: dict) -> list[Answer]:
    """best-of-N: the sample ranked highest by the task verifier (oracle) or a reward function (e.g. reward_model)"""
    p = method_params("best_of_n", params, best_of_n.param_defaults)
    out = []
    for example, group, texts, answers, scores in _scored_samples(examples, ctx, p):
        best = max(range(len(group)), key=lambda i: (scores[i], -i))  # ties: the earliest sample
        out.append(Answer(answers[best], texts[best], sum(c.tokens for c in group), len(group),
                          {"scores": scores, "chosen": best}))
    return out


@METHODS.register("weighted_vote")
@declare(n=8, scorer="reward_model", reward_params={}, instruction=None)
def weighted_vote(examples: list[Example], ctx: InferContext, params: dict) -> list[Answer]:
    """reward-weighted voting: each verifier-equal answer scores the sum of its samples' rewards; ties to the first"""
    p = method_params("weighted_vote", params, weighted_vote.param_defaults)
    out = []
    for example, group, texts, answers, scores in _scored_samples(examples, ctx, p):
        clusters = cluster_answers(answers, equivalence(ctx.task, example))
        weight: dict[int, float] = {}
        for c, s in zip(clusters, scores):
            if c is not None and math.isfinite(s):
                weight[c] = weight.get(c, 0.0) + s
        tokens = sum(c.tokens for c in group)
        if not weight:
            out.append(Answer(None, texts[0], tokens, len(group), {"weights": {}}))
            continue
        winner = max(weight, key=lambda c: (weight[c], -clusters.index(c)))
        first = clusters.index(winner)
        out.append(Answer(answers[first], texts[first], tokens, len(group),
                          {"weights": {answers[clusters.index(c)]: w for c, w in weight.items()}}))
    return out
