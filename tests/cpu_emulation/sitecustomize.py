"""Test-side CPU emulation for subprocesses: with ``R1LAB_TEST_CPU_FEATURES`` set (by tests/conftest.py's
``--cpu-features``), r1lab's precision module reports those matrix features instead of this CPU's, so a child
process (the real CLI) decides ``auto`` precision as a CPU of that kind would. Python imports this file at start-up
because conftest puts its folder on PYTHONPATH; it imports nothing heavy and patches the module only once it is
loaded, so start-up time and ``import r1lab``'s lightness are unchanged."""

import importlib.abc
import importlib.util
import os
import sys

FEATURES = tuple(f for f in os.environ.get("R1LAB_TEST_CPU_FEATURES", "").split(",") if f)
TARGET = "r1lab.models.precision"


class _PatchPrecision(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)  # find the real module with the other finders, then wrap its loading
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            module.cpu_matrix_features = lambda: FEATURES

        spec.loader.exec_module = exec_module
        return spec


if "R1LAB_TEST_CPU_FEATURES" in os.environ:
    sys.meta_path.insert(0, _PatchPrecision())
