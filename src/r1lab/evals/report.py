"""The Markdown report and PNG plots of an evaluation run, and ``r1lab compare``'s side-by-side tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Metrics shown in the response table, in order, with how they read.
RESPONSE_ROWS = (
    ("format_rate", "R1 format (`<think>..</think><answer>..</answer>`) compliance"),
    ("extract_rate", "share of responses with an extractable answer"),
    ("truncated_rate", "share cut at max_new_tokens"),
    ("mean_length", "response length, tokens"),
    ("mean_length_correct", "length of correct responses"),
    ("mean_length_wrong", "length of wrong responses"),
    ("tokens_per_correct", "generated tokens per correct answer"),
    ("mean_prompt_tokens", "prompt length, tokens"),
    ("cost_per_1k", "cost of 1,000 questions answered once, $"),
    ("reflection_rate", "reflection phrases per response"),
    ("reflection_share", "share of responses with a reflection phrase"),
    ("score_errors", "samples the verifier could not score (left out)"),
)


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 100 else f"{value:.3f}"
    return str(value)


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def ks_of(metrics: dict) -> list[int]:
    return sorted(int(key.split("@")[1]) for key in metrics if key.startswith("pass@"))


def write_report(run_dir: Path, results: dict, records: list[dict]) -> Path:
    """report.md with the tables, pass_at_k.png and lengths.png."""
    m, s = results["metrics"], results["sampling"]
    plot_pass_at_k(results, run_dir / "pass_at_k.png")
    plot_lengths([r for r in records if r.get("variant", "default") == "default"], run_dir / "lengths.png")
    parts = [
        f"# Evaluation: {results['model']} on {results['task']}",
        f"{results['num_problems']} held-out problems, n = {s['n']} samples each; {s['decoding']} with temperature "
        f"{s['temperature']}, top-p {s['top_p']}, top-k {s['top_k']}, at most {s['max_new_tokens']} new tokens, "
        f"seed {s['seed']}, dtype {s['dtype']}.",
        "## Accuracy",
        "pass@k: unbiased estimator (Chen et al. 2021); maj@k: majority vote of k samples over answers the task's "
        f"verifier considers equal (maj@{s['n']} = cons@{s['n']}).",
        table(["k", "pass@k", "maj@k"], [[k, m.get(f"pass@{k}"), m.get(f"maj@{k}")] for k in ks_of(m)]),
        "![pass@k and maj@k](pass_at_k.png)",
        "## Responses",
        table(["metric", "value", "meaning"], [[key, m.get(key), text] for key, text in RESPONSE_ROWS]),
        f"Prices: ${results['prices_per_million']['input']} / ${results['prices_per_million']['output']} per "
        "million input / output tokens.",
        "![response lengths](lengths.png)",
    ]
    words = m.get("reflection_words") or {}
    if words:
        parts += ["## Reflection phrases (per response)",
                  table(["phrase", "per response"], [[w, v] for w, v in sorted(words.items(), key=lambda x: -x[1])])]
    if "variants" in results:
        n = s["n"]
        rows = [[name, v.get("pass@1"), v.get(f"maj@{n}"), v.get("format_rate"), v.get("mean_length")]
                for name, v in results["variants"].items()]
        spread = results["prompt_sensitivity"]["pass@1"]
        parts += ["## Prompt sensitivity",
                  table(["variant", "pass@1", f"maj@{n}", "format_rate", "mean_length"], rows),
                  f"pass@1 over variants: min {fmt(spread['min'])}, max {fmt(spread['max'])}, range "
                  f"{fmt(spread['range'])}, std {fmt(spread['std'])}."]
    examples = [r for r in records if r.get("variant", "default") == "default" and r["sample"] == 0][:3]
    if examples:
        parts.append("## Example responses")
        for r in examples:
            text = r["completion"] if len(r["completion"]) <= 600 else r["completion"][:600] + " …"
            parts.append(f"**{r['problem_id']}** (gold {r['gold']!r}, answer {r['answer']!r}, "
                         f"{'correct' if r['correct'] else 'wrong'}, {r['length']} tokens)\n\n```\n{text}\n```")
    path = run_dir / "report.md"
    path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pass_at_k(results: dict, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    m = results["metrics"]
    ks = ks_of(m)
    ax.plot(ks, [m[f"pass@{k}"] for k in ks], marker="o", label="pass@k")
    ax.plot(ks, [m[f"maj@{k}"] for k in ks], marker="s", label="maj@k")
    for name, v in (results.get("variants") or {}).items():
        if name != "default":
            ax.plot(ks, [v[f"pass@{k}"] for k in ks], alpha=0.4, linewidth=1, label=f"pass@k ({name})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{results['model']} on {results['task']}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_lengths(records: list[dict], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    right = [r["length"] for r in records if r["correct"]]
    wrong = [r["length"] for r in records if not r["correct"]]
    top = max(right + wrong + [1])
    bins = list(range(0, top + max(1, top // 30) + 1, max(1, top // 30)))
    if right:
        ax.hist(right, bins=bins, alpha=0.6, label=f"correct ({len(right)})")
    if wrong:
        ax.hist(wrong, bins=bins, alpha=0.6, label=f"wrong ({len(wrong)})")
    ax.set_xlabel("response length (tokens)")
    ax.set_ylabel("responses")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------------------
# r1lab compare
# ---------------------------------------------------------------------------------------------------------------
def load_results(run: str | Path) -> dict:
    path = Path(run)
    path = path / "results.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{run}: no results.json (pass an `r1lab eval` run folder)")
    return json.loads(path.read_text())


def _scalar_keys(metrics: dict) -> list[str]:
    """Metric keys holding numbers, in a reading order: pass@k, maj@k, then the rest as written."""
    keys = [k for k, v in metrics.items() if isinstance(v, (int, float)) or v is None]
    rank = lambda k: (0, int(k.split("@")[1])) if k.startswith("pass@") else (  # noqa: E731
        (1, int(k.split("@")[1])) if k.startswith("maj@") else (2, 0))
    return sorted(keys, key=lambda k: (rank(k), keys.index(k)))


def compare_runs(run_a: str | Path, run_b: str | Path) -> str:
    """Side-by-side tables of two evaluation runs: settings, metrics with B - A, and prompt variants."""
    a, b = load_results(run_a), load_results(run_b)
    out = [f"A: {run_a}\nB: {run_b}", ""]
    settings = [["model", a.get("model"), b.get("model")], ["task", a.get("task"), b.get("task")],
                ["problems", a.get("num_problems"), b.get("num_problems")]]
    for key in sorted(set(a.get("sampling", {})) | set(b.get("sampling", {}))):
        settings.append([key, a.get("sampling", {}).get(key), b.get("sampling", {}).get(key)])
    if a.get("method") or b.get("method"):
        settings.append(["method", a.get("method"), b.get("method")])
    out += [table(["setting", "A", "B"], settings), ""]
    if a.get("task") != b.get("task") or a.get("num_problems") != b.get("num_problems"):
        out += ["warning: the runs were evaluated on different problems; differences are not like for like", ""]
    ma, mb = a["metrics"], b["metrics"]
    keys = _scalar_keys({**ma, **mb})
    rows = []
    for key in keys:
        va, vb = ma.get(key), mb.get(key)
        delta = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
        rows.append([key, va, vb, f"{delta:+.3f}" if delta is not None else "–"])
    out += [table(["metric", "A", "B", "B - A"], rows)]
    if "variants" in a or "variants" in b:
        names = list(dict.fromkeys(list(a.get("variants", {})) + list(b.get("variants", {}))))
        rows = [[name, a.get("variants", {}).get(name, {}).get("pass@1"),
                 b.get("variants", {}).get(name, {}).get("pass@1")] for name in names]
        out += ["", table(["prompt variant", "pass@1 A", "pass@1 B"], rows)]
    return "\n".join(out)


METHOD_ROWS = (
    ("accuracy", "share of problems answered correctly"),
    ("mean_tokens", "tokens generated per problem (every candidate and step)"),
    ("tokens_per_correct", "generated tokens per correct answer"),
    ("mean_candidates", "responses the answer was chosen from"),
    ("extract_rate", "share of problems with an answer"),
    ("format_rate", "chosen responses in the R1 format"),
    ("cost_per_1k", "$ per 1,000 questions (one prompt read + generated tokens)"),
    ("reflection_rate", "reflection phrases per chosen response"),
    ("score_errors", "answers the verifier could not score"),
)


def write_method_report(run_dir: Path, results: dict, records: list[dict]) -> Path:
    """report.md of an inference-method run: settings, metrics and a few answers."""
    m, s = results["metrics"], results["sampling"]
    params = ", ".join(f"{k}={v!r}" for k, v in results["method_params"].items() if k != "prm" or v)
    parts = [
        f"# {results['method']}: {results['model']} on {results['task']}",
        f"{results['num_problems']} held-out problems; method parameters: {params}; {s['decoding']} with temperature "
        f"{s['temperature']}, top-p {s['top_p']}, seed {s['seed']}.",
        table(["metric", "value", "meaning"], [[key, m.get(key), text] for key, text in METHOD_ROWS]),
    ]
    shown = records[:3]
    if shown:
        parts.append("## Example answers")
        for r in shown:
            text = r["completion"] if len(r["completion"]) <= 600 else r["completion"][:600] + " …"
            parts.append(f"**{r['problem_id']}** (gold {r['gold']!r}, answer {r['answer']!r}, "
                         f"{'correct' if r['correct'] else 'wrong'}, {r['tokens']} tokens)\n\n```\n{text}\n```")
    path = run_dir / "report.md"
    path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return path
