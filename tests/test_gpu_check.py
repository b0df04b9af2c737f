"""scripts/gpu_check.sh --smoke: the GPU check's whole path (random-weight model from a config, every case under
torchrun, peak memory from each rank, the figures file) on a tiny config on the CPU."""

import json
import os
import subprocess


def test_gpu_check_smoke_writes_every_case(tmp_path):
    proc = subprocess.run(["scripts/gpu_check.sh", "--smoke"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OUT": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    cases = {(r["engine"], r["ranks"], r["parallel"]) for r in result["rows"]}
    assert {("native", 1, "ddp"), ("hf", 1, "ddp"), ("native", 2, "ddp"), ("native", 2, "fsdp")} <= cases
    for row in result["rows"]:
        assert "error" not in row and "skipped" not in row, row
        assert row["generated_tokens_per_step"] == 2 * 2 * 8  # prompts x group x forced tokens
        assert row["step_s"] > 0 and row["peak_memory_gb_per_rank"] > 0
        assert row["flops_per_step"] == 8 * row["non_embedding_params"] * 32
        assert row["mfu"] is None  # no GPU peak on a CPU
