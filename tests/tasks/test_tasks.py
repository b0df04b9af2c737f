"""Task loading: reasoning-gym by name, user JSONL/Parquet, held-out splits, and errors naming file/line/field."""

import json

import pytest

from r1lab.tasks import load_task
from r1lab.tasks.base import overlap_key
from r1lab.tasks.files import DatasetFormatError, read_examples


def test_reasoning_gym_task_split_is_disjoint_and_seeded():
    params = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"],
              "allow_parentheses": False, "allow_negation": False}
    # Only 100 distinct one-digit sums exist, so train and held-out generators collide: the split must drop them.
    task = load_task("rg:basic_arithmetic", params, seed=3, train_size=300, eval_size=20)
    held_out = {overlap_key(e) for e in task.eval}
    assert len(task.eval) == 20
    assert not any(overlap_key(e) in held_out for e in task.train)
    assert len(task.train) < 300
    again = load_task("rg:basic_arithmetic", params, seed=3, train_size=300, eval_size=20)
    assert [e.question for e in again.eval] == [e.question for e in task.eval]
    # The dataset's own verifier scores: the gold answer is right, something else is wrong.
    ex = task.eval[0]
    assert task.score(ex.answer, ex) == 1.0
    assert task.score(str(int(ex.answer) + 1), ex) == 0.0


def test_unknown_gym_dataset_and_bad_params():
    with pytest.raises(ValueError, match="rg:no_such_dataset"):
        load_task("rg:no_such_dataset")
    with pytest.raises(ValueError, match="rg:basic_arithmetic"):
        load_task("rg:basic_arithmetic", {"min_terms": 0})


def _write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")


def test_jsonl_task_prompt_and_messages(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"prompt": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(8)]
    rows.append({"messages": [{"role": "user", "content": "Capital of France?"}], "answer": "Paris"})
    _write_jsonl(path, rows)
    task = load_task(str(path), seed=0, eval_size=3)
    assert len(task.train) + len(task.eval) == 9 and len(task.eval) == 3
    assert {overlap_key(e) for e in task.train}.isdisjoint({overlap_key(e) for e in task.eval})
    france = next(e for e in task.train + task.eval if e.answer == "Paris")
    assert france.question == "Capital of France?"
    assert task.score(" paris ", france) == 1.0  # default verifier folds case and spaces
    numeric = next(e for e in task.train + task.eval if e.answer == "3")
    assert task.score("3.0", numeric) == 1.0 and task.score("4", numeric) == 0.0


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ('{"prompt": "x"', "d.jsonl:2: not valid JSON"),
        ({"prompt": "x"}, "d.jsonl:2: missing field 'answer'"),
        ({"answer": "1"}, "d.jsonl:2: needs field 'prompt'"),
        ({"prompt": 5, "answer": "1"}, "d.jsonl:2: field 'prompt' must be a string"),
        ({"messages": [{"role": "user"}], "answer": "1"}, r"d.jsonl:2: field 'messages\[0\]'"),
        ([1, 2], "d.jsonl:2: expected a JSON object"),
    ],
)
def test_malformed_jsonl_row_names_file_line_and_field(tmp_path, bad_row, message):
    path = tmp_path / "d.jsonl"
    _write_jsonl(path, [{"prompt": "ok", "answer": "1"}, bad_row])
    with pytest.raises(DatasetFormatError, match=message):
        read_examples(path)


def test_parquet_rows_are_validated(tmp_path):
    import datasets

    path = tmp_path / "d.parquet"
    datasets.Dataset.from_list([{"prompt": "a", "answer": "1"}, {"prompt": "b", "answer": None}]).to_parquet(str(path))
    with pytest.raises(DatasetFormatError, match=r"d.parquet:row 2: missing field 'answer'"):
        read_examples(path)


def test_held_out_larger_than_data_is_an_error(tmp_path):
    path = tmp_path / "d.jsonl"
    _write_jsonl(path, [{"prompt": "a", "answer": "1"}, {"prompt": "b", "answer": "2"}])
    with pytest.raises(ValueError, match="eval_size"):
        load_task(str(path), eval_size=5)


def test_unknown_task_name():
    with pytest.raises(ValueError, match="unknown task"):
        load_task("gsm8k")
