"""The end-of-run report of r1lab zero / grpo, from a hand-built run folder."""

import json

from r1lab.train.run_summary import summary_lines


def write_eval(run, step, rows):
    (run / "eval").mkdir(exist_ok=True)
    (run / "eval" / f"step_{step}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_summary_table_completions_and_closing_lines(tmp_path):
    before_rows = [{"id": "e0", "gold": "9", "completion": "<think>6 plus 3\nis", "correct": False, "length": 64},
                   {"id": "e1", "gold": "51", "completion": "29 + 22", "correct": False, "length": 64},
                   {"id": "e2", "gold": "7", "completion": "x", "correct": False, "length": 64}]
    after_rows = [{"id": "e0", "gold": "9", "completion": "<think>6 + 3 = 9</think> <answer>9</answer>",
                   "correct": True, "length": 20},
                  {"id": "e1", "gold": "51", "completion": "<think>29 + 22 = 51</think> <answer>51</answer>",
                   "correct": True, "length": 24},
                  {"id": "e2", "gold": "7", "completion": "y", "correct": False, "length": 3}]
    write_eval(tmp_path, 0, before_rows)
    write_eval(tmp_path, 14, after_rows)
    before = {"step": 0, "eval/greedy_accuracy": 0.05, "eval/format_rate": 0.0, "eval/mean_length": 63.5}
    after = {"step": 14, "eval/greedy_accuracy": 0.62, "eval/format_rate": 0.935, "eval/mean_length": 24.25,
             "eval/p90_length": 31.0}
    lines = summary_lines(tmp_path, before, after, n=200)
    assert lines[-2] == "held-out accuracy: 0.050 -> 0.620 (n=200)"
    assert lines[-1] == "format rate: 0.000 -> 0.935"
    table = "\n".join(lines)
    assert "(step 0 -> 14)" in lines[0]
    row = next(line for line in lines if line.startswith("mean length"))
    assert row.split()[-2:] == ["63.5", "24.2"]  # 24.25 rounds half to even
    assert next(line for line in lines if line.startswith("p90 length")).split()[-2:] == ["-", "31"]
    # two problems, before and after, on one line each (newlines flattened)
    assert "held-out problem e0 (gold 9):" in table and "held-out problem e1 (gold 51):" in table
    assert "e2" not in table
    assert "  before [wrong, 64 tokens]: <think>6 plus 3 is" in table
    assert "  after [correct, 20 tokens]: <think>6 + 3 = 9</think> <answer>9</answer>" in table
