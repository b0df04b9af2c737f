"""Running untrusted generated code: bubblewrap + rlimits + no network + empty environment (stdlib only).

``run_program`` runs one program against its tests; ``SandboxPool`` / ``run_many`` run many at once;
``sandbox_setup`` says how (and whether) this machine sandboxes. Not imported by ``import r1lab``.
"""

from r1lab.sandbox.bwrap import SandboxSetup, sandbox_setup
from r1lab.sandbox.limits import SandboxError, SandboxLimits, SandboxUnavailable, TestsError
from r1lab.sandbox.pool import Job, SandboxPool, default_workers, run_many
from r1lab.sandbox.runner import ExecutionResult, run_program

__all__ = [
    "ExecutionResult", "Job", "SandboxError", "SandboxLimits", "SandboxPool", "SandboxSetup", "SandboxUnavailable",
    "TestsError", "default_workers", "run_many", "run_program", "sandbox_setup",
]
