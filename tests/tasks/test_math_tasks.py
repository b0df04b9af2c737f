"""Math tasks: a user file named ``math:PATH`` is checked by math-verify; reasoning-gym math datasets keep their
own scorers."""

import json
import re

import pytest

from r1lab.rewards import RewardContext, score_completion
from r1lab.rewards.mathcheck import verify_math
from r1lab.tasks import load_task
from r1lab.tasks.files import DatasetFormatError

ROWS = [
    {"prompt": "What is 1 divided by 2?", "answer": r"\frac{1}{2}"},
    {"prompt": "Solve 2x = 6.", "answer": "x=3"},
    {"prompt": "What is 40 + 10 percent?", "answer": r"50\%"},
    {"prompt": "Write one thousand two hundred thirty-four in digits.", "answer": "1234"},
    {"prompt": "What is 2 + 2?", "answer": "4"},
]


@pytest.fixture
def math_file(tmp_path):
    path = tmp_path / "math.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    return path


def _by_answer(task, answer):
    return next(e for e in task.train + task.eval if e.answer == answer)


# (gold, extracted answer, score with math-verify, score with the plain file verifier, why)
FILE_CASES = [
    (r"\frac{1}{2}", "0.5", 1.0, 0.0, "LaTeX gold accepts the decimal"),
    (r"\frac{1}{2}", r"\frac{2}{4}", 1.0, 0.0, "an unsimplified equal fraction"),
    (r"\frac{1}{2}", "0.25", 0.0, 0.0, "a wrong value"),
    ("x=3", "3", 1.0, 0.0, "the value of an assignment gold"),
    (r"50\%", "50", 1.0, 0.0, "percent gold, bare number"),
    ("1234", "1,234", 1.0, 1.0, "thousands separator (both verifiers)"),
    ("4", "4.0", 1.0, 1.0, "same number written as a float (both verifiers)"),
]


@pytest.mark.parametrize("gold, answer, with_math, plain", [c[:4] for c in FILE_CASES], ids=[c[4] for c in FILE_CASES])
def test_math_file_task_uses_math_verify(math_file, gold, answer, with_math, plain):
    math_task = load_task(f"math:{math_file}", seed=0, eval_size=2)
    plain_task = load_task(str(math_file), seed=0, eval_size=2)
    assert math_task.name == f"math:{math_file}"
    assert math_task.score(answer, _by_answer(math_task, gold)) == with_math
    assert plain_task.score(answer, _by_answer(plain_task, gold)) == plain


def test_math_file_task_keeps_the_file_rules(math_file, tmp_path):
    task = load_task(f"math:{math_file}", seed=0, eval_size=2)
    assert len(task.eval) == 2 and len(task.train) == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(DatasetFormatError, match="bad.jsonl:1: missing field 'answer'"):
        load_task(f"math:{bad}", eval_size=1)
    # task.params of a math: task are the verifier's settings; anything else is named with the allowed keys
    with pytest.raises(ValueError, match=r"task.params: unknown parameter 'min_terms'; allowed: timeout, workers"):
        load_task(f"math:{math_file}", {"min_terms": 2}, eval_size=2)
    with pytest.raises(ValueError, match=r"parameter 'timeout' must be a number of seconds > 0"):
        load_task(f"math:{math_file}", {"timeout": 0}, eval_size=2)


def test_math_file_task_uses_its_verifier_settings(math_file):
    """A math: task's scorer checks with the pool of its own settings (task.params), not the defaults."""
    from r1lab.rewards.mathcheck import _SHARED

    task = load_task(f"math:{math_file}", {"timeout": 7.5, "workers": 1}, seed=0, eval_size=2)
    half = _by_answer(task, r"\frac{1}{2}")
    assert task.score("0.5", half) == 1.0
    assert any(key[1:3] == (1, 7.5) for key in _SHARED)


def test_accuracy_reward_on_a_math_file_task(math_file):
    """End to end: the accuracy reward extracts the answer, the task's math-verify scorer checks it."""
    task = load_task(f"math:{math_file}", seed=0, eval_size=2)
    half = _by_answer(task, r"\frac{1}{2}")
    ctx = RewardContext(task=task)
    assert score_completion("<think>1/2</think><answer>0.5</answer>", half, {"accuracy": 1.0}, ctx).total == 1.0
    assert score_completion(r"so it is \boxed{0.4}", half, {"accuracy": 1.0}, ctx).total == 0.0


def test_reasoning_gym_math_dataset_keeps_its_own_scorer():
    """rg:fraction_simplification asks for lowest terms: its own scorer gives an equal but unsimplified fraction
    little credit, where math-verify (which only checks the value) accepts it."""
    task = load_task("rg:fraction_simplification", seed=1, train_size=20, eval_size=5)
    example = task.eval[0]
    num, den = (int(x) for x in re.findall(r"\d+", example.answer))  # gold styles vary: $\frac{a}{b}$, a/b, ...
    unsimplified = f"{2 * num}/{2 * den}"
    assert task.score(example.answer, example) == 1.0
    assert task.score(unsimplified, example) < 0.1
    assert verify_math(unsimplified, example.answer) == 1.0


@pytest.mark.parametrize("name", ["rg:chain_sum", "rg:basic_arithmetic", "rg:gsm_symbolic"])
def test_reasoning_gym_math_datasets_score_their_gold(name):
    """Their own scorers: full credit for the gold, less for another number (some give partial credit)."""
    task = load_task(name, seed=2, train_size=10, eval_size=3)
    example = task.eval[0]
    assert task.score(example.answer, example) == 1.0
    assert task.score(example.answer + "1", example) < 1.0
