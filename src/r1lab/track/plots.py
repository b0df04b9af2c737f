"""PNG plots of a run's metrics: the R1 report's Figures 2 and 3 at our scale (accuracy and length vs step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PANELS = (
    ("Reward (train)", ("reward/mean", "reward/accuracy", "reward/format", "reward/format_partial",
                        "reward/tag_count")),
    ("Held-out accuracy", ("eval/greedy_accuracy", "eval/sampled_accuracy")),
    ("Format rate (strict <think>/<answer>)", ("completion/format_rate", "eval/format_rate")),
    ("Response length (tokens)", ("completion/mean_length", "completion/p50_length", "completion/p90_length",
                                  "eval/mean_length")),
    ("Truncated / reflection share", ("completion/truncated_fraction", "eval/truncated_fraction",
                                      "completion/reflection_share", "eval/reflection_share")),
    ("KL to reference / entropy", ("loss/kl", "policy/entropy")),
)


def plot_training(records: list[dict[str, Any]], path: str | Path, title: str = "",
                  panels: tuple = PANELS, columns: int = 2) -> Path:
    """One panel per (title, metric keys): each key's values against ``step``, from a run's metrics records.
    The default panels are GRPO's; SFT, the reward model and the PRM pass their own."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 3.5 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (panel_title, keys) in zip(axes.flat, panels):
        for key in keys:
            points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=3, label=key)
        ax.set_title(panel_title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
