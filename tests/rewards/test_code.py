"""r1lab.rewards.code: code extraction, the reward tiers of the R1 explainer, parameters, the speed bonus, and
infrastructure failures surfacing as invalid samples rather than zeros. Programs really run in the sandbox."""

from __future__ import annotations

import dataclasses
import math

import pytest

from r1lab.rewards import code as code_module
from r1lab.rewards.code import CodeRewardParams, code_reward, extract_code
from r1lab.rewards.combine import score_batch
from r1lab.rewards.functions import REWARDS, RewardContext, is_batched
from r1lab.sandbox import sandbox_setup
from r1lab.sandbox import pool as pool_module
from r1lab.sandbox import runner as runner_module
from r1lab.sandbox import warm as warm_module
from r1lab.types import Example

TESTS = "assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(2, 2) == 4\n"
ADD = Example(id="add", answer="", prompt="Write add(a, b).", meta={"tests": TESTS, "entry_point": "add"})
STUB = Example(id="stub", answer="", prompt="Complete add.",
               meta={"tests": TESTS, "entry_point": "add", "setup": 'def add(a, b):\n    """Sum."""\n'})
FAST = {"time_limit": 1.0}


def fenced(body: str, lang: str = "python") -> str:
    return f"Here is my solution.\n```{lang}\n{body}\n```\nDone."


RIGHT = "def add(a, b):\n    return a + b"
# (completion, example, expected reward with the default tiers, why)
TIERS = [
    ("I do not know how to do this.", ADD, 0.0, "prose: not code"),
    ("<answer>use the plus operator</answer>", ADD, 0.0, "an answer in words is not code"),
    ("The answer is 42", ADD, 0.0, "a bare expression is not a program"),
    (fenced("def add(a, b)\n    return a + b"), ADD, 0.1, "a Python block that does not parse: syntax_error"),
    (fenced("int add(int a, int b) { return a + b; }", "cpp"), ADD, 0.1, "code, but not Python: syntax_error"),
    ("<answer>def add(a, b) return a + b</answer>", ADD, 0.1, "code-shaped answer that does not parse"),
    (fenced("def add(a, b):\n    return a - b"), ADD, 0.2 + 0.8 * 1 / 3, "passes 1 of 3 asserts (0 - 0)"),
    (fenced("def add(a, b):\n    return a * b"), ADD, 0.2 + 0.8 * 2 / 3, "passes 2 of 3 (0 * 0, 2 * 2)"),
    (fenced("def add(a, b):\n    return None"), ADD, 0.2, "compiles, passes nothing: the compiles tier"),
    (fenced(RIGHT + "\nraise RuntimeError('at import')"), ADD, 0.2, "crashes while loading: compiles tier"),
    (fenced("def add(a, b):\n    while True:\n        pass"), ADD, 0.2, "runs past the time limit"),
    (fenced(RIGHT + "\nimport os\nos._exit(0)"), ADD, 0.2, "exits 0 before the tests: no pass"),
    (fenced(RIGHT), ADD, 1.0, "correct: 1"),
    (f"<think>easy</think><answer>{RIGHT}</answer>", ADD, 1.0, "correct program in answer tags, no fence"),
    (RIGHT + "\n", ADD, 1.0, "the whole completion is the program"),
    (fenced("def add(a, b):\n    return 0") + fenced(RIGHT), ADD, 1.0, "the last fenced block wins"),
    (fenced(RIGHT) + fenced("def add(a, b):\n    return 0"), ADD, 0.2 + 0.8 / 3, "... also when it is worse"),
    ("```python\n" + RIGHT + "\n", ADD, 1.0, "a block cut off by the length limit still counts"),
    (fenced("    return a + b", ""), STUB, 1.0, "a bare body continues the setup's stub (HumanEval style)"),
    (fenced(RIGHT), STUB, 1.0, "the whole function after the setup's stub replaces it"),
]


@pytest.fixture(scope="module")
def tier_scores():
    """All tier cases in one batch: they run concurrently on the sandbox pool, as in training."""
    ctx = RewardContext(task=None, params={"code": FAST})
    return code_reward([c[0] for c in TIERS], [c[1] for c in TIERS], ctx)


@pytest.mark.parametrize("index", range(len(TIERS)), ids=[c[3] for c in TIERS])
def test_reward_tiers(tier_scores, index):
    assert tier_scores[index] == pytest.approx(TIERS[index][2])


def test_registered_as_a_batched_reward():
    assert REWARDS.get("code") is code_reward and is_batched(code_reward)


