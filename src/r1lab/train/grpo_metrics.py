"""What a GRPO step logs: one plain record per completion (gathered from every rank), the rollout metrics over
them, the held-out evaluation's metrics, and the samples kept in samples.jsonl.

R1-Zero's signals (arXiv 2501.12948, Sec. 2.2.4, Figures 2-3) are logged for the training batch (``completion/``)
and the held-out set (``eval/``): the share of completions in the strict ``<think>``/``<answer>`` format, response
length (mean, p50, p90), the share cut off at the token limit, and the share with at least one reflection phrase
("wait", "let me check", "verify", ...: ``r1lab.evals.metrics.DEFAULT_REFLECTION_WORDS``)."""

from __future__ import annotations

import math

import torch

from r1lab.evals.accuracy import accuracy_metrics
from r1lab.evals.metrics import DEFAULT_REFLECTION_WORDS, reflection_stats
from r1lab.rewards.functions import format_reward


def row_records(batch, results, examples, adv: torch.Tensor) -> list[dict]:
    """One plain record per completion row: what the step's metrics and samples read, gathered from every rank."""
    lengths, truncated = batch.lengths.long().tolist(), batch.truncated.tolist()
    return [{"prompt_id": ex.id, "gold": ex.answer, "completion": text, "reward": r.total, "valid": r.valid,
             "breakdown": r.breakdown, "error": r.error, "advantage": float(a), "truncated": bool(t), "length": n,
             "formatted": format_reward(text, ex, None) == 1.0}
            for ex, text, r, a, t, n in zip(examples, batch.texts, results, adv.tolist(), truncated, lengths)]


def rollout_metrics(rows: list[dict], G: int) -> dict:
    rewards = torch.tensor([r["reward"] for r in rows], dtype=torch.float32)  # (B,)
    valid = torch.tensor([r["valid"] for r in rows])  # (B,)
    metrics = {"reward/mean": float(rewards[valid].mean()) if valid.any() else float("nan"),
               "reward/std": float(rewards[valid].std()) if valid.sum() > 1 else 0.0}
    for name in dict.fromkeys(n for r in rows for n in r["breakdown"]):  # rewards.apply_to: not every sample has all
        values = [r["breakdown"][name] for r in rows if r["valid"] and name in r["breakdown"]]
        metrics[f"reward/{name}"] = sum(values) / max(len(values), 1)
    groups = rewards.view(-1, G)
    metrics["reward/zero_variance_groups"] = float((groups.max(dim=1).values == groups.min(dim=1).values).float().mean())
    lengths = torch.tensor([r["length"] for r in rows], dtype=torch.float32)
    metrics.update({"tokens/generated": float(lengths.sum()), "completion/mean_length": float(lengths.mean()),
                    "completion/max_length": float(lengths.max()),
                    "completion/truncated_fraction": sum(r["truncated"] for r in rows) / len(rows),
                    "reward/invalid_fraction": float((~valid).float().mean())})
    metrics.update(shape_metrics("completion", rows))
    return metrics


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100): the smallest value with at least q% of the values at or
    below it; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1])


def shape_metrics(prefix: str, rows: list[dict]) -> dict:
    """Format rate, length percentiles and reflection share of completion records (each with ``completion``,
    ``length`` and ``formatted``); the mean length and truncation rate are logged beside them by the caller."""
    lengths = [float(r["length"]) for r in rows]
    return {f"{prefix}/format_rate": sum(bool(r["formatted"]) for r in rows) / max(len(rows), 1),
            f"{prefix}/p50_length": percentile(lengths, 50), f"{prefix}/p90_length": percentile(lengths, 90),
            f"{prefix}/reflection_share": reflection_stats([r["completion"] for r in rows],
                                                           DEFAULT_REFLECTION_WORDS)["reflection_share"]}


def eval_metrics(records: list[dict]) -> dict:
    """The greedy held-out pass's ``eval/`` metrics from its per-problem records (``r1lab.evals.accuracy``)."""
    summary = accuracy_metrics(records)
    out = {"eval/greedy_accuracy": summary["accuracy"], "eval/format_rate": summary["format_rate"],
           "eval/mean_length": summary["mean_length"],
           "eval/truncated_fraction": sum(bool(r["truncated"]) for r in records) / max(len(records), 1)}
    out.update({k: v for k, v in shape_metrics("eval", records).items() if k != "eval/format_rate"})
    return out


def eval_samples(records: list[dict], k: int) -> list[dict]:
    """``k`` held-out completions spread over the held-out set (the same problems at every evaluation, so a reader
    follows one problem through training), marked ``split: eval``."""
    keys = ("id", "gold", "completion", "answer", "correct", "formatted", "length", "truncated")
    picked = range(0, len(records), max(1, len(records) // max(k, 1)))[:k]
    return [{"split": "eval", **{key: records[i][key] for key in keys}} for i in picked]


def sample_rows(rows: list[dict], k: int) -> list[dict]:
    """``k`` completions spread over the batch (so several prompts are shown), with rewards and advantages, marked
    ``split: train`` (the held-out ones beside them are ``split: eval``, from ``eval_samples``)."""
    keys = ("prompt_id", "gold", "completion", "reward", "breakdown", "error", "advantage", "truncated", "length",
            "formatted")
    return [{"split": "train", **{key: rows[i][key] for key in keys}}
            for i in range(0, len(rows), max(1, len(rows) // max(k, 1)))[:k]]
