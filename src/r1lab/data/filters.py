"""``r1lab filter``: rejection sampling and readability filters over trace rows (DeepSeek-R1 report, Sec. 2.3.3).

The report keeps ~600K reasoning samples from its RL checkpoint: only correct answers (rule-based verifiers),
and no chains of thought with mixed languages, long paragraphs or code blocks. Here each row passes, in order:

1. ``verify``: the verifier (the task's scorer through the accuracy reward, or the math reward, or answer match)
   sets ``correct``; wrong rows are dropped unless ``keep_wrong`` (journey learning needs them). A verifier that
   fails is reported as ``verify_error``, never counted as wrong.
2. readability: truncated rows, a missing think/answer layout, language mixing (the language_consistency reward),
   length bounds, repetition loops (the repetition reward's repeated n-gram share).
3. exact, then near duplicates (``r1lab.data.dedup``), within a prompt or across the file.
4. at most ``max_per_prompt`` rows per prompt.

A row is dropped for the first reason it fails; the report counts rows per reason.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from r1lab.data.jsonl import jsonl_rows
from r1lab.data.generate import TraceFileError
from r1lab.types import Example

REASONS = ("verify_error", "wrong", "truncated", "format", "language", "too_short", "too_long", "repetition",
           "exact_duplicate", "near_duplicate", "over_cap")
REQUIRED = ("id", "prompt", "completion", "sample")


def read_traces(path: str | Path, required: tuple[str, ...] = REQUIRED) -> list[tuple[int, dict]]:
    """(line number, row) of every row; a broken line or a missing field is a TraceFileError naming file, line
    and field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trace file not found: {path}")
    rows = []
    for lineno, row in jsonl_rows(path, TraceFileError):
        if not isinstance(row, dict):
            raise TraceFileError(f"{path}:{lineno}: expected a JSON object")
        for name in required:
            if name not in row or row[name] is None:
                raise TraceFileError(f"{path}:{lineno}: missing field '{name}'")
        if not isinstance(row["completion"], str):
            raise TraceFileError(f"{path}:{lineno}: field 'completion' must be a string")
        rows.append((lineno, row))
    return rows


class _AnswerMatch:
    """A stand-in task whose scorer compares with the row's own answer (numbers by value, text folded)."""

    name = "answer match"

    @staticmethod
    def score(answer: str, example: Example) -> float:
        from r1lab.tasks.base import normalised_match

        return normalised_match(answer, example.answer)


def _examples_for(rows: list[tuple[int, dict]], cfg, path: str) -> tuple[list[Example], object, str]:
    """The Example each row is verified against, the task object and the reward that verifies."""
    v = cfg.verify
    if v.verifier == "task":
        from r1lab.tasks import load_task_config

        task = load_task_config(cfg.task)
        by_id = {e.id: e for e in task.train + task.eval}
        examples = []
        for lineno, row in rows:
            example = by_id.get(row["id"])
            if example is None:
                raise TraceFileError(f"{path}:{lineno}: field 'id' = {row['id']!r} is not a problem of task "
                                     f"{task.name}; set the filter's task section to the one r1lab generate used")
            if example.question != row["prompt"]:
                raise TraceFileError(f"{path}:{lineno}: field 'prompt' differs from task {task.name}'s problem "
                                     f"{row['id']}; the task section (seed, sizes, params) must match generate's")
            examples.append(example)
        return examples, task, "accuracy"
    examples = []
    for lineno, row in rows:
        if row.get("answer") is None:
            raise TraceFileError(f"{path}:{lineno}: missing field 'answer' (needed by verify.verifier={v.verifier})")
        examples.append(Example(id=row["id"], answer=str(row["answer"]), prompt=row["prompt"]))
    return examples, _AnswerMatch(), "accuracy" if v.verifier == "match" else "math"


def verify_rows(rows: list[tuple[int, dict]], cfg, path: str) -> list[bool | str]:
    """Per row: True/False (the verifier's verdict at ``verify.threshold``) or the error text of a failed check.
    Scoring goes through ``score_batch``, so the verdict is exactly the accuracy (or math) reward's."""
    from r1lab.rewards import RewardContext, score_batch

    examples, task, reward = _examples_for(rows, cfg, path)
    ctx = RewardContext(task=task, extraction=tuple(cfg.verify.extraction))
    results = score_batch([row["completion"] for _, row in rows], examples, {reward: 1.0}, ctx)
    return [r.error if not r.valid else r.total >= cfg.verify.threshold for r in results]


def _length(row: dict, unit: str, path: str, lineno: int) -> int:
    if unit == "chars":
        return len(row["completion"])
    if unit == "words":
        return len(row["completion"].split())
    tokens = (row.get("usage") or {}).get("completion_tokens")
    if not isinstance(tokens, int):
        raise TraceFileError(f"{path}:{lineno}: missing field 'usage.completion_tokens' (readability.length_unit="
                             "tokens); use chars or words for rows without usage")
    return tokens


