"""End-to-end through the real CLI on a tiny model: every algorithm of issue-level choice (algo.loss, algo.advantage,
algo.kl_in, algo.dynamic_sampling) trains, logs its metrics, and resumes bit-exactly after a kill (the critic's
weights and optimizer, and the sampler's refill draws, are in the checkpoint)."""

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

TESTS = Path(__file__).resolve().parents[1]
TINY_RUN = [
    "task.params={min_terms: 2, max_terms: 2, min_digits: 1, max_digits: 1, operators: ['+'], "
    "allow_parentheses: false, allow_negation: false}",
    "task.train_size=200", "task.eval_size=4", "train.prompts_per_step=2", "rollout.group_size=4",
    "rollout.max_new_tokens=8", "eval.max_new_tokens=8", "train.micro_batch_size=3", "train.lr=1e-2",
    "log.progress=false", "log.tensorboard=false", "train.threads=1", "eval.sampled=false",
    "rewards.weights={accuracy: 1.0, tag_count: 1.0}",
]
METHODS = {
    "gspo": ["algo.loss=gspo", "algo.loss_aggregation=seq_mean_token_mean", "algo.num_iterations=2"],
    "cispo": ["algo.loss=cispo", "algo.num_iterations=2"],
    "sapo": ["algo.loss=sapo", "algo.num_iterations=2"],
    "reinforce_pp_kl_reward": ["algo.advantage=reinforce_pp", "algo.kl_in=reward", "algo.beta=0.1"],
    "gae": ["algo.advantage=gae", "critic.warmup_steps=1", "algo.num_iterations=2"],
    "dynamic_sampling": ["algo.dynamic_sampling=true", "algo.dynamic_sampling_max_rounds=3"],
}


def r1lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "r1lab.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", list(METHODS))
def test_each_algorithm_trains_end_to_end(tiny_model_dir, tmp_path, method):
    run = tmp_path / "run"
    proc = r1lab("grpo", "configs/zero_cpu.yaml", *sets(TINY_RUN + METHODS[method] + [
        f"model.name={tiny_model_dir}", f"log.output_dir={run}", "train.steps=2", "eval.every=2"]))
    assert proc.returncode == 0, proc.stderr
    steps = [r for r in records(run) if r["step"] > 0]
    assert len(steps) == 2
    final, initial = load_file(run / "final" / "model.safetensors"), load_file(Path(tiny_model_dir) / "model.safetensors")
    assert any(not torch.equal(final[k], initial[k]) for k in final)
    if method == "gae":
        assert steps[0]["policy/trained_sequences"] == 0 and steps[1]["policy/trained_sequences"] > 0  # warm-up
        assert all("critic/loss" in r for r in steps)
    if method == "dynamic_sampling":
        for r in steps:
            assert r["sampling/informative_groups"] + r["sampling/discarded_groups"] == r["sampling/generated_groups"]
            assert r["sampling/generated_groups"] == 2 * r["sampling/rounds"]
            assert r["reward/zero_variance_groups"] == 0 or r["sampling/rounds"] == 3
    if method == "reinforce_pp_kl_reward":
        assert steps[0]["loss/kl"] is None  # the KL is in the reward, not a loss term


def test_kill_and_resume_is_exact_with_critic_dynamic_sampling_and_kl_reward(tiny_model_dir, tmp_path):
    common = TINY_RUN + ["algo.advantage=gae", "algo.dynamic_sampling=true", "algo.kl_in=reward", "algo.beta=0.1",
                         "critic.warmup_steps=1", f"model.name={tiny_model_dir}", "train.steps=4", "eval.every=0",
                         "log.checkpoint_every=1"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    proc = r1lab("grpo", "configs/zero_cpu.yaml", *sets(common + [f"log.output_dir={straight}"]))
    assert proc.returncode == 0, proc.stderr
    killed = subprocess.run([sys.executable, str(TESTS / "kill_after_checkpoint.py"), "2", "grpo",
                             "configs/zero_cpu.yaml", *sets(common + [f"log.output_dir={resumed}"])],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    proc = r1lab("grpo", "configs/zero_cpu.yaml", "--resume", *sets(common + [f"log.output_dir={resumed}"]))
    assert proc.returncode == 0, proc.stderr
    a, b = load_file(straight / "final" / "model.safetensors"), load_file(resumed / "final" / "model.safetensors")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    keys = ("reward/mean", "critic/loss", "sampling/rounds", "loss/policy")
    assert [[r.get(k) for k in keys] for r in records(resumed)] == [[r.get(k) for k in keys] for r in records(straight)]
    assert any(r.get("sampling/rounds", 1) > 1 for r in records(straight))  # the refill path really ran


def test_help_lists_the_algorithm_options():
    out = r1lab("grpo", "--help").stdout
    for key in ("algo.loss", "gspo", "cispo", "sapo", "reinforce_pp", "gae", "algo.kl_in", "algo.dynamic_sampling",
                "algo.dynamic_sampling_max_rounds", "critic.model", "critic.lam", "critic.value_clip",
                "critic.warmup_steps"):
        assert key in out, key


def test_bad_combinations_are_config_errors():
    proc = r1lab("grpo", "configs/zero_cpu.yaml", "--set", "algo.kl_in=reward")
    assert proc.returncode == 2 and "algo.kl_in" in proc.stderr and "beta" in proc.stderr
    proc = r1lab("grpo", "configs/zero_cpu.yaml", "--set", "algo.loss=gspo", "--set", "algo.advantage=gae")
    assert proc.returncode == 2 and "algo.loss" in proc.stderr
    proc = r1lab("grpo", "configs/zero_cpu.yaml", "--set", "algo.loss=ppo")
    assert proc.returncode == 2 and "ppo_clip" in proc.stderr
