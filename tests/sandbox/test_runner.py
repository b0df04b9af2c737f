"""r1lab.sandbox runner and pool: passing, partial and failing programs, timeouts, the output cap, the plain-data
boundary, and infrastructure failures kept apart from wrong answers (docs/architecture.md principle 6)."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from r1lab.sandbox import (
    ExecutionResult, Job, SandboxError, SandboxLimits, SandboxPool, TestsError, run_many, run_program, sandbox_setup,
)
from r1lab.sandbox import pool as pool_module
from r1lab.sandbox import runner as runner_module

FAST = SandboxLimits(time_limit=2.0, grace=2.0)

ADD_TESTS = """
def check(candidate):
    assert candidate(1, 2) == 3
    assert candidate(-1, 1) == 0
    assert candidate(10, 5) == 15
    assert True, "a constant assert tests nothing and is not counted"
"""


def test_setup_is_fully_hardened_here():
    setup = sandbox_setup()
    assert setup.missing == ()  # this machine (bwrap 0.8, user namespaces on) needs no fallback
    assert setup.version.startswith("bubblewrap")


def test_correct_program_passes():
    result = run_program("def add(a, b):\n    return a + b\n", ADD_TESTS, "add", limits=FAST)
    assert result.status == "passed" and result.all_passed
    assert (result.passed, result.total, result.fraction) == (3, 3, 1.0)  # three counted asserts
    assert 0 < result.duration_s < FAST.time_limit


@pytest.mark.parametrize("body, passed", [
    ("return a + b if a > 0 else 5", 2),  # add(-1, 1) -> 5: only the second assert fails
    ("return a - b", 0),  # every assert wrong
    ("return a + b + (1 if a == 10 else 0)", 2),  # only the third assert fails
    ("raise ValueError('no')", 0),  # raising inside an assert fails that assert; the rest still run
])
def test_wrong_program_gets_the_share_of_asserts_passed(body, passed):
    result = run_program(f"def add(a, b):\n    {body}\n", ADD_TESTS, "add", limits=FAST)
    assert result.status == "failed" and not result.all_passed
    assert (result.passed, result.total) == (passed, 3)
    assert result.fraction == pytest.approx(passed / 3)


def test_assert_in_a_loop_is_one_test_and_a_stop_costs_a_test():
    tests = "for x in range(5):\n    assert f(x) == x * x\nassert f(2) == 4\n"
    # Fails for x == 3 only: the looped assert fails, the last one passes -> 1 of 2.
    wrong = run_program("def f(x):\n    return 0 if x == 3 else x * x\n", tests, "f", limits=FAST)
    assert (wrong.passed, wrong.total, wrong.fraction) == (1, 2, 0.5)
    # An exception outside any assert stops the tests: never-run asserts fail, and a stop caps the share below 1.
    stopped = run_program("def f(x):\n    return x * x\n", "y = f(1) + f('a')\nassert f(2) == 4\n", "f", limits=FAST)
    assert stopped.status == "failed" and stopped.passed == 0 and stopped.fraction == 0.0
    assert "TypeError" in stopped.error


def test_program_that_raises_while_loading_is_an_error_not_a_pass():
    result = run_program("def add(a, b):\n    return a + b\nraise RuntimeError('boom')\n", ADD_TESTS, "add",
                         limits=FAST)
    assert result.status == "error" and result.fraction == 0.0
    assert "RuntimeError: boom" in result.error


def test_tests_without_asserts_count_as_one_test_that_must_finish():
    tests = "if f() != 1:\n    raise AssertionError('wrong')\n"
    assert run_program("def f():\n    return 1\n", tests, "f", limits=FAST).all_passed
    failed = run_program("def f():\n    return 2\n", tests, "f", limits=FAST)
    assert (failed.passed, failed.total, failed.fraction) == (0, 1, 0.0)


def test_plain_data_crosses_the_boundary_intact():
    program = (
        "calls = []\n"
        "def echo(x, *, tag=None):\n"
        "    calls.append(x)\n"
        "    return x, tag, len(calls)\n"
    )
    tests = """
value = [1, 2.5, "s", None, True, (1, (2,)), {1: "a", (2, 3): [4]}, {5, 6}, frozenset([7]), b"\\x00\\xff", 1+2j,
         float("inf"), 10 ** 40]
