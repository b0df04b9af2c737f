"""PNG plots of a run's metrics: the R1 report's Figures 2 and 3 at our scale (accuracy and length vs step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PANELS = (
    ("Reward (train)", ("reward/mean", "reward/accuracy", "reward/format", "reward/tag_count")),
    ("Held-out accuracy", ("eval/greedy_accuracy", "eval/sampled_accuracy", "eval/format_rate")),
    ("Response length (tokens)", ("completion/mean_length",)),
    ("KL to reference / entropy", ("loss/kl", "policy/entropy")),
)


def plot_training(records: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, (panel_title, keys) in zip(axes.flat, PANELS):
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
