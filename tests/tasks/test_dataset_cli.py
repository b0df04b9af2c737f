"""End to end through the real CLI on a tiny model: `r1lab grpo` then `r1lab eval` on a GSM8K-shaped save_to_disk
folder and on MATH-500-shaped Parquet shards; a 10 MB prompt stops grpo, eval and generate within seconds with its
file:line, and task.overlong_prompts=drop trains on the other rows and says how many were left out."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY_GRPO = ["task.eval_size=2", "train.prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=8",
             "eval.max_new_tokens=8", "eval.sampled=false", "train.micro_batch_size=4", "train.threads=1",
             "log.progress=false", "log.tensorboard=false", "rewards.weights={accuracy: 1.0, tag_count: 1.0}"]


def r1lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "r1lab.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def gsm8k_saved(tmp_path: Path, rows) -> tuple[list[str], list[dict]]:
    """A save_to_disk folder with train (4 rows) and test (2 rows) splits; (task keys, held-out rows)."""
    import datasets

    gsm = rows("gsm8k_style.jsonl")
    folder = tmp_path / "gsm8k"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(gsm[:4]),
                          "test": datasets.Dataset.from_list(gsm[4:])}).save_to_disk(str(folder))
    return [f"task.name=hf:{folder}", "task.eval_split=test"], gsm[4:]


def math500_shards(tmp_path: Path, rows) -> tuple[list[str], list[dict]]:
    """Two Parquet shards of one split; (task keys, all rows)."""
    import datasets

    math = rows("math500_style.jsonl")
    (tmp_path / "math500").mkdir()
    for i, part in enumerate((math[:3], math[3:])):
        datasets.Dataset.from_list(part).to_parquet(str(tmp_path / "math500" / f"test-0000{i}-of-00002.parquet"))
    return [f"task.name=hf:{tmp_path}/math500/test-*.parquet"], math


@pytest.mark.parametrize("dataset", [gsm8k_saved, math500_shards], ids=["gsm8k_save_to_disk", "math500_parquet"])
def test_grpo_then_eval_on_a_benchmark_dataset(dataset, tiny_model_dir, tmp_path, rows, hf_caches, monkeypatch):
    monkeypatch.setenv("R1LAB_CACHE", str(tmp_path / "r1lab-cache"))
    task, evaluated = dataset(tmp_path, rows)
    run = tmp_path / "run"
    proc = r1lab("grpo", "configs/zero_cpu.yaml", *sets(TINY_GRPO + task + [
        f"model.name={tiny_model_dir}", f"log.output_dir={run}", "train.steps=2", "eval.every=2"]))
    assert proc.returncode == 0, proc.stderr
    assert "held-out accuracy:" in proc.stdout and "(n=2)" in proc.stdout
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [0, 1, 2]
    held_out = read_jsonl(run / "eval" / "step_0.jsonl")
    source = task[0].removeprefix("task.name=hf:")
    assert len(held_out) == 2 and all(r["id"].startswith(source) for r in held_out)
    samples = [s for s in read_jsonl(run / "samples.jsonl") if s["split"] == "train"]  # rollouts, not held-out
    assert samples and not {s["prompt_id"] for s in samples} & {r["id"] for r in held_out}

    out = tmp_path / "eval"
    proc = r1lab("eval", str(run / "final"), "--n", "1", *sets(task + [
        "sampling.max_new_tokens=8", "log.progress=false", f"log.output_dir={out}"]))
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["num_problems"] == len(evaluated)  # every row of the evaluated split
    golds = [r["gold"] for r in read_jsonl(out / "completions.jsonl")]
    expected = [r["answer"].rsplit("####", 1)[-1].strip() for r in evaluated]  # GSM8K's final answers, MATH's answer
    assert sorted(golds) == sorted(expected)


def huge_row_file(tmp_path: Path) -> Path:
    """Six ordinary rows and, at line 3, a 10 MB prompt."""
    path = tmp_path / "data.jsonl"
    rows = [{"prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(1, 7)]
    rows.insert(2, {"prompt": "Add these numbers: " + "1 + " * 2_500_000 + "1", "answer": "2500001"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_10mb_prompt_stops_every_generating_job_within_seconds(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("R1LAB_CACHE", str(tmp_path / "r1lab-cache"))
    path = huge_row_file(tmp_path)
    held = tmp_path / "held.jsonl"
    held.write_text(json.dumps({"prompt": "What is 9 + 9?", "answer": "18"}) + "\n")
    task = [f"task.name={path}", f"task.eval_path={held}"]  # the huge row is a training row
    jobs = {
        "grpo": (["grpo", "configs/zero_cpu.yaml"], TINY_GRPO + task + [
            f"model.name={tiny_model_dir}", f"log.output_dir={tmp_path / 'run'}", "train.steps=1"],
                 "rollout.max_prompt_tokens is 504 (auto: the model's 512-token context minus 8 new tokens)"),
        "eval": (["eval", str(tiny_model_dir), "--task", str(path)], [f"log.output_dir={tmp_path / 'eval'}"],
                 "sampling.max_prompt_tokens is 256 (auto: the model's 512-token context minus 256 new tokens)"),
        "generate": (["generate", "--teacher", str(tiny_model_dir), "--output", str(tmp_path / "traces.jsonl")],
                     task + ["sampling.max_new_tokens=8", "output.progress=false"],
                     "sampling.max_prompt_tokens is 504 (auto: the model's 512-token context minus 8 new tokens)"),
    }
    for name, (command, keys, limit) in jobs.items():
        started = time.monotonic()
        proc = r1lab(*command, *sets(keys))
        elapsed = time.monotonic() - started
        assert proc.returncode == 1, (name, proc.stderr)
        found = re.search(rf"error: {re.escape(str(path))}:3: prompt is at least ([\d,]+) tokens \(([\d,]+) "
                          rf"characters\), {re.escape(limit)}", proc.stderr)
        assert found, (name, proc.stderr)
        tokens, chars = (int(g.replace(",", "")) for g in found.groups())  # the prompt the model sees: template too
        assert chars > 10_000_020 and tokens == -(-chars // 12)  # a 12-byte token is the tiny vocabulary's longest
        # The process imports torch and loads a model; tokenizing the prompt alone would take ~50 s and 4 GB
        assert elapsed < 60, (name, elapsed)
    assert not (tmp_path / "run" / "metrics.jsonl").exists() and not (tmp_path / "traces.jsonl").exists()


def test_drop_mode_trains_on_the_other_rows_and_says_how_many(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("R1LAB_CACHE", str(tmp_path / "r1lab-cache"))
    path = huge_row_file(tmp_path)
    held = tmp_path / "held.jsonl"
    held.write_text(json.dumps({"prompt": "What is 9 + 9?", "answer": "18"}) + "\n")
    run = tmp_path / "run"
    proc = r1lab("grpo", "configs/zero_cpu.yaml", *sets(TINY_GRPO + [
        f"task.name={path}", f"task.eval_path={held}", "task.overlong_prompts=drop", f"model.name={tiny_model_dir}",
        f"log.output_dir={run}", "train.steps=2", "eval.every=0", "train.prompts_per_step=6"]))
    assert proc.returncode == 0, proc.stderr
    assert (f"note: left out 1 of 7 training problems whose prompt is longer than rollout.max_prompt_tokens=504 "
            f"(task.overlong_prompts=drop), e.g. {path}:3") in proc.stderr
    trained = {s["prompt_id"] for s in read_jsonl(run / "samples.jsonl")}
    assert trained and f"{path}:3" not in trained
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2]
