"""`auto` precision: bf16 only where this device's bf16 matmuls are clearly faster, and what a run records."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from r1lab.config import GRPOConfig
from r1lab.models import precision
from r1lab.models.precision import BF16_MARGIN, choose_precision, matmul_rate
from r1lab.train.run_setup import resolve_precision

CPU = torch.device("cpu")


def _measured(monkeypatch, decode: float, train: float) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_speedups", lambda threads: (decode, train))


@pytest.mark.parametrize("decode, train, expected", [
    (3.4, 5.0, ("bfloat16", "bfloat16")),   # AMX: bf16 several times fp32 (the reference Xeon)
    (0.65, 0.79, ("float32", "none")),      # AVX-512 BF16 without AMX: bf16 slower
    (1.5, 0.9, ("bfloat16", "none")),       # each phase decided by its own shapes
    (BF16_MARGIN, BF16_MARGIN - 0.01, ("bfloat16", "none")),  # the margin itself counts as faster
    (1.1, 1.1, ("float32", "none")),        # a near-tie goes to fp32 (shared weights, exact training)
])
def test_auto_on_cpu_follows_the_measured_bf16_speedup(monkeypatch, decode, train, expected):
    _measured(monkeypatch, decode, train)
    chosen = choose_precision(CPU, "auto", "auto")
    assert (chosen.rollout_dtype, chosen.autocast) == expected
    assert f"{decode:.2f}x" in chosen.reason and f"{train:.2f}x" in chosen.reason


def test_explicit_values_are_kept_and_measure_nothing(monkeypatch):
    def fail(threads):
        raise AssertionError("measured although nothing was auto")

    monkeypatch.setattr(precision, "cpu_bf16_speedups", fail)
    assert choose_precision(CPU, "bfloat16", "none")[:2] == ("bfloat16", "none")
    _measured(monkeypatch, 0.5, 0.5)
    assert choose_precision(CPU, "bfloat16", "auto")[:2] == ("bfloat16", "none")  # only the auto half changes
    assert choose_precision(CPU, "auto", "bfloat16")[:2] == ("float32", "bfloat16")


def test_a_device_without_a_bf16_measurement_gets_fp32():
    chosen = choose_precision(torch.device("meta"), "auto", "auto")
    assert chosen[:2] == ("float32", "none") and "meta" in chosen.reason


def test_matmul_rate_is_a_positive_rate():
    rate = matmul_rate(8, torch.float32, min_seconds=0.01)
    assert rate > 0 and math.isfinite(rate)


def test_a_run_records_what_auto_chose(monkeypatch, tmp_path, capsys):
    _measured(monkeypatch, 0.6, 0.7)
    cfg = GRPOConfig()
    assert (cfg.model.rollout_dtype, cfg.model.autocast) == ("auto", "auto")  # the defaults
    resolve_precision(cfg, CPU, tmp_path, resume=False)
    assert (cfg.model.rollout_dtype, cfg.model.autocast) == ("float32", "none")
    assert "precision auto: rollouts float32, training autocast none" in capsys.readouterr().out


def test_a_resumed_run_keeps_the_precision_it_started_with(monkeypatch, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": {"rollout_dtype": "bfloat16", "autocast": "bfloat16"}}))
    _measured(monkeypatch, 0.6, 0.7)  # this machine would choose fp32, the run started in bf16
    cfg = GRPOConfig()
    resolve_precision(cfg, CPU, tmp_path, resume=True)
    assert (cfg.model.rollout_dtype, cfg.model.autocast) == ("bfloat16", "bfloat16")
    fresh = GRPOConfig()  # a new run in another folder measures again
    resolve_precision(fresh, CPU, tmp_path / "other", resume=False)
    assert (fresh.model.rollout_dtype, fresh.model.autocast) == ("float32", "none")


def test_jobs_without_a_rollout_copy_are_left_alone(tmp_path):
    cfg = SimpleNamespace(model=SimpleNamespace(dtype="float32"))
    resolve_precision(cfg, CPU, tmp_path, resume=False)
    assert vars(cfg.model) == {"dtype": "float32"}


def test_generation_dtype_resolves_auto_like_rollouts_and_keeps_explicit_dtypes(monkeypatch):
    from r1lab.models.precision import generation_dtype

    _measured(monkeypatch, 0.65, 3.0)  # only the decode-shape speedup decides a generate-only job
    assert generation_dtype("cpu", "auto") == "float32"
    _measured(monkeypatch, 3.4, 0.5)
    assert generation_dtype(CPU, "auto") == "bfloat16"
    monkeypatch.setattr(precision, "cpu_bf16_speedups", lambda threads: pytest.fail("measured an explicit dtype"))
    assert generation_dtype("cpu", "float16") == "float16"
