"""Held-out accuracy of a policy on a task: greedy, and optionally one sample per problem."""

from __future__ import annotations

from typing import Any, Callable

from r1lab.rewards import RewardContext, extract_answer
from r1lab.models.templates import assistant_text
from r1lab.rewards.functions import format_reward
from r1lab.rollout.base import RolloutEngine, SamplingParams
from r1lab.types import Example


def evaluate_accuracy(
    engine: RolloutEngine,
    examples: list[Example],
    build_prompt: Callable[[Example], str],
    ctx: RewardContext,
    sampling: SamplingParams,
    seeds: list[int] | None = None,
    prefill: str = "",
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Accuracy = share of problems whose extracted answer gets full credit from the task's verifier.

    Returns (metrics, per-problem records). ``sampling.temperature == 0`` is greedy decoding; ``seeds``: one per
    problem for sampled decoding (see RolloutEngine.generate). ``prefill``: the start of the assistant turn that
    ``build_prompt`` put at the end of the prompt; it is scored (and recorded) as part of the completion.
    """
    batch = engine.generate([build_prompt(e) for e in examples], n=1, sampling=sampling, seeds=seeds)
    records = []
    for example, text, length, truncated in zip(examples, batch.texts, batch.lengths.tolist(), batch.truncated.tolist()):
        text = assistant_text(prefill, text)
        answer = extract_answer(text, ctx.extraction)
        score = ctx.task.score(answer, example) if answer is not None else 0.0
        ok = score >= 1.0
        fmt = format_reward(text, example, ctx) == 1.0
        records.append({"id": example.id, "completion": text, "answer": answer, "gold": example.answer,
                        "correct": ok, "formatted": fmt, "length": int(length), "truncated": bool(truncated)})
    return accuracy_metrics(records), records


def accuracy_metrics(records: list[dict[str, Any]]) -> dict[str, float]:
    """Accuracy, format rate and mean length of per-problem records (one rank's, or all ranks' gathered)."""
    n = max(len(records), 1)
    return {"accuracy": sum(r["correct"] for r in records) / n, "format_rate": sum(r["formatted"] for r in records) / n,
            "mean_length": sum(r["length"] for r in records) / n if records else float("nan"), "n": len(records)}
