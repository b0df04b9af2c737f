"""bf16 master weights through the real CLI on the tiny model: `--set model.train_dtype=bfloat16` trains with fp32
AdamW moments and a rounding remedy (r1lab.train.low_precision_adamw), config.json records the remedy, and a run
killed after a checkpoint resumes bit for bit (one process: SFT with the default stochastic rounding, GRPO with
Kahan and a PPO critic; FSDP over 2 ranks: SFT with Kahan)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

TESTS = Path(__file__).parents[1]
# bf16 everywhere and no autocast: the same precision on CPUs with and without AMX (whose auto would differ)
BF16 = ["model.train_dtype=bfloat16", "model.rollout_dtype=bfloat16", "model.autocast=none", "model.device=cpu"]
GRPO_RUN = [
    "task.params={min_terms: 2, max_terms: 2, min_digits: 1, max_digits: 1, operators: ['+'], "
    "allow_parentheses: false, allow_negation: false}",
    "task.train_size=200", "task.eval_size=4", "train.prompts_per_step=2", "rollout.group_size=4",
    "rollout.max_new_tokens=8", "eval.max_new_tokens=8", "train.micro_batch_size=3", "train.lr=1e-2",
    "log.progress=false", "log.tensorboard=false", "train.threads=1", "rewards.weights={accuracy: 1.0, tag_count: 1.0}",
    "algo.beta=0.04", "algo.advantage=gae", "train.steps=4", "eval.every=4", "log.checkpoint_every=1",
    "model.low_precision_update=kahan", *BF16,
]


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def r1lab(*args: str, kill_after: int = 0, ranks: int = 1) -> subprocess.CompletedProcess:
    """`r1lab ARGS` (``ranks`` > 1: under torchrun); with ``kill_after``, SIGKILLed right after the checkpoint of
    that step (every rank kills itself)."""
    head = [str(TESTS / "kill_after_checkpoint.py"), str(kill_after)] if kill_after else ["-m", "r1lab.cli"]
    if ranks > 1:
        head = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", *head]
    return subprocess.run([sys.executable, *head, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def straight_and_resumed(tmp_path: Path, args: list[str], ranks: int = 1) -> tuple[Path, Path]:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    proc = r1lab(*args, *sets([f"log.output_dir={straight}"]), ranks=ranks)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    killed = r1lab(*args, *sets([f"log.output_dir={resumed}"]), kill_after=2, ranks=ranks)
    assert killed.returncode != 0 and not (resumed / "final").exists(), killed.stderr[-3000:]
    if ranks == 1:
        assert killed.returncode == -signal.SIGKILL
    proc = r1lab(*args, "--resume", *sets([f"log.output_dir={resumed}"]), ranks=ranks)
    assert proc.returncode == 0 and "resumed from" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    return straight, resumed


def metric(run: Path, key: str) -> list:
    """``key`` of every metrics.jsonl record that has it (each step logged once, resumed or not)."""
    values = [r[key] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if key in r]
    assert values, key
    return values


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "final" / "model.safetensors")


def assert_bit_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


def assert_trained_in_bf16(run: Path, base: Path) -> None:
    weights, initial = final_weights(run), load_file(base / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    moved = sum(int((weights[k].float() != initial[k].float()).sum()) for k in weights)
    assert moved > 0.5 * sum(t.numel() for t in weights.values())  # most weights moved by at least one bf16 ulp


def sft_args(tmp_path: Path, model: Path, extra: list[str]) -> list[str]:
    data = tmp_path / "traces.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{a}+{b}=", "completion": f"<answer>{a + b}</answer>"}) + "\n"
                            for a in range(5) for b in range(4)))
    return ["sft", *sets([f"model.name={model}", f"data.train_path={data}", "data.eval_size=3", "data.max_length=96",
                          "prompt.system=", "prompt.instruction=", "train.batch_size=6", "train.micro_batch_size=2",
                          "train.lr=3e-3", "train.threads=1", "train.steps=4", "eval.every=2", "eval.max_new_tokens=6",
                          "log.progress=false", "log.checkpoint_every=1", "log.samples_per_step=2",
                          "log.tensorboard=false", "train.collective_timeout_minutes=2", *BF16, *extra])]


def test_sft_bf16_defaults_to_stochastic_rounding_and_resumes_exactly(tiny_model_dir, tmp_path):
    straight, resumed = straight_and_resumed(tmp_path, sft_args(tmp_path, tiny_model_dir, []))
    # auto resolved and recorded: the remedy the run used
    assert json.loads((straight / "config.json").read_text())["model"]["low_precision_update"] == "stochastic_rounding"
    state = torch.load(sorted((straight / "checkpoints").iterdir())[-1] / "state.pt", weights_only=False)
    moments = {v.dtype for s in state["optimizer"]["state"].values() for k, v in s.items() if k != "step"}
    assert moments == {torch.float32}  # torch's AdamW would have kept bf16 moments
    assert_trained_in_bf16(straight, Path(tiny_model_dir))
    assert_bit_equal(final_weights(straight), final_weights(resumed))
    for key in ("loss/train", "eval/loss"):
        assert metric(straight, key) == metric(resumed, key)


def test_grpo_bf16_with_kahan_and_a_critic_resumes_exactly(tiny_model_dir, tmp_path):
    args = ["grpo", "configs/zero_cpu.yaml", *sets(GRPO_RUN + [f"model.name={tiny_model_dir}"])]
    straight, resumed = straight_and_resumed(tmp_path, args)
    assert json.loads((straight / "config.json").read_text())["model"]["low_precision_update"] == "kahan"
    state = torch.load(sorted((straight / "checkpoints").iterdir())[-1] / "state.pt", weights_only=False)
    for optimizer in (state["optimizer"], state["critic"]["optimizer"]):  # the policy's and the value model's
        kinds = {k: v.dtype for s in optimizer["state"].values() for k, v in s.items() if k != "step"}
        assert kinds == {"exp_avg": torch.float32, "exp_avg_sq": torch.float32, "compensation": torch.bfloat16}
        assert {g["update"] for g in optimizer["param_groups"]} == {"kahan"}
    assert_trained_in_bf16(straight, Path(tiny_model_dir))
    assert_bit_equal(final_weights(straight), final_weights(resumed))
    assert metric(straight, "reward/mean") == metric(resumed, "reward/mean")


def test_sft_bf16_kahan_under_fsdp_resumes_exactly(tiny_model_dir, tmp_path):
    """2 ranks, FSDP2: each rank steps its shards (DTensor parameters, fp32 DTensor moments and compensation) and
    writes them with torch.distributed.checkpoint; the resume reads them back bit for bit."""
    args = sft_args(tmp_path, tiny_model_dir, ["train.parallel=fsdp", "model.low_precision_update=kahan"])
    straight, resumed = straight_and_resumed(tmp_path, args, ranks=2)
    assert (straight / "checkpoints" / "step_4" / "dcp" / ".metadata").is_file()
    assert json.loads((straight / "config.json").read_text())["model"]["low_precision_update"] == "kahan"
    assert_trained_in_bf16(straight, Path(tiny_model_dir))
    assert_bit_equal(final_weights(straight), final_weights(resumed))