out = echo(value, tag="t")
assert out == (value, "t", 1)
assert type(out[0][5]) is tuple and type(out[0][8]) is frozenset and type(out[0][0]) is int
assert echo(0)[2] == 2  # the program keeps its state between calls
"""
    result = run_program(program, tests, "echo", limits=FAST)
    assert result.all_passed, result.error


def test_non_data_return_and_exceptions_keep_their_meaning():
    program = (
        "class Always:\n"
        "    def __eq__(self, other):\n"
        "        return True\n"
        "def f(x):\n"
        "    if x < 0:\n"
        "        raise ValueError('negative')\n"
        "    return Always()\n"
    )
    tests = """
try:
    f(-1)
    raised = None
except ValueError as err:
    raised = str(err)
assert raised == 'negative'
assert f(1) == 1
"""
    result = run_program(program, tests, "f", limits=FAST)
    # The ValueError arrives as a ValueError; an object that claims equality with anything cannot cross.
    assert (result.passed, result.total) == (1, 2)


def test_wall_clock_timeout_of_a_sleeping_program():
    limits = SandboxLimits(time_limit=1.0, grace=2.0)
    started = time.monotonic()
    result = run_program("import time\ndef f():\n    time.sleep(60)\n", "assert f() is None", "f", limits=limits)
    elapsed = time.monotonic() - started
    assert result.status == "timeout" and result.fraction == 0.0
    assert elapsed < limits.time_limit + limits.grace


def test_output_is_capped_and_kept():
    limits = SandboxLimits(time_limit=3.0, max_output=1000)
    program = "def f():\n    print('a' * 300_000)\n    return 1\n"
    result = run_program(program, "assert f() == 1", "f", limits=limits)
    assert result.all_passed  # printing a lot is allowed; it is just not all kept
    assert result.output == "a" * 1000 and result.output_truncated


def test_broken_tests_are_a_data_error_not_a_wrong_answer():
    with pytest.raises(TestsError, match="line 1"):
        run_program("def f():\n    return 1\n", "assert f( == 1", "f", limits=FAST)
    with pytest.raises(TestsError, match="setup raised NameError"):
        run_program("def f():\n    return 1\n", "assert f() == 1", "f", setup="undefined_name", limits=FAST)


def _broken_setup(tmp_path, script: str):
    path = tmp_path / "fake-bwrap"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return dataclasses.replace(sandbox_setup(), bwrap=str(path), run_as=None)


def test_bwrap_failure_is_an_infrastructure_error(tmp_path, monkeypatch):
    fake = _broken_setup(tmp_path, "echo 'bwrap: Creating new namespace failed: Operation not permitted' >&2; exit 1")
    monkeypatch.setattr(runner_module, "sandbox_setup", lambda: fake)
    with pytest.raises(SandboxError, match="Creating new namespace failed"):
        run_program("def f():\n    return 1\n", "assert f() == 1", "f", limits=FAST)


def test_sandbox_that_never_starts_is_an_infrastructure_error(tmp_path, monkeypatch):
    fake = _broken_setup(tmp_path, "exec sleep 30")
    monkeypatch.setattr(runner_module, "sandbox_setup", lambda: fake)
    started = time.monotonic()
    with pytest.raises(SandboxError, match="did not start within 0.5s"):
        run_program("def f():\n    return 1\n", "assert f() == 1", "f",
                    limits=SandboxLimits(time_limit=1.0, startup_timeout=0.5))
    assert time.monotonic() - started < 3.0  # killed, not waited for


def test_run_many_keeps_order_and_returns_errors_in_place():
    jobs = [
        Job("def f():\n    return 1\n", "assert f() == 1", "f"),
        Job("def f():\n    return 1\n", "assert f( == 1", "f"),  # broken tests
        Job("def f():\n    return 2\n", "assert f() == 1", "f"),
    ]
    results = run_many(jobs, FAST, workers=2)
    assert isinstance(results[0], ExecutionResult) and results[0].all_passed
    assert isinstance(results[1], TestsError)
    assert isinstance(results[2], ExecutionResult) and results[2].fraction == 0.0


def test_pool_runs_at_most_workers_at_once(monkeypatch):
    active, peak, lock = [0], [0], threading.Lock()

    def fake_run(*args):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return "done"

    monkeypatch.setattr(pool_module, "run_program", fake_run)
    with SandboxPool(workers=3) as pool:
        assert pool.map([Job("", "")] * 12) == ["done"] * 12
    assert peak[0] == 3  # bounded, and actually parallel
