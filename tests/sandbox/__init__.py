"""Sandbox tests. A package so that test_runner.py here and in tests/evals/ do not collide (pytest prepend mode)."""
