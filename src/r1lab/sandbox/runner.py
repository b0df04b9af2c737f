"""Run one untrusted program against its tests in the sandbox and say what happened.

The host starts bwrap with the harness (harness.py) inside, sends the job on stdin, and reads the harness's
report from stdout; only lines carrying this run's random token count. Outcomes:

- a report -> ``ExecutionResult`` (passed / failed / error / timeout / crashed): the program's doing;
- no report although the harness said it was ready -> "crashed" (the program killed its harness) or
  "timeout" (the wall clock ran out): also the program's doing, scored as a failure;
- bwrap failing, the harness never becoming ready, or the harness reporting an internal failure ->
  ``SandboxError`` (infrastructure: the sample is invalid, not wrong); broken tests -> ``TestsError``.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from r1lab.sandbox.bwrap import sandbox_setup
from r1lab.sandbox.limits import SandboxError, SandboxLimits, TestsError

HARNESS_SOURCE = (Path(__file__).with_name("harness.py")).read_text(encoding="utf-8")
_STDERR_CAP = 64 * 1024


@dataclass(frozen=True)
class ExecutionResult:
    """What a program did against its tests. ``passed``/``total`` count asserts (see harness._CountAsserts)."""

    status: str  # "passed" | "failed" | "error" (raised while loading) | "timeout" | "crashed"
    passed: int
    total: int
    duration_s: float  # wall time the program spent loading and answering the tests' calls (harness-measured)
    output: str = ""  # the program's stdout+stderr, at most SandboxLimits.max_output bytes
    output_truncated: bool = False
    error: str | None = None
    wall_s: float = 0.0  # the whole run as seen by the host, sandbox start-up included
    namespace: str = ""  # the sandbox's pid namespace, e.g. "pid:[4026532301]" (audits: nothing may outlive it)

    @property
    def all_passed(self) -> bool:
        return self.status == "passed"

    @property
    def fraction(self) -> float:
        """Share of tests passed; 1.0 only for a full pass (a run cut short leaves at least one test failed)."""
        if self.all_passed:
            return 1.0
        if self.total <= 0:
            return 0.0
        return min(self.passed, self.total - 1) / self.total


def _kill(proc: subprocess.Popen) -> None:
    """bwrap leads its own process group; its sandbox (new session) dies with it through --die-with-parent and
    the pid namespace, whose processes are all killed when its init exits."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_program(
    program: str,
    tests: str,
    entry_point: str | None = None,
    setup: str = "",
    limits: SandboxLimits | None = None,
) -> ExecutionResult:
    """Run ``program`` (untrusted) in the sandbox; ``setup`` (trusted, e.g. HumanEval's prompt with its helpers) and
    then ``tests`` run in the trusted harness, calling ``entry_point`` in the program through the harness's proxy.
    Tests that define ``check(candidate)`` are called with it (HumanEval's convention); top-level asserts call
    the entry point by name.

    Raises ``SandboxError`` (infrastructure), ``TestsError`` (broken tests) or ``SandboxUnavailable``.
    """
    limits = limits or SandboxLimits()
    box = sandbox_setup()
    token = secrets.token_hex(16)
    job = {"token": token, "program": program, "tests": tests, "setup": setup, "entry_point": entry_point,
           "time_limit": limits.time_limit, "max_output": limits.max_output, "limits": limits.rlimits()}
    payload = json.dumps(job).encode()
    command = box.command(limits) + ["-I", "-S", "-B", "-c", HARNESS_SOURCE]
    started = time.monotonic()
    try:
        # Note: --die-with-parent follows the *thread* that started bwrap; pool threads outlive their runs.
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={}, close_fds=True, start_new_session=True, **box.popen_user())
    except OSError as err:
        raise SandboxError(f"cannot start bwrap: {err}") from err

    stdout_cap = 8 * limits.max_output + 1024 * 1024  # the harness's report (JSON-escaped output + counts)
    out, err_text = bytearray(), bytearray()
    events: dict[str, dict] = {}
    deadline = started + limits.startup_timeout
    timed_out = False
    sel = selectors.DefaultSelector()
    os.set_blocking(proc.stdin.fileno(), False)
    sel.register(proc.stdin, selectors.EVENT_WRITE)
    sel.register(proc.stdout, selectors.EVENT_READ)
    sel.register(proc.stderr, selectors.EVENT_READ)
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                _kill(proc)
                break
            for key, _ in sel.select(timeout=min(left, 1.0)):
                stream = key.fileobj
                if stream is proc.stdin:
                    try:
                        payload = payload[os.write(stream.fileno(), payload[:65536]):]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        payload = b""
                    if not payload:
                        sel.unregister(stream)
                        stream.close()
                    continue
                chunk = os.read(stream.fileno(), 65536)
                if not chunk:
                    sel.unregister(stream)
                    continue
                if stream is proc.stderr:
                    err_text += chunk[:max(_STDERR_CAP - len(err_text), 0)]
                    continue
                out += chunk[:max(stdout_cap - len(out), 0)]
                while b"\n" in out:
                    line, _, rest = bytes(out).partition(b"\n")
                    out[:] = rest
                    event = _parse(line, token)
                    if event is None:
                        continue
                    events[event["event"]] = event
                    if event["event"] == "ready":
                        deadline = time.monotonic() + limits.time_limit + limits.grace
    finally:
        sel.close()
        if timed_out or proc.poll() is None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill(proc)
                proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream and not stream.closed:
                stream.close()
    wall = time.monotonic() - started
    return _outcome(events, timed_out, proc.returncode, err_text.decode("utf-8", "replace"), wall, limits)


def _parse(line: bytes, token: str) -> dict | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("token") != token or not isinstance(event.get("event"), str):
        return None
    return event


def _outcome(events: dict, timed_out: bool, returncode: int | None, stderr: str, wall: float,
             limits: SandboxLimits) -> ExecutionResult:
    if "bad_tests" in events:
        raise TestsError(f"the problem's tests or setup are broken: {events['bad_tests'].get('message')}")
    if "infra" in events:
        raise SandboxError(f"sandbox harness failed: {events['infra'].get('message')}")
    if "ready" not in events:
        if timed_out:
            raise SandboxError(f"the sandbox did not start within {limits.startup_timeout:g}s")
        tail = stderr.strip()[-2000:] or "no message"
        raise SandboxError(f"the sandbox failed before running the program (exit status {returncode}): {tail}")
    report = events.get("result")
    namespace = str(events["ready"].get("namespace") or "")
    if report is None:
        if timed_out:
            return ExecutionResult("timeout", 0, 1, limits.time_limit, error="killed at the wall-clock limit",
                                   wall_s=wall, namespace=namespace)
        return ExecutionResult("crashed", 0, 1, 0.0, error="the test harness was killed before it reported",
                               wall_s=wall, namespace=namespace)
    return ExecutionResult(
        status=str(report["status"]),
        passed=int(report["passed"]),
        total=int(report["total"]),
        duration_s=float(report["duration_s"]),
        output=str(report.get("output") or ""),
        output_truncated=int(report.get("output_dropped") or 0) > 0,
        error=report.get("error"),
        wall_s=wall,
        namespace=namespace,
    )
