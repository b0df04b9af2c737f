"""What a GRPO step logs: one plain record per completion (gathered from every rank), the rollout metrics over
them, and the samples kept in samples.jsonl."""

from __future__ import annotations

import torch


def row_records(batch, results, examples, adv: torch.Tensor) -> list[dict]:
    """One plain record per completion row: what the step's metrics and samples read, gathered from every rank."""
    lengths, truncated = batch.lengths.long().tolist(), batch.truncated.tolist()
    return [{"prompt_id": ex.id, "gold": ex.answer, "completion": text, "reward": r.total, "valid": r.valid,
             "breakdown": r.breakdown, "error": r.error, "advantage": float(a), "truncated": bool(t), "length": n}
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
    return metrics


def sample_rows(rows: list[dict], k: int) -> list[dict]:
    """``k`` completions spread over the batch (so several prompts are shown), with rewards and advantages."""
    keys = ("prompt_id", "gold", "completion", "reward", "breakdown", "error", "advantage", "truncated")
    return [{key: rows[i][key] for key in keys} for i in range(0, len(rows), max(1, len(rows) // max(k, 1)))[:k]]
