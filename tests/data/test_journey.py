"""Journey learning: exact journey texts in both layouts, the mix arithmetic, and a full generate -> filter ->
journey run whose journeys all end in the right answer (by the task's verifier) and keep the R1 format."""

from __future__ import annotations

import json

import pytest

from r1lab.config import load_config
from r1lab.data.config import FilterConfig, GenerateConfig, JourneyConfig
from r1lab.data.filters import run_filter
from r1lab.data.generate import TraceFileError, run_generate
from r1lab.data.journey import journey_text, mix_counts, run_journey
from r1lab.rewards.extract import extract_answer
from r1lab.rewards.functions import RewardContext, format_reward
from r1lab.types import Example

WRONG_PLAIN = "Ones: 7 + 8 = 15, write 5 carry 1.\nTens: 4 + 3 = 7, write 7.\nSo 47 + 38 = 75."
RIGHT_PLAIN = "Ones: 7 + 8 = 15, write 5 carry 1.\nTens: 4 + 3 + 1 = 8, write 8.\nSo 47 + 38 = 85."


def test_plain_journey_puts_the_right_attempt_last():
    text = journey_text(WRONG_PLAIN, RIGHT_PLAIN, "Wait, let me check that again.")
    assert text == f"{WRONG_PLAIN}\nWait, let me check that again.\n{RIGHT_PLAIN}"
    assert extract_answer(text) == "85"


def test_think_journey_keeps_one_answer_block():
    wrong = "<think>\n4 + 3 = 8\n</think>\n<answer>8</answer>"
    right = "<think>\n4 + 3 = 7\n</think>\n<answer>7</answer>"
    text = journey_text(wrong, right, "Wait.")
    assert text == "<think>\n4 + 3 = 8\nWait.\n4 + 3 = 7\n</think>\n<answer>7</answer>"  # the 8 is already stated
    hidden = journey_text("<think>\nadding\n</think>\n<answer>8</answer>", right, "Wait.")
    assert hidden == "<think>\nadding\nSo the answer is 8.\nWait.\n4 + 3 = 7\n</think>\n<answer>7</answer>"
    assert format_reward(hidden, Example(id="x", answer="7"), RewardContext(task=None)) == 1.0


@pytest.mark.parametrize("journeys, shortcuts, fraction, max_rows, expected", [
    (10, 30, 0.5, 0, (10, 10)),  # journeys are the scarce side: 10 + 10
    (10, 4, 0.5, 0, (4, 4)),  # shortcuts are scarce
    (10, 30, 0.25, 0, (10, 30)),  # 10 journeys are a quarter of 40
    (10, 30, 1.0, 0, (10, 0)),  # journeys only
    (10, 30, 0.0, 0, (0, 30)),  # shortcut only
    (10, 30, 0.5, 6, (3, 3)),  # capped
])
def test_mix_counts(journeys, shortcuts, fraction, max_rows, expected):
    assert mix_counts(journeys, shortcuts, fraction, max_rows) == expected


def test_generate_filter_journey_end_to_end(tmp_path):
    task = ["task.train_size=30", "task.eval_size=5"]
    run_generate(load_config(GenerateConfig, None, task + [
        f"output.path={tmp_path / 'traces.jsonl'}", "output.num_prompts=12", "sampling.k=4", "teacher.format=think",
        "teacher.error_rate=0.5", "output.progress=false"]))
    run_filter(load_config(FilterConfig, None, task + [
        f"input={tmp_path / 'traces.jsonl'}", f"output={tmp_path / 'labelled.jsonl'}", "verify.keep_wrong=true",
        "readability.format=think"]))
    labelled = [json.loads(line) for line in open(tmp_path / "labelled.jsonl")]
    both = {r["id"] for r in labelled if r["correct"]} & {r["id"] for r in labelled if not r["correct"]}
    right = sum(r["correct"] for r in labelled)
    cfg = load_config(JourneyConfig, None, [f"input={tmp_path / 'labelled.jsonl'}",
                                            f"output={tmp_path / 'journey.jsonl'}", "journey_fraction=0.5"])
    report = run_journey(cfg)
    rows = [json.loads(line) for line in open(tmp_path / "journey.jsonl")]
    assert report["journeys_available"] == len(both) > 0
    assert report["shortcuts_available"] == right
    expected = mix_counts(len(both), right, 0.5)
    assert (report["journey_rows"], report["shortcut_rows"]) == expected
    keys = [(r["id"], r["sample"]) for r in rows]
    assert len(set(keys)) == len(keys)  # still a unique key
    kinds = [r["meta"]["kind"] for r in rows]
    assert kinds.count("journey") == expected[0] and kinds.count("shortcut") == expected[1]
    for r in rows:
        assert extract_answer(r["completion"]) == r["answer"]  # the last, corrected answer is the gold one
        assert format_reward(r["completion"], Example(id=r["id"], answer=r["answer"]), RewardContext(task=None)) == 1
        if r["meta"]["kind"] == "journey":
            assert r["meta"]["reflection"] in r["completion"] and r["correct"] is True


def test_rows_without_correct_are_named(tmp_path):
    row = {"id": "a", "prompt": "q", "completion": "c", "sample": 0}
    (tmp_path / "in.jsonl").write_text(json.dumps(row) + "\n")
    cfg = load_config(JourneyConfig, None, [f"input={tmp_path / 'in.jsonl'}", f"output={tmp_path / 'out.jsonl'}"])
    with pytest.raises(TraceFileError, match=r"in.jsonl:1: missing field 'correct'"):
        run_journey(cfg)
