"""`r1lab generate` and `r1lab prm` through the real launcher (`torchrun --nproc_per_node 2`, gloo, CPU): 2 ranks
write the trace file of one process (program and local-model teachers), a re-run skips what is there and a torn
file resumes to the uninterrupted one; 2 ranks write one process's PRM labels and train its weights (float32, to
a few ulps)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def run(ranks: int, *args: str) -> subprocess.CompletedProcess:
    head = [sys.executable, "-m", "r1lab"] if ranks == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", "-m", "r1lab"]
    proc = subprocess.run(head + list(args), capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def rows(path: Path) -> list[dict]:
    """The file's rows without their timing (meta.latency_s), the one field that differs between runs."""
    out = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        row["meta"] = {k: v for k, v in row["meta"].items() if k != "latency_s"}
        out.append(row)
    return out


def summary(path: Path) -> dict:
    return json.loads(Path(f"{path}.summary.json").read_text())


def test_program_teacher_two_ranks_write_the_single_process_file_and_resume(tmp_path):
    """137 distinct prompts (of 200 drawn) x k=5 = 685 requests: 3 blocks of up to 256 (PROGRAM_BLOCK), 2 rounds,
    the last one uneven."""
    common = ["generate", *sets(["task.train_size=200", "sampling.k=5",
                                 "teacher.error_rate=0.3", "output.progress=false"])]
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    run(1, *common, "--set", f"output.path={one}")
    out = run(2, *common, "--set", f"output.path={two}")
    assert len(rows(one)) == 685 and rows(two) == rows(one)  # the same rows in the same order, written once
    assert out.stdout.count("summary:") == 1  # rank 0 prints
    s1, s2 = summary(one), summary(two)
    assert s2["world_size"] == 2 and s2["rows_written"] == 685 and s2["run"]["mistakes"] > 0
    for key in ("prompt_tokens", "completion_tokens", "mistakes", "rows"):
        assert s2["run"][key] == s1["run"][key], key
    # a kill mid-write: 300 rows and a torn line; the 2-rank resume ends with the uninterrupted file
    lines = two.read_text().splitlines(keepends=True)
    two.write_text("".join(lines[:300]) + lines[300][:40])
    run(2, *common, "--set", f"output.path={two}")
    assert rows(two) == rows(one) and summary(two)["rows_skipped"] == 300


def test_local_teacher_two_ranks_write_the_single_process_file(tiny_model_dir, tmp_path):
    """5 prompts x k=2 with teacher.batch_size=4: engine calls of 2 prompts, 3 blocks over 2 ranks. Each block is
    seeded from its first request, as one process seeds that call, so the sampled texts are the same."""
    common = ["generate", *sets([f"teacher.name={tiny_model_dir}", "teacher.device=cpu", "teacher.batch_size=4",
                                 "sampling.k=2", "sampling.temperature=1.0", "sampling.max_new_tokens=6",
                                 "task.train_size=20", "output.num_prompts=5", "prompt.template=plain",
                                 "prompt.instruction=''", "output.progress=false"])]
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    run(1, *common, "--set", f"output.path={one}")
    run(2, *common, "--set", f"output.path={two}")
    assert len(rows(one)) == 10 and rows(two) == rows(one)
    assert len({r["completion"] for r in rows(one)}) > 1  # sampled, not one repeated text
    before = two.read_text()
    again = run(2, *common, "--set", f"output.path={two}")
    assert "0 rows written, 10 already there" in again.stdout
    assert two.read_text() == before


PRM = ["model.device=cpu", "model.dtype=float32", "task.train_size=40", "task.eval_size=4", "prompt.template=plain",
       "mc.train_problems=20", "mc.heldout_problems=4", "mc.solutions=2", "mc.rollouts=2", "mc.max_new_tokens=8",
       "mc.max_steps=4", "mc.delimiter=' '", "train.epochs=2", "train.batch_size=5", "train.lr=1e-3",
       "log.tensorboard=false"]


def test_prm_two_ranks_label_and_train_as_one_process(tiny_model_dir, tmp_path):
    """20 training problems: chunks of 16 and 4 (LABEL_CHUNK_PROBLEMS), one per rank; 40 solutions in batches of
    5 (3 + 2 rows per rank), 16 steps. The labels are equal; the weights to a few float32 ulps (summation order:
    each rank's share is its own forward and the gradients are summed over ranks)."""
    common = ["prm", *sets(PRM + [f"model.name={tiny_model_dir}"])]
    one, two = tmp_path / "one", tmp_path / "two"
    run(1, *common, "--set", f"log.output_dir={one}")
    out = run(2, *common, "--set", f"log.output_dir={two}")
    assert out.stdout.count("run folder:") == 1
    for name in ("labels.jsonl", "heldout_labels.jsonl"):
        assert (two / name).read_text() == (one / name).read_text(), name
    labels = [json.loads(line) for line in (one / "labels.jsonl").read_text().splitlines()]
    assert len(labels) == 40 and any(len(r["labels"]) > 1 for r in labels)  # steps labelled by rollouts too
    a, b = load_file(one / "final" / "model.safetensors"), load_file(two / "final" / "model.safetensors")
    initial = load_file(Path(tiny_model_dir) / "model.safetensors")
    assert a.keys() == b.keys() and all(v.dtype == torch.float32 for v in a.values())
    assert max(float((a[k] - initial[k]).abs().max()) for k in initial) > 1e-3  # training moved the backbone
    scale = max(float(v.abs().max()) for v in a.values())
    tolerance = 16 * torch.finfo(torch.float32).eps * scale  # observed: 1 ulp (1.2e-7 at scale 1.0)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= tolerance
    metrics = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    steps = [(m["step"], m["train/loss"]) for m in metrics(one) if "train/loss" in m]
    assert [s for s, _ in steps] == list(range(1, 17))
    assert [m["train/loss"] for m in metrics(two) if "train/loss" in m] == pytest.approx([x for _, x in steps], rel=1e-5)
