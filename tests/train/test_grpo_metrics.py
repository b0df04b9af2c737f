"""What a GRPO step and a held-out evaluation log, on hand-built records (values computed by hand)."""

import math

import pytest

from r1lab.train.grpo_metrics import eval_metrics, eval_samples, percentile, rollout_metrics, shape_metrics

GOOD = "<think>3 plus 4 is 7. Wait, let me check: 4 + 3 = 7.</think> <answer>7</answer>"
PLAIN = "The answer is 7."


def row(completion, length, reward=1.0, truncated=False, formatted=None):
    return {"prompt_id": "p", "gold": "7", "completion": completion, "reward": reward, "valid": True,
            "breakdown": {"accuracy": reward}, "error": None, "advantage": 0.0, "truncated": truncated,
            "length": length, "formatted": (completion == GOOD) if formatted is None else formatted}


def test_percentile_nearest_rank():
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 6.0, 7.0, 8.0, 9.0]
    assert percentile(values, 50) == 5.0  # ceil(0.5 * 10) = 5th smallest
    assert percentile(values, 90) == 9.0  # ceil(0.9 * 10) = 9th smallest
    assert percentile(values, 100) == 10.0
    assert percentile([3.0], 90) == 3.0
    assert math.isnan(percentile([], 50))


def test_shape_metrics_by_hand():
    rows = [row(GOOD, 30), row(PLAIN, 10), row(PLAIN, 20), row("Hmm, 7?", 40)]
    m = shape_metrics("completion", rows)
    assert m["completion/format_rate"] == 0.25
    assert m["completion/p50_length"] == 20.0  # sorted 10 20 30 40: 2nd
    assert m["completion/p90_length"] == 40.0  # ceil(3.6) = 4th
    assert m["completion/reflection_share"] == 0.5  # GOOD ("wait", "let me check") and "Hmm"


def test_rollout_metrics_carry_format_length_truncation_and_accuracy():
    rows = [row(GOOD, 30, 1.0), row(PLAIN, 10, 0.0, truncated=True), row(GOOD, 20, 1.0), row(PLAIN, 40, 0.0)]
    m = rollout_metrics(rows, G=2)
    assert m["reward/accuracy"] == 0.5
    assert m["completion/format_rate"] == 0.5
    assert m["completion/mean_length"] == 25.0
    assert m["completion/truncated_fraction"] == 0.25
    assert m["completion/p90_length"] == 40.0
    assert m["completion/reflection_share"] == 0.5


def eval_record(i, completion, length, correct, truncated=False):
    return {"id": f"e{i}", "completion": completion, "answer": "7", "gold": "7", "correct": correct,
            "formatted": completion == GOOD, "length": length, "truncated": truncated}


def test_eval_metrics_by_hand():
    records = [eval_record(0, GOOD, 30, True), eval_record(1, PLAIN, 64, False, truncated=True),
               eval_record(2, GOOD, 26, True), eval_record(3, GOOD, 40, False)]
    m = eval_metrics(records)
    assert m["eval/greedy_accuracy"] == 0.5
    assert m["eval/format_rate"] == 0.75
    assert m["eval/mean_length"] == 40.0
    assert m["eval/p50_length"] == 30.0 and m["eval/p90_length"] == 64.0
    assert m["eval/truncated_fraction"] == 0.25
    assert m["eval/reflection_share"] == 0.75


def test_eval_samples_spread_and_marked():
    records = [eval_record(i, GOOD, 10 + i, True) for i in range(10)]
    picked = eval_samples(records, 3)
    assert [p["id"] for p in picked] == ["e0", "e3", "e6"]
    assert all(p["split"] == "eval" and p["completion"] == GOOD for p in picked)
    assert eval_samples(records[:2], 4) == [{"split": "eval", **{k: r[k] for k in picked[0] if k != "split"}}
                                           for r in records[:2]]


@pytest.mark.parametrize("k", [0, 1])
def test_eval_samples_small_k(k):
    records = [eval_record(i, PLAIN, 5, False) for i in range(4)]
    assert len(eval_samples(records, k)) == k
