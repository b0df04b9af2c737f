"""`r1lab filter`: every drop reason on hand-made rows with exact counts, the task verifier on program traces,
errors that name file/line/field, and the duplicate detectors (all-pairs and MinHash LSH agree)."""

from __future__ import annotations

import json
import random

import pytest

from r1lab.config import load_config
from r1lab.data.config import FilterConfig, GenerateConfig
from r1lab.data.dedup import exact_duplicates, jaccard, near_duplicates, near_duplicates_lsh, shingles
from r1lab.data.filters import format_report, run_filter
from r1lab.data.generate import TraceFileError, run_generate

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec "
         "romeo sierra tango uniform victor whiskey xray yankee zulu one two three four five six seven eight nine ten "
         "eleven twelve so the answer is 12").split()
LONG = " ".join(WORDS)  # 43 words, 41 distinct 3-word shingles
LONG_ONE_WORD_CHANGED = " ".join(["omega"] + WORDS[1:])  # one shingle differs: Jaccard 40/42 = 0.952


def row(pid: str, sample: int, completion: str, answer: str, finish: str = "stop") -> dict:
    return {"id": pid, "prompt": f"question {pid}", "completion": completion, "answer": answer, "sample": sample,
            "teacher": "hand", "usage": {"prompt_tokens": 3, "completion_tokens": len(completion.split())},
            "finish_reason": finish}


ROWS = [
    row("p1", 0, "So 47 + 38 = 85.", "85"),  # kept
    row("p1", 1, "So 47 + 38 = 75.", "85"),  # wrong
    row("p1", 2, "so 47 + 38   = 85.", "85"),  # exact duplicate of p1/0 after case and space folding
    row("p1", 3, "So 47 + 38 = 85", "85", finish="length"),  # truncated
    row("p2", 0, LONG, "12"),  # kept
    row("p2", 1, LONG_ONE_WORD_CHANGED, "12"),  # near duplicate of p2/0
    row("p2", 2, "思考 思考 这个 问题 answer is 12", "12"),  # language mixing: 8 Han words of 10
    row("p2", 3, "wait, " * 30 + "the answer is 12", "12"),  # a repetition loop
    row("p3", 0, "7", "7"),  # too short (< 3 chars)
    row("p3", 1, " ".join(f"item{i}" for i in range(60)) + " gives 7", "7"),  # too long (> 300 chars)
    row("p3", 2, "The answer is 7.", "7"),  # kept
    row("p3", 3, "Adding gives 7.", "7"),  # kept
    row("p3", 4, "I get 7 in the end.", "7"),  # third kept row of p3: over the cap of 2
    row("p4", 0, "I do not know.", "3"),  # no answer to extract: wrong
]


