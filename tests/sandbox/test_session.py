"""The python tool's sessions: state kept across the calls of one sample and gone at its end; errors, timeouts,
crashes and a spent budget come back as text; per-call and per-sample limits hold."""

from __future__ import annotations

import time

from r1lab.sandbox import SandboxLimits
from r1lab.sandbox.session import SessionPool

LIMITS = SandboxLimits(time_limit=2.0, grace=2.0)


def test_state_is_kept_within_a_sample_and_lost_after_it():
    with SessionPool(LIMITS, call_time_limit=2.0) as pool:
        one = pool.open()
        assert one.run("x = 6 * 7\nimport math").text == ""
        assert one.run("print(x)\nmath.factorial(5)").text == "42\n120"  # the last expression's repr, like a REPL
        assert one.run("def sq(v):\n    return v * v\nsq(x)").text == "1764"
        one.close()
        two = pool.open()
        result = two.run("print(x)")
        assert result.status == "error" and "NameError: name 'x' is not defined" in result.text
        two.close()
        assert pool.started == 1  # the same sandbox served both samples: its clean-up ended the first one's state


def test_an_error_is_text_with_the_cells_traceback_and_the_session_goes_on():
    with SessionPool(LIMITS, call_time_limit=2.0) as pool:
        session = pool.open()
        session.run("y = 1")
        failed = session.run("def f():\n    return 1 / 0\nf()")
        assert failed.status == "error" and failed.error == "ZeroDivisionError: division by zero"
        assert "Traceback (most recent call last):" in failed.text and "return 1 / 0" in failed.text
        assert failed.text.endswith("ZeroDivisionError: division by zero")
        assert "harness" not in failed.text  # only the cell's own frames
        assert session.run("raise SystemExit(3)").status == "error"  # leaving is that cell's failure
        assert session.run("y + 1").text == "2"  # the state survived the errors
        session.close()


def test_a_timeout_is_text_restarts_the_interpreter_and_counts_against_the_sample():
    with SessionPool(LIMITS, call_time_limit=0.5, sample_time_limit=1.0) as pool:
        session = pool.open()
        session.run("z = 5")
        started = time.monotonic()
        slow = session.run("while True:\n    pass")
        assert time.monotonic() - started < 3.0
        assert slow.status == "timeout" and "TimeoutError: the call ran past 0.5s" in slow.text
        after = session.run("print('alive')\nz")
        assert after.status == "error" and after.text.startswith("(the Python session was restarted")
        assert "NameError" in after.text
        session.run("while True:\n    pass")  # a second timeout spends the rest of the 1 s budget
        refused = session.run("1 + 1")
        assert refused.status == "refused" and "time budget" in refused.text
        session.close()


def test_output_is_truncated_and_a_crash_is_text():
    with SessionPool(LIMITS, call_time_limit=2.0, max_output_chars=100) as pool:
        session = pool.open()
        big = session.run("print('a' * 10000)")
        assert big.truncated and big.text == "a" * 100 + "\n[output truncated]"
        crash = session.run("import os\nos._exit(1)")
        assert crash.status == "crashed" and "the interpreter died" in crash.text
        assert session.run("1 + 2").text.endswith("3")  # a fresh interpreter answers the next call
        session.close()


def test_a_syntax_error_shows_the_line_not_the_interpreter():
    with SessionPool(LIMITS, call_time_limit=2.0) as pool:
        session = pool.open()
        result = session.run("x = = 1")
        session.close()
    assert result.status == "error" and result.error.startswith("SyntaxError")
    assert "x = = 1" in result.text and "ast.py" not in result.text and "Traceback" not in result.text
