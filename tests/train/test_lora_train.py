"""LoRA runs through the real CLI on a tiny model: `r1lab grpo/sft --set lora.rank=8` trains only the adapter (every
base weight bit-identical), resumes exactly after a kill, and writes final/ (merged, plain transformers) plus
final/adapter (PEFT)."""

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

pytest.importorskip("peft")

TESTS = Path(__file__).parents[1]
GRPO_RUN = [
    "task.params={min_terms: 2, max_terms: 2, min_digits: 1, max_digits: 1, operators: ['+'], "
    "allow_parentheses: false, allow_negation: false}",
    "task.train_size=200", "task.eval_size=4", "train.prompts_per_step=2", "rollout.group_size=4",
    "rollout.max_new_tokens=8", "eval.max_new_tokens=8", "train.micro_batch_size=3", "train.lr=1e-2",
    "log.progress=false", "log.tensorboard=false", "train.threads=1", "rewards.weights={accuracy: 1.0, tag_count: 1.0}",
    "algo.beta=0.04", "lora.rank=8", "train.steps=4", "eval.every=2", "log.checkpoint_every=1",
    # pinned: the engine-vs-trainer check below needs the same precision on both sides on every CPU (AMX's auto is bf16)
    "model.rollout_dtype=float32", "model.autocast=none",
]


def r1lab(*args: str, kill_after: int = 0) -> subprocess.CompletedProcess:
    """`r1lab ARGS`; with ``kill_after``, SIGKILLed right after the checkpoint of that step."""
    head = [str(TESTS / "kill_after_checkpoint.py"), str(kill_after)] if kill_after else ["-m", "r1lab.cli"]
    return subprocess.run([sys.executable, *head, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def check_final(run: Path, base_dir: Path) -> None:
    """final/: a plain HF model (transformers, no PEFT) whose non-adapted weights are the base's, bit for bit, and
    an adapter folder PEFT loads onto the base that computes the merged model's logits."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert (run / "final" / "config.json").is_file() and (run / "final" / "adapter" / "adapter_config.json").is_file()
    base_weights = load_file(base_dir / "model.safetensors")
    final_weights = load_file(run / "final" / "model.safetensors")
    assert final_weights.keys() == base_weights.keys()  # no PEFT names in the merged model
    adapted = [k for k in base_weights if k.endswith("_proj.weight")]
    for k in base_weights:
        if k not in adapted:
            assert torch.equal(final_weights[k], base_weights[k]), k  # embeddings and norms never moved
    assert any(not torch.equal(final_weights[k], base_weights[k]) for k in adapted)  # the adapter learned
    merged = AutoModelForCausalLM.from_pretrained(run / "final", dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
                                           run / "final" / "adapter")
    ids = torch.arange(5, 17).view(2, 6)
    with torch.no_grad():
        a, b = merged(input_ids=ids).logits, peft_model(input_ids=ids).logits
    assert (a - b).abs().max() <= 100 * torch.finfo(torch.float32).eps * b.abs().max()


def checkpoint_holds_the_adapter_only(run: Path) -> None:
    step = sorted((run / "checkpoints").iterdir())[-1]
    names = load_file(step / "model.safetensors").keys()
    assert names and all(".lora_A." in k or ".lora_B." in k for k in names)


def assert_same_adapter(a: Path, b: Path) -> None:
    x, y = load_file(a / "final" / "adapter" / "adapter_model.safetensors"), \
        load_file(b / "final" / "adapter" / "adapter_model.safetensors")
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_grpo_lora_trains_the_adapter_resumes_exactly_and_saves_both(tiny_model_dir, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = GRPO_RUN + [f"model.name={tiny_model_dir}"]
    proc = r1lab("grpo", "configs/zero_cpu.yaml", *sets(common + [f"log.output_dir={straight}"]))
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["step"] > 0]
    assert all(r["time/weight_sync_s"] > 0 for r in steps)
    assert steps[0]["loss/kl"] == 0.0 and steps[-1]["loss/kl"] > 0  # reference = adapter off: KL grows from 0
    # the engine's merged copy scores its samples as the trainer's adapter forward does (float32 rounding)
    assert all(abs(r["rollout/abs_log_ratio"]) < 1e-4 for r in steps)
    check_final(straight, Path(tiny_model_dir))
    checkpoint_holds_the_adapter_only(straight)

    killed = r1lab("grpo", "configs/zero_cpu.yaml", *sets(common + [f"log.output_dir={resumed}"]), kill_after=2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    proc = r1lab("grpo", "configs/zero_cpu.yaml", "--resume", *sets(common + [f"log.output_dir={resumed}"]))
    assert proc.returncode == 0 and "resumed from" in proc.stdout, proc.stderr
    assert_same_adapter(straight, resumed)
    rewards = lambda run: [json.loads(l).get("reward/mean") for l in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert rewards(straight) == rewards(resumed)

    # lora.init_from continues from a saved adapter: its first rollout already generates with it
    more = tmp_path / "more"
    proc = r1lab("grpo", "configs/zero_cpu.yaml", *sets(common + [f"log.output_dir={more}", "train.steps=1",
                                                                  f"lora.init_from={straight / 'final' / 'adapter'}"]))
    assert proc.returncode == 0, proc.stderr
    first = json.loads((more / "metrics.jsonl").read_text().splitlines()[0])
    last = [json.loads(l) for l in (straight / "metrics.jsonl").read_text().splitlines()][-1]
    assert first["eval/greedy_accuracy"] == last["eval/greedy_accuracy"]  # same weights, same greedy answers


def test_sft_lora_trains_the_adapter_resumes_exactly_and_saves_both(tiny_model_dir, tmp_path):
    data = tmp_path / "traces.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{a}+{b}=", "completion": f"<answer>{a + b}</answer>"}) + "\n"
                            for a in range(5) for b in range(4)))
    common = [f"model.name={tiny_model_dir}", "model.device=cpu", f"data.train_path={data}", "data.eval_size=3",
              "data.max_length=96", "prompt.system=", "prompt.instruction=", "train.batch_size=6",
              "train.micro_batch_size=2", "train.lr=3e-3", "train.threads=1", "train.steps=4", "eval.every=2",
              "eval.max_new_tokens=6", "log.progress=false", "log.checkpoint_every=1", "log.samples_per_step=2",
              "log.tensorboard=false", "lora.rank=8"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    proc = r1lab("sft", *sets(common + [f"log.output_dir={straight}"]))
    assert proc.returncode == 0, proc.stderr
    check_final(straight, Path(tiny_model_dir))
    checkpoint_holds_the_adapter_only(straight)
    killed = r1lab("sft", *sets(common + [f"log.output_dir={resumed}"]), kill_after=2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    proc = r1lab("sft", "--resume", *sets(common + [f"log.output_dir={resumed}"]))
    assert proc.returncode == 0 and "resumed from" in proc.stdout, proc.stderr
    assert_same_adapter(straight, resumed)
    losses = lambda run: [json.loads(l).get("loss/train") for l in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert losses(straight) == losses(resumed)
