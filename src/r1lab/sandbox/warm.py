"""A warm sandbox: one bubblewrap sandbox, started once, that runs many programs one after another.

Inside runs harness.py's ``serve``: an interpreter with the harness already loaded. For each job it forks a fresh
child (the trusted harness of that run), which forks the worker before it reads the job, exactly as a cold run
does, and the worker re-applies the rlimits before the program's first line. When the run ends, the resident
process kills every process left in the sandbox, removes SysV IPC objects and empties /tmp and /dev/shm, then says
"free". A run therefore sees nothing of the previous one: not its interpreter state (a fresh fork of a process the
program never touched), not its files, not its processes. What costs ~80 ms per cold run (bwrap, namespaces, two
interpreter start-ups) is paid once per sandbox; a run costs two forks.

The host side speaks length-prefixed JSON frames on the sandbox's stdin and reads token-carrying lines on its
stdout, as ``runner.run_program`` does. A sandbox whose resident process died (a program that ran
``kill(-1, SIGKILL)`` takes it down with everything else of its uid) or overran the host's deadline is closed and
reported dead; the pool replaces it.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import selectors
import subprocess
import time

from r1lab.sandbox.bwrap import sandbox_setup
from r1lab.sandbox.limits import SandboxError, SandboxLimits
from r1lab.sandbox.runner import HARNESS_SOURCE, ExecutionResult, _kill, _outcome, _parse

_STDERR_CAP = 16 * 1024


def frame(obj: dict) -> bytes:
    """One job for the sandbox: ``<length>\\n<json>`` (harness._read_frame reads exactly this much)."""
    data = json.dumps(obj).encode()
    return str(len(data)).encode() + b"\n" + data


def warm_limits(limits: SandboxLimits) -> dict[str, int]:
    """The rlimits of a run in a warm sandbox: the resident process is one more of the sandbox's own processes, so
    the process limit grows by one to leave the program the same number as in a cold run."""
    out = limits.rlimits()
    out["processes"] += 1
    return out


class WarmSandbox:
    """One resident sandbox; ``run`` one job at a time (not thread-safe: the pool hands each to one thread)."""

    def __init__(self, limits: SandboxLimits | None = None):
        self.limits = limits or SandboxLimits()
        box = sandbox_setup()
        self._token = secrets.token_hex(16)
        command = box.command(self.limits) + ["-I", "-S", "-B", "-c", HARNESS_SOURCE, "--warm"]
        try:
            # --die-with-parent follows the thread that starts bwrap: start sandboxes from long-lived threads
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env={}, close_fds=True, start_new_session=True,
                                         **box.popen_user())
        except OSError as err:
            raise SandboxError(f"cannot start bwrap: {err}") from err
        self._out = bytearray()
        self._stderr = bytearray()
        self.alive = True
        self.runs = 0
        self.cpu_s = 0.0  # CPU seconds used inside the sandbox so far, all runs (the resident process's count)
        self.namespace = ""
        self.pid_inside = 0  # the resident process's pid in the sandbox's own pid namespace
        started = time.monotonic()
        events = self._exchange(frame({"token": self._token}), {self._token}, ("warm", "infra"),
                                started + self.limits.startup_timeout)
        if "warm" not in events:
            self.close()
            tail = self._stderr.decode("utf-8", "replace").strip()[-2000:]
            message = events.get("infra", {}).get("message") or tail or "no message"
            how = (f"did not start within {self.limits.startup_timeout:g}s" if "_timeout" in events
                   else "exited while starting")
            raise SandboxError(f"the warm sandbox {how}: {message}")
        self.namespace = str(events["warm"]["namespace"])
        self.pid_inside = int(events["warm"]["pid"])
        self.startup_s = time.monotonic() - started

    # --- protocol ------------------------------------------------------------------------------------------
    def _exchange(self, payload: bytes, tokens: set[str], until: tuple[str, ...], deadline: float,
                  on_event=None) -> dict[str, dict]:
        """Write ``payload``, then read events carrying one of ``tokens`` until one named in ``until`` arrives, the
        sandbox ends (``alive`` False) or ``deadline`` passes (the sandbox is killed). ``on_event(event)`` may
        return a new deadline."""
        events: dict[str, dict] = {}
        proc = self.proc
        sel = selectors.DefaultSelector()
        if payload:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE)
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        try:
            while True:
                for name in until:  # a line already read (the end of the previous read) may finish it
                    if name in events:
                        return events
                left = deadline - time.monotonic()
                if left <= 0:
                    events["_timeout"] = {}
                    self.close()
                    return events
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
                        continue
                    chunk = os.read(stream.fileno(), 65536)
                    if not chunk:
                        sel.unregister(stream)
                        if stream is proc.stdout:  # the resident process is gone
                            self._drain_stderr(proc, time.monotonic() + 1.0)  # its last words may lag stdout's EOF
                            self.close()
                            return events
                        continue
                    if stream is proc.stderr:
                        self._stderr = (self._stderr + chunk)[-_STDERR_CAP:]
                        continue
                    self._out += chunk
                    while b"\n" in self._out:
                        line, _, rest = bytes(self._out).partition(b"\n")
                        self._out[:] = rest
                        event = None
                        for token in tokens:
                            event = event or _parse(line, token)
                        if event is None:
                            continue
                        events[event["event"]] = event
                        if on_event is not None:
                            deadline = on_event(event) or deadline
                if len(self._out) > 64 * 1024 * 1024:  # the report channel carries JSON lines of bounded size
                    self.close()
                    return events
        finally:
            sel.close()

    def _drain_stderr(self, proc: subprocess.Popen, deadline: float) -> None:
        """Read what is left on stderr (up to EOF or ``deadline``): a sandbox that fails to start writes why there,
        and that write can arrive after stdout's EOF."""
        fd = proc.stderr.fileno()
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return
            try:
                chunk = os.read(fd, 65536)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                return
            self._stderr = (self._stderr + chunk)[-_STDERR_CAP:]

    def run(self, program: str, tests: str, entry_point: str | None = None, setup: str = "") -> ExecutionResult:
        """As ``runner.run_program``, in this sandbox; raises ``SandboxError`` when it is dead or dies starting."""
        if not self.alive:
            raise SandboxError("this warm sandbox has been closed")
        limits = self.limits
        token = secrets.token_hex(16)
        job = {"token": token, "program": program, "tests": tests, "setup": setup, "entry_point": entry_point,
               "time_limit": limits.time_limit, "max_output": limits.max_output, "limits": warm_limits(limits)}
        started = time.monotonic()

        def on_event(event):
            if event["event"] == "ready":
                return time.monotonic() + limits.time_limit + limits.grace

        events = self._exchange(frame(job), {token, self._token}, ("free",), started + limits.startup_timeout,
                                on_event)
        self.runs += 1
        if "free" in events:
            self.cpu_s = float(events["free"].get("cpu_s") or 0.0)
        timed_out = "_timeout" in events
        wall = time.monotonic() - started
        if "free" in events and (events["free"]["left"]["processes"] or events["free"]["left"]["files"]):
            self.close()  # the clean-up could not remove everything: never reuse this sandbox
        return _outcome(events, timed_out, None if self.alive else self.proc.returncode,
                        self._stderr.decode("utf-8", "replace"), wall, limits)

    def start_session(self, cpu_seconds: float) -> str:
        """Start a stateful interpreter (the python tool) in this sandbox, with ``cpu_seconds`` of CPU time for its
        whole life (each call's wall clock is limited by ``execute``); returns the session's token."""
        token = secrets.token_hex(16)
        limits = warm_limits(self.limits)
        limits["cpu_s"] = max(1, int(cpu_seconds + 0.999))
        job = {"token": token, "session": True, "max_output": self.limits.max_output, "limits": limits}
        events = self._exchange(frame(job), {token}, ("ready", "infra"),
                                time.monotonic() + self.limits.startup_timeout)
        if "ready" not in events:
            self.close()
            raise SandboxError(f"the python session did not start: {events.get('infra', {}).get('message')}")
        return token

    def execute(self, token: str, code: str, time_limit: float) -> dict:
        """One cell in the session ``token``: the harness's "output" event (status ok / error / timeout / crashed,
        error, output, output_dropped, duration_s); raises ``SandboxError`` when the sandbox itself failed."""
        events = self._exchange(frame({"op": "exec", "code": code, "time_limit": time_limit}), {token},
                                ("output",), time.monotonic() + time_limit + self.limits.grace)
        if "output" not in events:
            raise SandboxError("the sandbox failed while running a tool call"
                               + (" (host deadline)" if "_timeout" in events else ""))
        return events["output"]

    def end_session(self) -> None:
        """End the session: its interpreter is killed and the sandbox cleaned up for the next user."""
        if not self.alive:
            return
        events = self._exchange(frame({"op": "end"}), {self._token}, ("free",),
                                time.monotonic() + self.limits.startup_timeout)
        if "free" not in events or events["free"]["left"]["processes"] or events["free"]["left"]["files"]:
            self.close()

    def close(self, graceful: bool = False) -> None:
        """Kill the sandbox (``graceful``: first let the resident process see the end of its input and exit)."""
        if self.alive:
            self.alive = False
            if graceful:
                try:
                    self.proc.stdin.close()
                    self.proc.wait(timeout=2)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            _kill(self.proc)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream and not stream.closed:
                try:
                    stream.close()
                except OSError:
                    pass
