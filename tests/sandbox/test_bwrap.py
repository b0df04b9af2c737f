"""r1lab.sandbox.bwrap: the set-up probe detects and names what a machine lacks, and never settles for running
code unsandboxed. Fake ``bwrap`` scripts stand in for older or restricted installations."""

from __future__ import annotations

import logging
import shutil

import pytest

from r1lab.sandbox import SandboxUnavailable, run_program
from r1lab.sandbox import bwrap as bwrap_module

REAL_WHICH = shutil.which


@pytest.fixture
def fresh_probe(monkeypatch):
    """Each test probes anew, as this process (no uid switch, so the fake scripts in tmp_path are reachable);
    the real, cached set-up is restored afterwards."""
    bwrap_module.sandbox_setup.cache_clear()
    monkeypatch.setattr(bwrap_module.os, "geteuid", lambda: 1000)
    yield
    bwrap_module.sandbox_setup.cache_clear()


def fake_bwrap(monkeypatch, tmp_path, body: str):
    path = tmp_path / "bwrap"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    monkeypatch.setattr(bwrap_module.shutil, "which", lambda name: str(path) if name == "bwrap" else REAL_WHICH(name))


def test_missing_bwrap_is_reported(fresh_probe, monkeypatch):
    monkeypatch.setattr(bwrap_module.shutil, "which", lambda name: None if name == "bwrap" else REAL_WHICH(name))
    with pytest.raises(SandboxUnavailable, match="apt-get install -y bubblewrap.*never runs generated code"):
        bwrap_module.sandbox_setup()


def test_old_bwrap_without_an_extra_runs_without_it_and_says_so(fresh_probe, monkeypatch, tmp_path, caplog):
    fake_bwrap(monkeypatch, tmp_path, 'for a in "$@"; do [ "$a" = --disable-userns ] && '
                                      '{ echo "bwrap: Unknown option --disable-userns" >&2; exit 1; }; done\n'
                                      'exec /usr/bin/bwrap "$@"')
    with caplog.at_level(logging.WARNING, logger="r1lab.sandbox.bwrap"):
        setup = bwrap_module.sandbox_setup()
    assert setup.missing == ("disable_userns",)
    assert "--disable-userns" not in setup.command(bwrap_module.SandboxLimits())
    assert "sandbox runs without --disable-userns" in caplog.text
    assert run_program("def f():\n    return 1\n", "assert f() == 1", "f").all_passed  # still sandboxed


def test_no_user_namespaces_is_reported_with_a_fix(fresh_probe, monkeypatch, tmp_path):
    fake_bwrap(monkeypatch, tmp_path, 'echo "bwrap: No permissions to creating new namespace, likely because the '
                                      'kernel does not allow non-privileged user namespaces." >&2; exit 1')
    with pytest.raises(SandboxUnavailable, match="cannot create the sandbox here.*user namespaces look disabled"):
        bwrap_module.sandbox_setup()


def test_a_bwrap_that_does_not_isolate_is_refused(fresh_probe, monkeypatch, tmp_path):
    # Ignores every option and runs the command directly: the probe inside sees the host, so nothing may run.
    fake_bwrap(monkeypatch, tmp_path, 'while [ "$1" != "--" ]; do shift; done; shift; exec "$@"')
    with pytest.raises(SandboxUnavailable, match="the sandbox is not isolated: .*the program runs as uid"):
        bwrap_module.sandbox_setup()
