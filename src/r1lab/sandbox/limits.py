"""What one sandboxed run may use, and the two ways a run can fail that are *not* a wrong answer."""

from __future__ import annotations

from dataclasses import dataclass, fields


class SandboxUnavailable(RuntimeError):
    """This machine cannot sandbox (no bwrap, no user namespaces, ...). r1lab never runs generated code without."""


class SandboxError(RuntimeError):
    """Infrastructure failure: the sandbox itself failed or did not start. Not the program's fault, so the sample
    is marked invalid instead of scored 0 (docs/architecture.md principle 6)."""


class TestsError(ValueError):
    """The problem's own tests or setup code do not compile or crash before the program runs: a data error."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits. Wall time covers starting the program and running all of its tests."""

    time_limit: float = 5.0  # seconds of wall time for the program and its tests; the run is killed after it
    memory_mb: int = 512  # address space of the program's process (RLIMIT_AS)
    file_size_mb: int = 16  # largest file it may write (RLIMIT_FSIZE), and the size of each tmpfs (/tmp, /dev/shm)
    open_files: int = 64  # RLIMIT_NOFILE
    # RLIMIT_NPROC (threads count too), counted within the sandbox's own user namespace; 3 are the sandbox's own.
    # Without cgroups the program's memory is bounded by processes x memory_mb, so keep this small.
    processes: int = 8
    max_output: int = 64 * 1024  # bytes of the program's stdout+stderr kept; the rest is read and dropped
    startup_timeout: float = 20.0  # seconds for bwrap + the harness to start (a slow start is infrastructure)
    grace: float = 3.0  # seconds past time_limit before the host kills the whole sandbox itself

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"SandboxLimits.{f.name} must be a positive number, got {value!r}")
        if self.processes < 4:
            raise ValueError("SandboxLimits.processes must be at least 4 (bwrap, the harness and the program count)")

    def rlimits(self) -> dict[str, int]:
        """The rlimits the harness applies to the program's process before it starts (see harness._set_limits)."""
        mib = 1024 * 1024
        return {
            "cpu_s": max(1, int(self.time_limit + 0.999)),  # CPU seconds; the wall clock usually fires first
            "memory_bytes": int(self.memory_mb * mib),
            "file_bytes": int(self.file_size_mb * mib),
            "open_files": int(self.open_files),
            "processes": int(self.processes),
        }
