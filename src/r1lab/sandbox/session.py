"""The ``python`` tool: one stateful sandboxed interpreter per sample.

A ``PythonSession`` holds one warm sandbox (``warm.WarmSandbox``) for the life of one sample: its cells share one
namespace (variables, imports, functions defined in an earlier call), and ``close`` ends the interpreter, so the
state is gone and the sandbox is cleaned up for the next sample. Limits: each call has a wall-clock limit
(``call_time_limit``), the sample a total (``sample_time_limit``), and the interpreter the sandbox's rlimits (CPU
seconds, memory, files, processes) for its whole life. Errors, timeouts and crashes come back as text for the
model (``ToolResult.text``), never as an exception; only an infrastructure failure of the sandbox itself is
reported as status ``infra`` (and the session replaces its sandbox on the next call).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from r1lab.sandbox.limits import SandboxError, SandboxLimits
from r1lab.sandbox.warm import WarmSandbox


@dataclass(frozen=True)
class ToolResult:
    """One call of the python tool, as the model will read it."""

    status: str  # "ok" | "error" (the code raised) | "timeout" | "crashed" | "refused" (budget spent) | "infra"
    output: str  # stdout + stderr of the call (a traceback on error), at most max_output_chars
    error: str | None = None
    truncated: bool = False
    duration_s: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status != "ok"

    @property
    def text(self) -> str:
        """What goes back to the model: the output, then a line for a stop it cannot see in the output."""
        note = {"timeout": f"TimeoutError: {self.error}", "crashed": f"the interpreter died: {self.error}",
                "refused": str(self.error), "infra": f"the tool is unavailable: {self.error}"}.get(self.status)
        text = self.output + ("\n[output truncated]" if self.truncated else "")
        if note:
            text = (text.rstrip("\n") + "\n" if text.strip() else "") + note
        return text.strip("\n")


def truncate(text: str, limit: int) -> tuple[str, bool]:
    """The first ``limit`` characters (keeping the head, where results and the first error line usually are)."""
    return (text, False) if len(text) <= limit else (text[:limit], True)


class PythonSession:
    """One sample's interpreter; ``run(code)`` per call, ``close()`` at the end of the sample."""

    def __init__(self, pool: SessionPool, call_time_limit: float, sample_time_limit: float, max_output_chars: int):
        self.pool = pool
        self.call_time_limit = call_time_limit
        self.sample_time_limit = sample_time_limit
        self.max_output_chars = max_output_chars
        self.used_s = 0.0
        self.calls = 0
        self._box: WarmSandbox | None = None
        self._token = ""

    def run(self, code: str) -> ToolResult:
        self.calls += 1
        left = self.sample_time_limit - self.used_s
        if left <= 0:
            return ToolResult("refused", "", f"the python tool's time budget for this answer "
                                                f"({self.sample_time_limit:g}s) is used up")
        limit = min(self.call_time_limit, left)
        try:
            if self._box is None or not self._box.alive:
                self._box = self.pool.acquire()
                self._token = self._box.start_session(self.sample_time_limit)
            reply = self._box.execute(self._token, code, limit)
        except SandboxError as err:
            if self._box is not None:
                self._box.close()
            self._box = None
            self.used_s += limit
            return ToolResult("infra", "", str(err))
        duration = float(reply.get("duration_s") or 0.0)
        self.used_s += min(duration, limit) if reply["status"] != "timeout" else limit
        output, cut = truncate(str(reply.get("output") or ""), self.max_output_chars)
        error = reply.get("error")
        if reply["status"] == "timeout":
            error = f"the call ran past {limit:g}s and was stopped; the session was restarted"
        return ToolResult(str(reply["status"]), output, error, cut or bool(reply.get("output_dropped")), duration)

    def close(self) -> None:
        """End the sample: the interpreter (and its state) is gone; the sandbox goes back to the pool."""
        box, self._box = self._box, None
        if box is not None:
            box.end_session()
            self.pool.release(box)


class SessionPool:
    """Idle warm sandboxes for python sessions, created on demand and reused across samples.

    Create and use it from one long-lived thread (the trainer's): ``--die-with-parent`` ties each sandbox to the
    thread that started it. ``open`` many sessions at once for a batch; each holds its own sandbox.
    """

    def __init__(self, limits: SandboxLimits | None = None, call_time_limit: float = 5.0,
                 sample_time_limit: float = 30.0, max_output_chars: int = 2000):
        self.limits = limits or SandboxLimits(time_limit=call_time_limit)
        self.call_time_limit = call_time_limit
        self.sample_time_limit = sample_time_limit
        self.max_output_chars = max_output_chars
        self._idle: list[WarmSandbox] = []
        self._lock = threading.Lock()
        self.started = 0

    def open(self) -> PythonSession:
        return PythonSession(self, self.call_time_limit, self.sample_time_limit, self.max_output_chars)

    def acquire(self) -> WarmSandbox:
        with self._lock:
            while self._idle:
                box = self._idle.pop()
                if box.alive:
                    return box
            self.started += 1
        return WarmSandbox(self.limits)

    def release(self, box: WarmSandbox) -> None:
        if box.alive:
            with self._lock:
                self._idle.append(box)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for box in idle:
            box.close()

    def __enter__(self) -> SessionPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
