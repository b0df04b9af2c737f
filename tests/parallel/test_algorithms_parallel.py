"""The algorithms at any world size: REINFORCE++ with the KL in the reward (global-batch normalisation through
all-reduced sums) and PPO with a critic (value-model gradients summed over ranks) train the single process's
weights on 2 ranks (torchrun, gloo, float64); dynamic sampling refuses a multi-process launch with a message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

GRPO = [
    "task.params={min_terms: 2, max_terms: 2, min_digits: 1, max_digits: 1, operators: ['+'], "
    "allow_parentheses: false, allow_negation: false}",
    "task.train_size=200", "task.eval_size=4", "train.prompts_per_step=4", "rollout.group_size=4",
    "rollout.max_new_tokens=8", "eval.max_new_tokens=8", "train.micro_batch_size=3", "train.lr=1e-2",
    "log.progress=false", "log.tensorboard=false", "train.threads=1", "eval.every=0", "train.steps=2",
    "rewards.weights={accuracy: 1.0, tag_count: 1.0}", "model.device=cpu", "train.collective_timeout_minutes=2",
    # float64, no autocast, per-row forward: only summation order differs between world sizes (test_data_parallel)
    "model.train_dtype=float64", "model.rollout_dtype=float64", "model.autocast=none",
    "train.gradient_checkpointing=true",
]


def launch(ranks: int, *args: str) -> subprocess.CompletedProcess:
    head = [sys.executable, "-m", "r1lab"] if ranks == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", "-m", "r1lab"]
    return subprocess.run(head + list(args), capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.mark.parametrize("extra", [["algo.advantage=reinforce_pp", "algo.kl_in=reward", "algo.beta=0.1"],
                                   ["algo.advantage=gae", "algo.num_iterations=2"]], ids=["reinforce_pp", "gae"])
def test_two_ranks_train_the_single_process_weights(tiny_model_dir, tmp_path, extra):
    common = ["grpo", "configs/zero_cpu.yaml", *sets(GRPO + extra + [f"model.name={tiny_model_dir}"])]
    one, two = tmp_path / "one", tmp_path / "two"
    for ranks, out in ((1, one), (2, two)):
        proc = launch(ranks, *common, "--set", f"log.output_dir={out}")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    a, b = load_file(one / "final" / "model.safetensors"), load_file(two / "final" / "model.safetensors")
    initial = load_file(Path(tiny_model_dir) / "model.safetensors")
    assert max(float((a[k] - initial[k].double()).abs().max()) for k in a) > 1e-3
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-10


def test_dynamic_sampling_refuses_two_ranks(tiny_model_dir, tmp_path):
    proc = launch(2, "grpo", "configs/zero_cpu.yaml", *sets(GRPO + [
        f"model.name={tiny_model_dir}", "algo.dynamic_sampling=true", f"log.output_dir={tmp_path / 'run'}"]))
    assert proc.returncode != 0
    assert "algo.dynamic_sampling=true runs in one process only" in proc.stdout + proc.stderr