def write_rows(path, rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return str(path)


def filter_config(tmp_path, *overrides) -> FilterConfig:
    return load_config(FilterConfig, None, [f"input={tmp_path / 'in.jsonl'}", f"output={tmp_path / 'out.jsonl'}",
                                            *overrides])


def test_each_reason_is_counted_once_and_the_kept_rows_are_exact(tmp_path):
    write_rows(tmp_path / "in.jsonl", ROWS)
    cfg = filter_config(tmp_path, "verify.verifier=match", "readability.length_unit=chars",
                        "readability.min_length=3", "readability.max_length=300", "max_per_prompt=2")
    report = run_filter(cfg)
    assert report["dropped"] == {"verify_error": 0, "wrong": 2, "truncated": 1, "format": 0, "language": 1,
                                 "too_short": 1, "too_long": 1, "repetition": 1, "exact_duplicate": 1,
                                 "near_duplicate": 1, "over_cap": 1}
    kept = [json.loads(line) for line in open(cfg.output)]
    assert [(r["id"], r["sample"]) for r in kept] == [("p1", 0), ("p2", 0), ("p3", 2), ("p3", 3)]
    assert all(r["correct"] is True for r in kept)
    assert report["rows_in"] == 14 and report["rows_kept"] == 4
    assert report["correct_rate"] == pytest.approx(12 / 14)  # only p1/1 and p4/0 are wrong
    assert json.loads(open(f"{cfg.output}.report.json").read())["dropped"]["over_cap"] == 1
    table = format_report(report)
    assert "near_duplicate          1    7.1%" in table and "kept                    4   28.6%" in table


def test_filters_switch_off(tmp_path):
    write_rows(tmp_path / "in.jsonl", ROWS)
    cfg = filter_config(tmp_path, "verify.enabled=false", "readability.drop_truncated=false",
                        "readability.language=", "readability.max_repeated_ngrams=1", "dedup.exact=false",
                        "dedup.near=false")
    report = run_filter(cfg)
    assert report["rows_kept"] == 14 and sum(report["dropped"].values()) == 0
    assert all("correct" not in json.loads(line) for line in open(cfg.output))


def test_keep_wrong_labels_instead_of_dropping(tmp_path):
    write_rows(tmp_path / "in.jsonl", ROWS[:2])
    report = run_filter(filter_config(tmp_path, "verify.verifier=match", "verify.keep_wrong=true"))
    kept = [json.loads(line) for line in open(tmp_path / "out.jsonl")]
    assert [r["correct"] for r in kept] == [True, False] and report["dropped"]["wrong"] == 0


def test_think_format_filter(tmp_path):
    rows = [row("p", 0, "<think>4 + 3 = 7</think>\n<answer>7</answer>", "7"),
            row("p", 1, "<think>4 + 3 = 7</think> 7", "7"),  # no answer block
            row("p", 2, "<think>a</think><answer>7</answer><answer>7</answer>", "7")]  # two answer blocks
    write_rows(tmp_path / "in.jsonl", rows)
    report = run_filter(filter_config(tmp_path, "verify.verifier=match", "readability.format=think"))
    assert report["dropped"]["format"] == 2 and report["rows_kept"] == 1


def test_task_verifier_on_program_traces(tmp_path):
    """The task's own scorer labels exactly the traces without an injected mistake as correct."""
    task = ["task.train_size=30", "task.eval_size=5"]
    gen = load_config(GenerateConfig, None, task + [f"output.path={tmp_path / 'in.jsonl'}", "output.num_prompts=10",
                                                    "sampling.k=4", "teacher.error_rate=0.5", "output.progress=false"])
    run_generate(gen)
    report = run_filter(filter_config(tmp_path, *task, "verify.keep_wrong=true", "dedup.exact=false",
                                      "dedup.near=false"))
    kept = [json.loads(line) for line in open(tmp_path / "out.jsonl")]
    assert len(kept) == 40
    assert all(r["correct"] == (r["meta"]["mistake"] is None) for r in kept)
    assert 0 < sum(r["correct"] for r in kept) < 40
    assert report["correct_rate"] == pytest.approx(sum(r["correct"] for r in kept) / 40)


def test_bad_rows_name_file_line_and_field(tmp_path):
    bad = dict(ROWS[0])
    del bad["completion"]
    write_rows(tmp_path / "in.jsonl", [ROWS[0], bad])
    with pytest.raises(TraceFileError, match=r"in.jsonl:2: missing field 'completion'"):
        run_filter(filter_config(tmp_path, "verify.verifier=match"))
    write_rows(tmp_path / "in.jsonl", [ROWS[0]])  # id p1 is not a problem of rg:basic_arithmetic
    with pytest.raises(TraceFileError, match=r"in.jsonl:1: field 'id' = 'p1' is not a problem of task"):
        run_filter(filter_config(tmp_path, "task.train_size=20", "task.eval_size=3"))


# ---------------------------------------------------------------------------------------------------------------
# Duplicate detection
# ---------------------------------------------------------------------------------------------------------------
def test_shingles_and_jaccard():
    assert shingles("A b  C d", 3) == {"a b c", "b c d"}
    assert shingles("just two", 3) == {"just two"}  # shorter than a shingle: the whole text
    assert jaccard(frozenset("ab"), frozenset("bc")) == pytest.approx(1 / 3)
    assert jaccard(shingles(LONG, 3), shingles(LONG_ONE_WORD_CHANGED, 3)) == pytest.approx(40 / 42)
    assert exact_duplicates(["A  b", "a b", "c", "A B"]) == [None, 0, None, 0]


def test_lsh_finds_the_same_near_duplicates_as_all_pairs():
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(500)]
    bases = [[rng.choice(vocab) for _ in range(60)] for _ in range(30)]
    texts = [" ".join(b) for b in bases]
    for b in bases[:10]:  # ten near copies: one word changed in the middle (Jaccard about 0.9)
        copy = list(b)
        copy[30] = "changed"
        texts.append(" ".join(copy))
    exact = near_duplicates(texts, 0.85, 3)
    assert exact[:30] == [None] * 30 and exact[30:] == list(range(10))
    assert near_duplicates_lsh(texts, 0.85, 3, num_perm=128) == exact


def test_math_verifier_accepts_equivalent_answers(tmp_path):
    """verify.verifier=math goes through the math reward (math-verify): \\frac{1}{2} equals the gold 0.5."""
    rows = [row("h", 0, "It is \\boxed{\\frac{1}{2}}", "0.5"), row("h", 1, "It is \\boxed{2}", "0.5")]
    write_rows(tmp_path / "in.jsonl", rows)
    run_filter(filter_config(tmp_path, "verify.verifier=math", "verify.keep_wrong=true"))
    assert [json.loads(line)["correct"] for line in open(tmp_path / "out.jsonl")] == [True, False]
