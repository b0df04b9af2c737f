"""The pipeline's summary: a table (stage, model, held-out accuracy, mean length, duration) printed and written as
summary.json / summary.md, and summary.png, the metrics after each stage (the R1 report's stage-by-stage view)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from r1lab.pipeline.config import PipelineConfig

COLUMNS = ("stage", "kind", "model", "accuracy", "mean_length", "duration")


def _relative(path: str | None, root: Path) -> str:
    if not path:
        return ""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def summary_rows(cfg: PipelineConfig, state: dict[str, Any]) -> list[dict[str, Any]]:
    """One row for the base model (when evaluated) and one per stage, in order."""
    evals, rows = state.get("evals", {}), []
    if "base" in evals:
        e = evals["base"]
        rows.append({"stage": "base", "kind": "", "model": cfg.base_model, "accuracy": e.get("accuracy"),
                     "mean_length": e.get("mean_length"), "duration_s": None, "status": "done"})
    for stage in cfg.stages:
        entry = state.get("stages", {}).get(stage.name) or {}
        e = evals.get(stage.name, {})
        model = e.get("model") or (str(cfg.artifact(stage.name)) if stage.kind in ("sft", "grpo", "rm") else "")
        rows.append({"stage": stage.name, "kind": stage.kind, "model": _relative(model, cfg.output_dir) or model,
                     "accuracy": e.get("accuracy"), "mean_length": e.get("mean_length"),
                     "duration_s": entry.get("duration_s"), "status": entry.get("status", "not run")})
    return rows


def _cell(row: dict, column: str) -> str:
    if column == "duration":
        from r1lab.pipeline.runner import fmt_duration

        return fmt_duration(row["duration_s"]) if row.get("duration_s") is not None else "-"
    value = row.get(column)
    if value is None or value == "":
        return "-"
    if column == "accuracy":
        return f"{value:.3f}"
    if column == "mean_length":
        return f"{value:.1f}"
    return str(value)


def format_table(rows: list[dict], markdown: bool = False) -> str:
    header = ("stage", "kind", "model", "held-out accuracy", "mean length", "duration")
    cells = [[_cell(r, c) for c in COLUMNS] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    fmt = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(c) for c in cells])


def plot_summary(rows: list[dict], path: Path, title: str = "") -> Path | None:
    """Held-out accuracy and mean length after each evaluated stage."""
    points = [r for r in rows if r.get("accuracy") is not None]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["stage"] for r in points]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((axes[0], "accuracy", "held-out accuracy (greedy)"),
                           (axes[1], "mean_length", "mean response length (tokens)")):
        ax.plot(range(len(points)), [r[key] for r in points], marker="o")
        ax.set_xticks(range(len(points)), names, rotation=20)
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(0, 1)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_summary(cfg: PipelineConfig, state: dict[str, Any], echo: bool = True) -> dict[str, Any]:
    rows = summary_rows(cfg, state)
    out = cfg.output_dir
    summary = {"pipeline": cfg.source, "output_dir": str(out), "base_model": cfg.base_model, "rows": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    eval_note = "greedy, one sample per held-out problem" if cfg.eval.enabled else "evaluation off"
    (out / "summary.md").write_text(f"# Pipeline {cfg.source or out}\n\nHeld-out evaluation after each model stage "
                                    f"({eval_note}).\n\n{format_table(rows, markdown=True)}\n\n![metrics after each "
                                    f"stage](summary.png)\n")
    plot = plot_summary(rows, out / "summary.png", title=f"Pipeline {Path(cfg.source).name or out.name}")
    summary["plot"] = str(plot) if plot else None
    if echo:
        print(format_table(rows))
    return summary