def readability_reason(row: dict, cfg, path: str, lineno: int) -> str | None:
    """The first readability check ``row`` fails, or None."""
    from r1lab.rewards import RewardContext
    from r1lab.rewards.functions import format_reward
    from r1lab.rewards.shaping import language_consistency, repetition

    r = cfg.readability
    text = row["completion"]
    if r.drop_truncated and row.get("finish_reason") == "length":
        return "truncated"
    dummy = Example(id=row["id"], answer="")
    if r.format == "think" and format_reward(text, dummy, RewardContext(task=None)) < 1.0:
        return "format"
    if r.language and r.min_language_share > 0:
        ctx = RewardContext(task=None, params={"language_consistency": {"language": r.language}})
        if language_consistency(text, dummy, ctx) < r.min_language_share:
            return "language"
    if r.min_length or r.max_length:
        length = _length(row, r.length_unit, path, lineno)
        if r.min_length and length < r.min_length:
            return "too_short"
        if r.max_length and length > r.max_length:
            return "too_long"
    if r.max_repeated_ngrams < 1:
        ctx = RewardContext(task=None, params={"repetition": {"ngram_size": r.ngram_size, "max_penalty": -1.0}})
        if -repetition(text, dummy, ctx) > r.max_repeated_ngrams:
            return "repetition"
    return None


def _dedup(kept: list[tuple[int, dict]], cfg) -> dict[int, str]:
    """Index in ``kept`` -> 'exact_duplicate' / 'near_duplicate' for rows to drop; the first of a set stays."""
    from r1lab.data.dedup import exact_duplicates, near_duplicates, near_duplicates_lsh

    d = cfg.dedup
    if d.scope == "prompt":
        groups: dict[str, list[int]] = {}
        for i, (_, row) in enumerate(kept):
            groups.setdefault(row["id"], []).append(i)
        scopes = list(groups.values())
    else:
        scopes = [list(range(len(kept)))]
    dropped: dict[int, str] = {}
    for members in scopes:
        texts = [kept[i][1]["completion"] for i in members]
        if d.exact:
            for i, dup in zip(members, exact_duplicates(texts)):
                if dup is not None:
                    dropped[i] = "exact_duplicate"
        if d.near:
            rest = [i for i in members if i not in dropped]
            texts = [kept[i][1]["completion"] for i in rest]
            found = (near_duplicates(texts, d.threshold, d.shingle_words) if d.scope == "prompt"
                     else near_duplicates_lsh(texts, d.threshold, d.shingle_words, d.num_perm))
            for i, dup in zip(rest, found):
                if dup is not None:
                    dropped[i] = "near_duplicate"
    return dropped


def run_filter(cfg) -> dict:
    """Filter ``cfg.input`` into ``cfg.output``; returns the report (also written as JSON)."""
    rows = read_traces(cfg.input)
    dropped = {reason: 0 for reason in REASONS}
    verdicts: list[bool | str] = verify_rows(rows, cfg, cfg.input) if cfg.verify.enabled else [None] * len(rows)
    errors = []
    kept: list[tuple[int, dict]] = []
    for (lineno, row), verdict in zip(rows, verdicts):
        if isinstance(verdict, str):
            dropped["verify_error"] += 1
            errors.append(f"{cfg.input}:{lineno}: {verdict}")
            continue
        if verdict is not None:
            row = {**row, "correct": verdict}
            if not verdict and not cfg.verify.keep_wrong:
                dropped["wrong"] += 1
                continue
        reason = readability_reason(row, cfg, cfg.input, lineno)
        if reason:
            dropped[reason] += 1
            continue
        kept.append((lineno, row))
    duplicates = _dedup(kept, cfg)
    for reason in duplicates.values():
        dropped[reason] += 1
    kept = [item for i, item in enumerate(kept) if i not in duplicates]
    if cfg.max_per_prompt:
        per_prompt: dict[str, int] = {}
        capped = []
        for item in kept:
            n = per_prompt.get(item[1]["id"], 0)
            per_prompt[item[1]["id"]] = n + 1
            if n < cfg.max_per_prompt:
                capped.append(item)
            else:
                dropped["over_cap"] += 1
        kept = capped
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for _, row in kept:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out)  # never a half-written output
    verified = [v for v in verdicts if isinstance(v, bool)]
    report = {
        "input": cfg.input, "output": str(out), "rows_in": len(rows), "rows_kept": len(kept),
        "prompts_in": len({r["id"] for _, r in rows}), "prompts_kept": len({r["id"] for _, r in kept}),
        "correct_rate": sum(verified) / len(verified) if verified else None,
        "kept_correct": sum(1 for _, r in kept if r.get("correct")) if cfg.verify.enabled else None,
        "dropped": dropped, "verify_errors": errors[:20], "config": asdict(cfg),
    }
    report_path = Path(cfg.report or f"{cfg.output}.report.json")
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    report["report_path"] = str(report_path)
    return report


def format_report(report: dict) -> str:
    """The report as a table: rows dropped per reason, and what was kept."""
    n = report["rows_in"] or 1
    lines = [f"{'reason':<16} {'dropped':>8} {'share':>7}"]
    for reason, count in report["dropped"].items():
        lines.append(f"{reason:<16} {count:>8} {count / n:>7.1%}")
    lines.append(f"{'kept':<16} {report['rows_kept']:>8} {report['rows_kept'] / n:>7.1%}")
    if report["correct_rate"] is not None:
        lines.append(f"verifier accepted {report['correct_rate']:.1%} of {report['rows_in']} rows")
    lines.append(f"{report['prompts_kept']} of {report['prompts_in']} prompts keep at least one row")
    return "\n".join(lines)
