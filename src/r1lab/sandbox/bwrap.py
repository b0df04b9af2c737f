"""The bubblewrap command line, and a once-per-process check that this machine can really sandbox.

The sandbox: system directories bound read-only, a fresh size-capped tmpfs as /tmp (the working directory) and
/dev/shm, the root and /dev read-only, new user/pid/net/ipc/uts namespaces (the net namespace holds only its own
loopback), no capabilities, an empty environment, a new session, and death with the parent. The rlimits are set by
the harness inside (see harness.py), because RLIMIT_NPROC only counts once the user namespace exists.

Run as root, bwrap is started as ``nobody``: the kernel exempts uid 0 from RLIMIT_NPROC even inside a user
namespace (its processes stay kuid 0), so a fork bomb would otherwise be limited by nothing.

Features a given bwrap or kernel lacks are never silently dropped: essential ones make ``sandbox_setup`` raise
``SandboxUnavailable``; hardening extras (``--disable-userns``, ``--size``) are listed in ``SandboxSetup.missing``
and logged as a warning.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import shutil
import stat
import subprocess
import sys

from r1lab.sandbox.limits import SandboxLimits, SandboxUnavailable

log = logging.getLogger(__name__)

NOBODY = 65534  # the uid/gid the program sees inside, and the host uid bwrap runs as when we are root

# Hardening that older bubblewrap releases lack: flag -> what is lost without it.
EXTRAS = {
    "disable_userns": "--disable-userns (bubblewrap >= 0.8): the program could create nested user namespaces",
    "tmpfs_size": "--size (bubblewrap >= 0.7): /tmp and /dev/shm are not size-capped, only each file is",
}

_PROBE = (
    "import json, os\n"
    "status = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)\n"
    "links = [l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]]\n"
    "root_writable = os.access('/', os.W_OK)  # access(2) says EROFS on a read-only mount; creates nothing\n"
    "print(json.dumps({'uid': os.getuid(), 'caps': status['CapEff'].strip(), 'links': links,\n"
    "                  'env': sorted(os.environ), 'pid': os.getpid(), 'root_writable': root_writable}))\n"
)


@dataclasses.dataclass(frozen=True)
class SandboxSetup:
    """How this machine sandboxes: which bwrap and interpreter, as which host user, and what hardening is missing."""

    bwrap: str
    version: str
    python: str  # the interpreter inside (bound at the same path as outside)
    run_as: tuple[int, int] | None  # host (uid, gid) bwrap is started as; None = as this process
    missing: tuple[str, ...] = ()  # EXTRAS keys this bwrap/kernel cannot do

    def command(self, limits: SandboxLimits) -> list[str]:
        """bwrap and its options, ending with ``--`` and the interpreter; append the interpreter's arguments."""
        return self._drop() + _command(self.bwrap, self.python, limits, frozenset(EXTRAS) - set(self.missing))

    def popen_user(self) -> dict:
        """Popen keyword arguments that start bwrap as ``run_as`` when ``setpriv`` cannot."""
        if self.run_as is None or shutil.which("setpriv"):
            return {}
        return {"user": self.run_as[0], "group": self.run_as[1], "extra_groups": []}

    def _drop(self) -> list[str]:
        # setpriv (util-linux) rather than Popen(user=...): Popen then falls back from vfork to fork, which is slow
        # from a training process holding gigabytes.
        setpriv = shutil.which("setpriv")
        if self.run_as is None or setpriv is None:
            return []
        return [setpriv, f"--reuid={self.run_as[0]}", f"--regid={self.run_as[1]}", "--clear-groups"]


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):  # merged-/usr systems: /lib -> usr/lib
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    return args


def _command(bwrap: str, python: str, limits: SandboxLimits, extras: frozenset[str]) -> list[str]:
    size = ["--size", str(limits.rlimits()["file_bytes"])] if "tmpfs_size" in extras else []
    prefix = os.path.dirname(os.path.dirname(python))
    python_bind = [] if prefix == "/usr" or prefix.startswith("/usr/") else ["--ro-bind", prefix, prefix]
    return [
        bwrap,
        *_system_binds(),
        *python_bind,
        "--proc", "/proc",
        "--dev", "/dev",
        *size, "--tmpfs", "/dev/shm",
        "--remount-ro", "/dev",
        *size, "--tmpfs", "/tmp",
        "--chdir", "/tmp",
        "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY),
        *(["--disable-userns"] if "disable_userns" in extras else []),
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--hostname", "sandbox",
        "--cap-drop", "ALL",
        "--clearenv",
        "--new-session",
        "--die-with-parent",
        "--remount-ro", "/",  # last: the mounts above need a writable root to create their mount points
        "--",
        python,
    ]