@pytest.mark.parametrize("text, expected", [
    (fenced("x = 1") + fenced("y = 2", "py"), "y = 2\n"),  # last block
    (fenced("x = 1") + fenced("SELECT 1", "sql"), "x = 1\n"),  # a Python block beats a later non-Python one
    (fenced("SELECT 1", "sql"), "SELECT 1\n"),  # ... but a lone foreign block is still code
    ("<answer>x = 1</answer>", "x = 1"),
    ("42", None),  # a bare expression
    ("no code here", None),
])
def test_extract_code(text, expected):
    assert extract_code(text) == expected


def test_tier_values_are_configurable():
    wrong = [fenced("def add(a, b):\n    return a - b"), fenced("def add(a, b)")]
    params = {"code": {**FAST, "partial_credit": False, "syntax_error": 0.05, "compiles": 0.3}}
    assert code_reward(wrong, [ADD, ADD], RewardContext(task=None, params=params)) == [0.3, 0.05]
    zero = {"code": {**FAST, "compiles": 0.0}}  # the brief's plain "fraction of tests passed"
    assert code_reward(wrong[:1], [ADD], RewardContext(task=None, params=zero)) == [pytest.approx(1 / 3)]


@pytest.mark.parametrize("params, message", [
    ({"partial": True}, "unknown parameter 'partial'; allowed: syntax_error, compiles, partial_credit"),
    ({"syntax_error": 2}, "'syntax_error' must be a number in \\[0, 1\\]"),
    ({"partial_credit": "yes"}, "'partial_credit' must be true or false"),
    ({"speed_bonus": -1}, "'speed_bonus' must be a number >= 0"),
    ({"workers": 1.5}, "'workers' must be an integer"),
    ({"time_limit": 0}, "time_limit must be a positive number"),
])
def test_bad_parameters_name_the_reward_and_key(params, message):
    with pytest.raises(ValueError, match="reward 'code': .*" + message):
        CodeRewardParams.from_dict(params)


def test_speed_bonus_against_the_reference():
    sleepy = "import time\ndef add(a, b):\n    time.sleep(0.1)\n    return a + b\n"  # 3 calls: 0.3 s
    slow_ex = dataclasses.replace(ADD, id="slow-ref", meta={**ADD.meta, "reference": sleepy})
    fast_ex = dataclasses.replace(ADD, id="fast-ref", meta={**ADD.meta, "reference": RIGHT + "\n"})
    no_ref = dataclasses.replace(ADD, id="no-ref")
    ctx = RewardContext(task=None, params={"code": {"time_limit": 3.0, "speed_bonus": 0.5}})
    scores = code_reward([fenced(RIGHT), fenced(sleepy), fenced(RIGHT), fenced("def add(a, b):\n    return 0")],
                         [slow_ex, fast_ex, no_ref, no_ref], ctx)
    assert scores[0] == 1.5  # far more than twice as fast as the sleeping reference: the full bonus
    assert scores[1] == 1.0  # slower than the reference: no bonus, no penalty
    assert isinstance(scores[2], ValueError) and "reference" in str(scores[2])  # cannot compute the bonus
    assert scores[3] == pytest.approx(0.2 + 0.8 / 3)  # failing programs never need the reference


def test_example_without_tests_fails_that_sample_only():
    bare = Example(id="bare", answer="4", prompt="2+2?")
    scores = code_reward([fenced(RIGHT), fenced(RIGHT)], [bare, ADD], RewardContext(task=None, params={"code": FAST}))
    assert isinstance(scores[0], ValueError) and "no code tests" in str(scores[0])
    assert scores[1] == 1.0


@pytest.mark.parametrize("sandbox", ["warm", "cold"])
def test_infrastructure_failure_marks_the_sample_invalid_not_zero(tmp_path, monkeypatch, sandbox):
    fake = tmp_path / "fake-bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    broken = dataclasses.replace(sandbox_setup(), bwrap=str(fake), run_as=None)
    monkeypatch.setattr(runner_module, "sandbox_setup", lambda: broken)
    monkeypatch.setattr(warm_module, "sandbox_setup", lambda: broken)
    pool_module.shared_pool.cache_clear()  # warm sandboxes started earlier in this process would still work
    ctx = RewardContext(task=None, params={"code": {**FAST, "sandbox": sandbox}})
    results = score_batch([fenced(RIGHT), "no code"], [ADD, ADD], {"code": 1.0}, ctx)
    assert not results[0].valid and math.isnan(results[0].total)  # invalid: no advantage, not a zero
    assert "SandboxError" in results[0].error and "uid map" in results[0].error
    assert results[1].valid and results[1].total == 0.0  # no program to run: a genuine 0


def test_the_reward_module_imports_the_sandbox_lazily():
    # Registering the reward (importing the module) must stay light: no module-level import of r1lab.sandbox.
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(code_module))
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [n.module for n in top_level if isinstance(n, ast.ImportFrom)]
    names += [a.name for n in top_level if isinstance(n, ast.Import) for a in n.names]
    assert names and not any(name.startswith("r1lab.sandbox") for name in names)
