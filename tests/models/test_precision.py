"""`auto` precision: bf16 only on CPUs with AMX (decided from feature flags, never a timing), and what a run records."""

from __future__ import annotations

import json
import math
import multiprocessing
from types import SimpleNamespace

import pytest
import torch

from r1lab.config import GRPOConfig
from r1lab.models import precision
from r1lab.models.precision import choose_precision, cpuinfo_flags, matmul_rate
from r1lab.train.run_setup import resolve_precision

CPU = torch.device("cpu")
AMX = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")
AVX512_BF16 = ("avx512_bf16", "avx512f", "avx2")


def _cpu(monkeypatch, features: tuple[str, ...]) -> None:
    monkeypatch.setattr(precision, "cpu_matrix_features", lambda: features)


def _read_again() -> None:
    """Forget this process's reading of the CPU's flags (unless the suite emulates a CPU: --cpu-features)."""
    getattr(precision.cpu_matrix_features, "cache_clear", lambda: None)()


@pytest.mark.parametrize("features, expected", [
    (AMX, ("bfloat16", "bfloat16")),                    # Sapphire Rapids: bf16 3-5x fp32's matmul rate
    (AVX512_BF16, ("float32", "none")),                 # bf16 dot products without AMX measured slower than fp32
    (("avx2",), ("float32", "none")),                   # bf16 emulated
    (("amx_tile", "avx512f"), ("float32", "none")),     # the tile unit without its bf16 instructions
    ((), ("float32", "none")),
])
def test_auto_on_cpu_follows_the_amx_flags(monkeypatch, features, expected):
    _cpu(monkeypatch, features)
    chosen = choose_precision(CPU, "auto", "auto")
    assert (chosen.rollout_dtype, chosen.autocast) == expected
    assert all(flag in chosen.reason for flag in features)  # the reason names what it read
    assert "--set model.rollout_dtype" in chosen.reason  # and the override


def test_auto_times_nothing(monkeypatch):
    monkeypatch.setattr(precision, "matmul_rate", lambda *a, **k: pytest.fail("auto precision ran a timing"))
    _read_again()
    first = choose_precision(CPU, "auto", "auto")
    assert choose_precision(CPU, "auto", "auto") == first


def _hog(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def test_the_choice_is_the_same_beside_a_cpu_hog():
    _read_again()
    idle = choose_precision(CPU, "auto", "auto")
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=_hog, args=(stop,)) for _ in range(2)]
    for hog in hogs:
        hog.start()
    try:
        _read_again()
        loaded = choose_precision(CPU, "auto", "auto")
    finally:
        stop.set()
        for hog in hogs:
            hog.join(timeout=10)
    assert loaded == idle


def test_cpuinfo_flags_read_the_first_cpu():
    text = "processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 amx_bf16 amx_tile\n\nprocessor\t: 1\nflags\t: fpu\n"
    assert cpuinfo_flags(text) == ["fpu", "avx2", "amx_bf16", "amx_tile"]
    assert cpuinfo_flags("processor : 0\nFeatures : fp asimd bf16\n") == ["fp", "asimd", "bf16"]  # Arm
    assert cpuinfo_flags("nothing here\n") is None


def test_this_machine_reports_known_flags_only():
    _read_again()
    assert set(precision.cpu_matrix_features()) <= set(precision.MATRIX_FLAGS)


def test_explicit_values_are_kept(monkeypatch):
    _cpu(monkeypatch, AVX512_BF16)
    assert choose_precision(CPU, "bfloat16", "none")[:2] == ("bfloat16", "none")
    assert choose_precision(CPU, "bfloat16", "auto")[:2] == ("bfloat16", "none")  # only the auto half changes
    assert choose_precision(CPU, "auto", "bfloat16")[:2] == ("float32", "bfloat16")
    _cpu(monkeypatch, AMX)
    assert choose_precision(CPU, "float32", "auto")[:2] == ("float32", "bfloat16")


def test_a_device_without_a_bf16_rule_gets_fp32():
    chosen = choose_precision(torch.device("meta"), "auto", "auto")
    assert chosen[:2] == ("float32", "none") and "meta" in chosen.reason


def test_matmul_rate_is_a_positive_rate():
    rate = matmul_rate(8, torch.float32, min_seconds=0.01)
    assert rate > 0 and math.isfinite(rate)


def test_a_run_records_what_auto_chose(monkeypatch, tmp_path, capsys):
    _cpu(monkeypatch, AVX512_BF16)
    cfg = GRPOConfig()
    assert (cfg.model.rollout_dtype, cfg.model.autocast) == ("auto", "auto")  # the defaults
    resolve_precision(cfg, CPU, tmp_path, resume=False)
    assert (cfg.model.rollout_dtype, cfg.model.autocast) == ("float32", "none")
    assert "precision auto: rollouts float32, training autocast none" in capsys.readouterr().out


def test_a_resumed_run_keeps_the_precision_it_started_with(monkeypatch, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": {"rollout_dtype": "bfloat16", "autocast": "bfloat16"}}))
    _cpu(monkeypatch, AVX512_BF16)  # this machine would choose fp32, the run started in bf16 (on an AMX machine)
    cfg = GRPOConfig()
    resolve_precision(cfg, CPU, tmp_path, resume=True)
    assert (cfg.model.rollout_dtype, cfg.model.autocast) == ("bfloat16", "bfloat16")
    fresh = GRPOConfig()  # a new run in another folder decides again
    resolve_precision(fresh, CPU, tmp_path / "other", resume=False)
    assert (fresh.model.rollout_dtype, fresh.model.autocast) == ("float32", "none")


def test_jobs_without_a_rollout_copy_are_left_alone(tmp_path):
    cfg = SimpleNamespace(model=SimpleNamespace(dtype="float32"))
    resolve_precision(cfg, CPU, tmp_path, resume=False)
    assert vars(cfg.model) == {"dtype": "float32"}


def test_generation_dtype_resolves_auto_like_rollouts_and_keeps_explicit_dtypes(monkeypatch):
    from r1lab.models.precision import generation_dtype

    _cpu(monkeypatch, AVX512_BF16)
    assert generation_dtype("cpu", "auto") == "float32"
    _cpu(monkeypatch, AMX)
    assert generation_dtype(CPU, "auto") == "bfloat16"
    assert generation_dtype("cpu", "float16") == "float16"
