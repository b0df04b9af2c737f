"""Journey learning (O1 Replication Journey, Qin et al. 2024, arXiv 2410.18982).

"Shortcut learning" fine-tunes on correct solution paths only. Journey learning also shows the way there: a wrong
attempt, a reflection ("Wait, let me check that again."), then the corrected path, so the student learns to
notice and repair mistakes. From rows labelled with ``correct`` (``r1lab filter`` with
``verify.keep_wrong=true``) this builds, per prompt that has both, traces

    <wrong attempt> <reflection> <right attempt>

(in a think/answer layout the wrong attempt's answer becomes a sentence inside ``<think>`` and only the right
answer is tagged, so the format reward still holds and every extractor finds the right answer last), and mixes
them with shortcut (right-only) rows at ``journey_fraction``. ``meta.kind`` marks each row "journey" or
"shortcut".
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from r1lab.data.filters import REQUIRED, read_traces

_LAYOUT = re.compile(r"^\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*$", re.DOTALL)


def split_attempt(text: str) -> tuple[str, str | None]:
    """(reasoning, tagged answer) of a think/answer completion; (whole text, None) for any other layout."""
    m = _LAYOUT.match(text)
    return (m.group(1).strip(), m.group(2).strip()) if m else (text.strip(), None)


def journey_text(wrong: str, right: str, reflection: str) -> str:
    """A wrong attempt, the reflection, then the right attempt, in the right attempt's layout."""
    right_reasoning, right_answer = split_attempt(right)
    wrong_reasoning, wrong_answer = split_attempt(wrong)
    if right_answer is None:  # plain steps: the right attempt comes last, so every extractor finds its answer
        return f"{wrong.strip()}\n{reflection}\n{right.strip()}"
    last_line = wrong_reasoning.splitlines()[-1] if wrong_reasoning else ""
    if wrong_answer is not None and wrong_answer not in last_line:  # state the wrong answer before doubting it
        wrong_reasoning += f"\nSo the answer is {wrong_answer}."
    return f"<think>\n{wrong_reasoning}\n{reflection}\n{right_reasoning}\n</think>\n<answer>{right_answer}</answer>"


def build_journeys(rows: list[dict], reflections: list[str], per_prompt: int, rng: random.Random) -> list[dict]:
    """Journey rows: per prompt, up to ``per_prompt`` distinct wrong attempts, each paired with a right one."""
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        by_id.setdefault(row["id"], []).append(row)
    out = []
    for pid, group in by_id.items():
        wrong = [r for r in group if not r["correct"]]
        right = [r for r in group if r["correct"]]
        if not wrong or not right:
            continue
        for j, w in enumerate(rng.sample(wrong, min(per_prompt, len(wrong)))):
            r = right[j % len(right)]
            reflection = rng.choice(reflections)
            usage_w, usage_r = w.get("usage") or {}, r.get("usage") or {}
            out.append({
                "id": pid, "prompt": r["prompt"],
                "completion": journey_text(w["completion"], r["completion"], reflection),
                "answer": r.get("answer"), "sample": j, "teacher": r.get("teacher"),
                "usage": {"prompt_tokens": int(usage_r.get("prompt_tokens", 0)),
                          "completion_tokens": int(usage_w.get("completion_tokens", 0))
                          + int(usage_r.get("completion_tokens", 0))},
                "finish_reason": "stop", "correct": True,
                "meta": {"kind": "journey", "wrong_sample": w["sample"], "right_sample": r["sample"],
                         "reflection": reflection},
            })
    return out


def mix_counts(journeys: int, shortcuts: int, fraction: float, max_rows: int = 0) -> tuple[int, int]:
    """How many journey and shortcut rows to take: the largest mix with the requested journey share that the
    available rows allow (capped at ``max_rows`` when > 0)."""
    if fraction >= 1:
        total = journeys
    elif fraction <= 0:
        total = shortcuts
    else:
        total = int(min(journeys / fraction, shortcuts / (1 - fraction)) + 1e-9)
    if max_rows:
        total = min(total, max_rows)
    n_journey = min(journeys, round(fraction * total))
    return n_journey, min(shortcuts, total - n_journey)


def run_journey(cfg) -> dict:
    """Build ``cfg.output`` from ``cfg.input``; returns a report (also written to OUTPUT.report.json)."""
    rows = [row for _, row in read_traces(cfg.input, REQUIRED + ("correct",))]
    rng = random.Random(cfg.seed)
    journeys = build_journeys(rows, list(cfg.reflections), cfg.journeys_per_prompt, rng)
    shortcuts = [{**r, "meta": {**(r.get("meta") or {}), "kind": "shortcut"}} for r in rows if r["correct"]]
    n_journey, n_shortcut = mix_counts(len(journeys), len(shortcuts), cfg.journey_fraction, cfg.max_rows)
    chosen = rng.sample(journeys, n_journey) + rng.sample(shortcuts, n_shortcut)
    rng.shuffle(chosen)
    # (id, sample) stays a unique key in the output: number each prompt's rows again, keeping the source index
    count: dict[str, int] = {}
    for i, row in enumerate(chosen):
        meta = dict(row["meta"])
        if meta["kind"] == "shortcut":
            meta["source_sample"] = row["sample"]
        chosen[i] = {**row, "sample": count.setdefault(row["id"], 0), "meta": meta}
        count[row["id"]] += 1
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in chosen:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out)
    report = {
        "input": cfg.input, "output": str(out), "rows_in": len(rows),
        "prompts": len({r["id"] for r in rows}),
        "prompts_with_wrong_and_right": len({j["id"] for j in journeys}),
        "journeys_available": len(journeys), "shortcuts_available": len(shortcuts),
        "journey_rows": n_journey, "shortcut_rows": n_shortcut, "journey_fraction": cfg.journey_fraction,
    }
    Path(f"{cfg.output}.report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
