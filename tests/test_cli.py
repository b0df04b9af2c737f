"""End-to-end: the real `r1lab` CLI on a tiny model, and exact resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TINY_RUN = [
    "task.params={min_terms: 2, max_terms: 2, min_digits: 1, max_digits: 1, operators: ['+'], "
    "allow_parentheses: false, allow_negation: false}",
    "task.train_size=200", "task.eval_size=8", "train.prompts_per_step=2", "rollout.group_size=4",
    "rollout.max_new_tokens=8", "eval.max_new_tokens=8", "train.micro_batch_size=3", "train.lr=1e-2",
    "log.progress=false", "log.tensorboard=true", "train.threads=1",
    # A random tiny model is never right; tag-count partial credit gives its groups reward variance to learn from.
    "rewards.weights={accuracy: 1.0, tag_count: 1.0}",
]


def r1lab(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "r1lab.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def r1lab_killed_after_checkpoint(step: int, *args: str) -> subprocess.CompletedProcess:
    """`r1lab ARGS`, SIGKILLed right after writing the checkpoint of ``step`` (tests/kill_after_checkpoint.py)."""
    killer = Path(__file__).parent / "kill_after_checkpoint.py"
    return subprocess.run([sys.executable, str(killer), str(step), *args], capture_output=True, text=True,
                          timeout=300)


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def test_help_lists_every_subcommand_and_config_key():
    top = r1lab("--help")
    assert top.returncode == 0 and "grpo" in top.stdout and "zero" in top.stdout
    grpo = r1lab("grpo", "--help")
    assert grpo.returncode == 0
    for key in ("algo.clip_high", "algo.kl_estimator", "rollout.group_size", "train.micro_batch_size", "--resume"):
        assert key in grpo.stdout


def test_grpo_two_steps_end_to_end(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    proc = r1lab("grpo", "configs/zero_cpu.yaml",
                 *sets(TINY_RUN + [f"model.name={tiny_model_dir}", f"log.output_dir={run}", "train.steps=2",
                                   "eval.every=1", "rewards.weights={accuracy: 1.0, format: 0.5, tag_count: 0.25}"]))
    assert proc.returncode == 0, proc.stderr
    assert "held-out accuracy:" in proc.stdout and "(n=8)" in proc.stdout
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2]
    for key in ("reward/mean", "reward/accuracy", "reward/format", "reward/tag_count", "completion/mean_length",
                "eval/greedy_accuracy", "time/step_s", "time/weight_sync_s", "rollout/abs_log_ratio",
                "rollout/capped_fraction", "rollout/kl"):
        assert key in records[-1]
    # truncated importance sampling is on by default; the engine and the trainer agree closely but not exactly
    assert json.loads((run / "config.json").read_text())["algo"]["rollout_correction"] == "tis"
    assert 0 <= records[-1]["rollout/abs_log_ratio"] < 0.05 and records[-1]["rollout/kl"] >= 0
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    train = [s for s in samples if s["split"] == "train"]
    assert train and {"completion", "reward", "breakdown", "advantage", "length", "formatted"} <= set(train[0])
    held_out = [s for s in samples if s["split"] == "eval"]  # a few per evaluation (steps 0, 1, 2), with the step
    assert sorted({s["step"] for s in held_out}) == [0, 1, 2]
    assert {"completion", "gold", "correct", "formatted", "length"} <= set(held_out[0])
    for key in ("completion/format_rate", "completion/p50_length", "completion/p90_length",
                "completion/reflection_share", "eval/format_rate", "eval/p90_length", "eval/truncated_fraction",
                "eval/reflection_share"):
        assert key in records[-1], key
    # the end-of-run report: before/after table, held-out completions, and the two closing lines
    out = proc.stdout.strip().splitlines()
    assert out[-2].startswith("held-out accuracy:") and out[-1].startswith("format rate: ")
    assert any(line.startswith("accuracy ") for line in out) and any("  before [" in line for line in out)
    assert (run / "training.png").stat().st_size > 1000
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 2
    # The final model is a plain HF folder that transformers loads.
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(run / "final")
    # Resuming a finished run says so instead of silently doing nothing.
    again = r1lab("grpo", "configs/zero_cpu.yaml", "--resume",
                  *sets(TINY_RUN + [f"model.name={tiny_model_dir}", f"log.output_dir={run}", "train.steps=2"]))
    assert again.returncode == 1 and "already finished" in again.stderr
    # Starting over an existing run without --resume refuses rather than mixing two runs' logs.
    fresh = r1lab("grpo", "configs/zero_cpu.yaml",
                  *sets(TINY_RUN + [f"model.name={tiny_model_dir}", f"log.output_dir={run}", "train.steps=2"]))
    assert fresh.returncode == 1 and "--resume" in fresh.stderr


def test_gradient_checkpointing_trains_the_same_model(tiny_model_dir, tmp_path):
    """train.gradient_checkpointing replays layers in backward (rows run whole, no shared prompt cache): the same
    rollouts, rewards and weights as without it, up to float rounding. Two passes per step, with a reference.
    Precision pinned to fp32: under `auto` an AMX CPU trains in bf16, whose rounding exceeds this tolerance."""
    common = TINY_RUN + [f"model.name={tiny_model_dir}", "train.steps=2", "eval.every=0", "log.tensorboard=false",
                         "algo.num_iterations=2", "algo.beta=0.05", "train.lr=1e-3", "model.rollout_dtype=float32",
                         "model.autocast=none"]
    runs = {}
    for flag in ("false", "true"):
        run = tmp_path / flag
        proc = r1lab("grpo", "configs/zero_cpu.yaml",
                     *sets(common + [f"log.output_dir={run}", f"train.gradient_checkpointing={flag}"]))
        assert proc.returncode == 0, proc.stderr
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        runs[flag] = load_file(run / "final" / "model.safetensors"), [r.get("reward/mean") for r in metrics]
    (plain, rewards_plain), (replayed, rewards_replayed) = runs["false"], runs["true"]
    assert json.loads((tmp_path / "true" / "config.json").read_text())["train"]["gradient_checkpointing"] is True
    assert rewards_replayed == rewards_plain
    initial = load_file(Path(tiny_model_dir) / "model.safetensors")
    moved = max(float((plain[k] - initial[k]).abs().max()) for k in plain)
    assert moved > 1e-3  # the steps did train
    for key in plain:  # AdamW divides by sqrt(v): a near-zero gradient's rounding can move a weight by up to ~lr
        torch.testing.assert_close(replayed[key], plain[key], rtol=0, atol=2e-4, msg=key)


def test_config_typo_exits_with_the_closest_key():
    proc = r1lab("grpo", "configs/zero_cpu.yaml", "--set", "rollout.group_sise=4")
    assert proc.returncode == 2 and "Did you mean 'rollout.group_size'?" in proc.stderr


@pytest.mark.parametrize("extra", [[], ["algo.num_iterations=2", "algo.beta=0.05"]], ids=["plain", "mu2_kl"])
def test_kill_and_resume_matches_straight_run(tiny_model_dir, tmp_path, extra):
    """4 steps straight == 2 steps, SIGKILL before step 3 (after step 2's checkpoint), --resume for the rest
    (bit-identical)."""
    common = TINY_RUN + extra + [f"model.name={tiny_model_dir}", "train.steps=4", "eval.every=2",
                                 "log.checkpoint_every=1", "log.tensorboard=false"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert r1lab("grpo", "configs/zero_cpu.yaml", *sets(common + [f"log.output_dir={straight}"])).returncode == 0
    killed = r1lab_killed_after_checkpoint(2, "grpo", "configs/zero_cpu.yaml",
                                           *sets(common + [f"log.output_dir={resumed}"]))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (resumed / "final").exists()
    proc = r1lab("grpo", "configs/zero_cpu.yaml", "--resume", *sets(common + [f"log.output_dir={resumed}"]))
    assert proc.returncode == 0, proc.stderr
    assert "resumed from" in proc.stdout and "step 2" in proc.stdout
    a, b = load_file(straight / "final" / "model.safetensors"), load_file(resumed / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    initial = load_file(Path(tiny_model_dir) / "model.safetensors")
    assert any(not torch.equal(a[k], initial[k]) for k in a)  # training did change the weights
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # Each step is logged exactly once, and the rewards seen after the resume are the same as straight through.
    steps = lambda run: [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert [r["step"] for r in steps(resumed)] == [0, 1, 2, 3, 4]
    assert [r.get("reward/mean") for r in steps(resumed)] == [r.get("reward/mean") for r in steps(straight)]


def test_grpo_with_the_python_tool_runs_one_step(tiny_model_dir, tmp_path):
    # configs/tools_cpu.yaml on a tiny model: multi-turn rollouts with the sandboxed python tool, one step. The
    # prefill opens a ```python block, so a tiny model's first call runs whenever it writes a closing fence; the
    # tool metrics are logged whatever it writes.
    run = tmp_path / "run"
    proc = r1lab("grpo", "configs/tools_cpu.yaml",
                 *sets([f"model.name={tiny_model_dir}", f"log.output_dir={run}", "train.steps=1",
                        "task.train_size=50", "task.eval_size=4", "train.prompts_per_step=2", "rollout.group_size=2",
                        "rollout.max_new_tokens=24", "tools.max_total_tokens=24", "eval.max_new_tokens=24",
                        "eval.every=1", "log.progress=false", "log.tensorboard=false", "train.threads=1"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    step = records[-1]
    assert step["step"] == 1
    for key in ("tools/calls_per_sample", "tools/call_rate", "tools/error_rate", "tools/tokens_masked"):
        assert key in step and step[key] >= 0
    assert 0 <= step["tools/call_rate"] <= 1 and 0 <= step["tools/error_rate"] <= 1
