"""The warm sandbox pool: one resident sandbox runs program after program and nothing of one reaches the next
(interpreter state, files, processes, IPC objects); a sandbox that was killed is replaced; the code reward uses it.
The attack suite (test_attacks.py) runs against the pool as well."""

from __future__ import annotations

import pytest

from r1lab.sandbox import Job, SandboxLimits, SandboxPool

LIMITS = SandboxLimits(time_limit=2.0, grace=2.0)

# Leaves every kind of state it can: patched builtins and modules, files in both tmpfs (one in a folder it made
# unwritable), a detached process in a session of its own, a SysV shared-memory segment.
POLLUTER = r'''
import builtins, ctypes, os, sys, time
builtins.abs = lambda *a: 0
builtins.LEAKED = True
builtins.print = None
sys.modules["json"] = "patched"
os.environ["LEAK"] = "1"
open("/tmp/leak.txt", "w").write("x")
open("/dev/shm/leak", "w").write("x")
os.makedirs("/tmp/locked/deeper")
open("/tmp/locked/deeper/f", "w").write("x")
os.chmod("/tmp/locked/deeper", 0)
os.chmod("/tmp/locked", 0)
libc = ctypes.CDLL(None)
SHM_ID = libc.shmget(0, 4096, 0o1000 | 0o600)  # IPC_PRIVATE, IPC_CREAT
if os.fork() == 0:
    os.setsid()  # out of the worker's process group: the harness's kill does not reach it
    if os.fork() == 0:
        time.sleep(60)
    os._exit(0)
time.sleep(0.2)
def add(a, b):
    return a + b
'''

# Reports what it finds of the polluter's state; the tests expect nothing.
INSPECTOR = r'''
import builtins, os, sys
def add(a, b):
    found = []
    if hasattr(builtins, "LEAKED") or builtins.print is None or abs(-2) != 2:
        found.append("builtins")
    if "json" in sys.modules and sys.modules["json"] == "patched":
        found.append("modules")
    if "LEAK" in os.environ:
        found.append("environ")
    found += ["/tmp/" + n for n in os.listdir("/tmp")] + ["/dev/shm/" + n for n in os.listdir("/dev/shm")]
    shm = open("/proc/sysvipc/shm").read().splitlines()[1:]
    if shm:
        found.append("shm")
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    if len(pids) != 4:  # the sandbox's init, the resident process, this run's harness and this worker
        found.append("processes %s" % sorted(pids))
    return found
'''
TESTS = "def check(candidate):\n    assert candidate(1, 2) == []\n"


def test_nothing_of_a_program_reaches_the_next():
    with SandboxPool(1, LIMITS, warm=True) as pool:
        clean_before = pool.map([Job(INSPECTOR, TESTS, "add")])[0]
        assert clean_before.all_passed, clean_before
        polluted = pool.map([Job(POLLUTER, "def check(candidate):\n    assert candidate(1, 2) == 3\n", "add")])[0]
        assert polluted.all_passed, polluted  # the polluter itself ran fine (its patches are its own business)
        after = pool.map([Job(INSPECTOR, TESTS, "add")])[0]
        assert after.all_passed, (after.error, after.output)
        assert pool.started == 1  # one resident sandbox served all three: its clean-up, not a restart, did it


def test_the_inspector_does_see_state_within_one_program():
    # The inspector's checks are live: the same pollution inside its own run is found.
    program = POLLUTER + INSPECTOR.replace("def add(a, b):", "def add2(a, b):") + "add = add2\n"
    with SandboxPool(1, LIMITS, warm=True) as pool:
        result = pool.map([Job(program, "assert add(1, 2) == []", "add")])[0]
    assert result.status == "failed" and result.passed == 0


def test_a_killed_sandbox_is_replaced_and_the_next_run_passes():
    killer = "import os, signal\ndef add(a, b):\n    os.kill(-1, signal.SIGKILL)\n"
    good = Job("def add(a, b):\n    return a + b\n", "assert add(2, 3) == 5", "add")
    with SandboxPool(1, LIMITS, warm=True) as pool:
        first = pool.map([good, Job(killer, "assert add(1, 2) == 3", "add"), good, good])
        assert [r.status for r in first] == ["passed", "crashed", "passed", "passed"]
        assert pool.started == 2


def test_a_timeout_leaves_the_sandbox_usable():
    limits = SandboxLimits(time_limit=0.5, grace=2.0)
    with SandboxPool(1, limits, warm=True) as pool:
        slow, good = pool.map([Job("def f():\n    while True:\n        pass\n", "assert f() is None", "f"),
                               Job("def f():\n    return 1\n", "assert f() == 1", "f")])
    assert slow.status == "timeout" and good.all_passed


@pytest.mark.parametrize("warm", [True, False])
def test_pool_results_equal_cold_results(warm):
    jobs = [Job("def f(x):\n    return x * 2\n", "assert f(2) == 4\nassert f(3) == 7\n", "f"),
            Job("def f(x):\n    raise ValueError('no')\n", "assert f(1) == 2", "f"),
            Job("print('hi')\ndef f():\n    return 1\n", "assert f() == 1", "f")]
    with SandboxPool(2, LIMITS, warm=warm) as pool:
        results = pool.map(jobs)
    assert [(r.status, r.passed, r.total, r.output) for r in results] == [
        ("failed", 1, 2, ""), ("failed", 0, 1, ""), ("passed", 1, 1, "hi\n")]


def test_code_reward_runs_on_the_warm_pool_by_default(monkeypatch):
    from r1lab.rewards.code import CodeRewardParams
    from r1lab.sandbox import pool as pool_module

    assert CodeRewardParams().sandbox == "warm"
    seen = []
    real = pool_module.run_many
    monkeypatch.setattr(pool_module, "run_many", lambda *a, **k: seen.append(k.get("warm")) or real(*a, **k))
    from r1lab.rewards import code as code_module
    from r1lab.rewards.functions import RewardContext
    from r1lab.types import Example

    example = Example(id="p", prompt="", answer="", meta={"tests": "assert add(1, 2) == 3", "entry_point": "add"})
    ctx = RewardContext(task=None, params={"code": {"time_limit": 2.0}})
    scores = code_module.code_reward(["```python\ndef add(a, b):\n    return a + b\n```",
                                      "```python\ndef add(a, b):\n    return a - b\n```"], [example, example], ctx)
    assert scores == [1.0, 0.2] and seen == [True]
    cold = RewardContext(task=None, params={"code": {"time_limit": 2.0, "sandbox": "cold"}})
    assert code_module.code_reward(["```python\ndef add(a, b):\n    return a + b\n```"], [example], cold) == [1.0]
    assert seen == [True, False]
    with pytest.raises(ValueError, match="'sandbox' must be one of: warm, cold"):
        CodeRewardParams.from_dict({"sandbox": "hot"})