def _readable_by_others(path: str) -> bool:
    """Whether ``nobody`` can reach and run ``path``: it and every parent directory are executable by others."""
    path = os.path.realpath(path)
    try:
        while True:
            if not os.stat(path).st_mode & stat.S_IXOTH:
                return False
            if path == "/":
                return True
            path = os.path.dirname(path)
    except OSError:
        return False


def _interpreter(run_as: tuple[int, int] | None) -> str:
    """This interpreter when the sandbox user can run it, else the system one (the harness is stdlib only)."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        if candidate and os.path.isfile(candidate) and (run_as is None or _readable_by_others(candidate)):
            return os.path.realpath(candidate)
    raise SandboxUnavailable(
        "no Python interpreter the sandbox user (uid %d) can run: this one (%s) sits in a private directory and "
        "there is no /usr/bin/python3; install python3 from the system packages" % (NOBODY, sys.executable)
    )


def _hint(stderr: str) -> str:
    text = stderr.lower()
    if "namespace" in text or "uid map" in text or "operation not permitted" in text or "permission denied" in text:
        return (" Unprivileged user namespaces look disabled: enable them (sysctl user.max_user_namespaces=15000,"
                " kernel.unprivileged_userns_clone=1, or an AppArmor profile allowing bwrap on Ubuntu >= 23.10),"
                " or run on a VM / a container started with user namespaces allowed.")
    return ""


def _try(command: list[str], setup_kwargs: dict) -> subprocess.CompletedProcess:
    return subprocess.run(command + ["-I", "-S", "-c", _PROBE], capture_output=True, text=True, timeout=60,
                          env={}, start_new_session=True, **setup_kwargs)


@functools.lru_cache(maxsize=1)
def sandbox_setup() -> SandboxSetup:
    """Find bwrap, pick the interpreter and host user, run a probe inside the strongest sandbox that starts, and
    check from inside that it really is isolated. Cached: one probe per process."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable("bubblewrap is not installed (Debian/Ubuntu: apt-get install -y bubblewrap; "
                                 "`make setup` does it). r1lab never runs generated code unsandboxed.")
    version = subprocess.run([bwrap, "--version"], capture_output=True, text=True).stdout.strip()
    run_as = (NOBODY, NOBODY) if os.geteuid() == 0 else None
    python = _interpreter(run_as)
    base = SandboxSetup(bwrap=bwrap, version=version, python=python, run_as=run_as)
    limits = SandboxLimits()
    first_error = None
    # Strongest first; then without each extra, to name exactly what this bwrap/kernel cannot do.
    for missing in ((), ("disable_userns",), ("tmpfs_size",), ("disable_userns", "tmpfs_size")):
        command = dataclasses.replace(base, missing=missing).command(limits)
        try:
            done = _try(command, base.popen_user())
        except (OSError, subprocess.SubprocessError) as err:
            raise SandboxUnavailable(f"cannot start bubblewrap ({bwrap}): {err}") from err
        if done.returncode == 0:
            break
        first_error = first_error or done.stderr.strip() or f"exit status {done.returncode}"
    else:
        raise SandboxUnavailable(f"{version or 'bwrap'} cannot create the sandbox here: {first_error}."
                                 f"{_hint(first_error or '')} r1lab never runs generated code unsandboxed.")
    inside = json.loads(done.stdout)
    problems = []
    if inside["links"] != ["lo"]:
        problems.append(f"the network namespace is not private (interfaces {inside['links']})")
    if int(inside["caps"], 16) != 0:
        problems.append(f"the program keeps capabilities ({inside['caps']})")
    if inside["uid"] != NOBODY:
        problems.append(f"the program runs as uid {inside['uid']}")
    # bwrap sets PWD; Python itself sets LC_CTYPE (PEP 538 locale coercion). Nothing may come from the host.
    leaked = sorted(set(inside["env"]) - {"PWD", "LC_CTYPE"})
    if leaked:
        problems.append(f"host environment variables reach the program ({leaked})")
    if inside["root_writable"]:
        problems.append("the root file system is writable")
    if problems:
        raise SandboxUnavailable("the sandbox is not isolated: " + "; ".join(problems))
    setup = SandboxSetup(bwrap=bwrap, version=version, python=python, run_as=run_as, missing=tuple(missing))
    for key in setup.missing:
        log.warning("sandbox runs without %s", EXTRAS[key])
    return setup
