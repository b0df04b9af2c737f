"""`r1lab sft`: packed == unpacked (loss and gradients), an end-to-end run, distillation, exact resume after a kill."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from r1lab.config import SFTConfig, load_config
from r1lab.data.sft_data import SFTRow, micro_batches, render_row
from r1lab.models.tiny import save_tiny_model, tiny_model, tiny_tokenizer
from r1lab.train.sft import batch_loss_sums, check_model_forward, load_teacher, train_sft


def loss_and_grads(cfg, model, teacher, examples, pack: bool, rows_per_batch: int, shift_positions: bool = False):
    """The step loss (mean over trained tokens) and its gradient, accumulated over micro-batches as the trainer does."""
    batches = micro_batches(examples, pack, 40, rows_per_batch, pad_id=0)
    if shift_positions:  # negative control: positions that do not restart let packed examples see each other
        for b in batches:
            b.position_ids = torch.arange(b.position_ids.shape[1]).expand_as(b.position_ids).clone()
    n = sum(b.num_targets for b in batches)
    model.zero_grad(set_to_none=True)
    total = 0.0
    for b in batches:
        loss, _, _ = batch_loss_sums(cfg, model, teacher, b, torch.device("cpu"))
        (loss / n).backward()
        total += float(loss.detach()) / n
    return total, {k: p.grad.clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("with_teacher", [False, True], ids=["ce", "distill"])
def test_packed_loss_and_gradients_equal_unpacked(attn, with_teacher):
    tok = tiny_tokenizer()
    model = tiny_model(tok, seed=0)
    model.set_attn_implementation(attn)
    teacher = tiny_model(tok, seed=1).requires_grad_(False) if with_teacher else None
    cfg = SFTConfig()
    cfg.model.autocast = "none"
    cfg.distill.alpha, cfg.distill.temperature, cfg.distill.chunk_tokens = 0.5, 2.0, 7
    rng = random.Random(0)
    rows = [SFTRow(f"f:{i}", str(i), prompt=f"{rng.randint(0, 99)}+{rng.randint(0, 99)}",
                   completion="x" * rng.randint(1, 12)) for i in range(7)]
    examples = [render_row(r, tok, "plain", "", "") for r in rows]  # 5..18 tokens each
    check_model_forward(model, pack=True)
    unpacked, g_unpacked = loss_and_grads(cfg, model, teacher, examples, pack=False, rows_per_batch=3)
    packed, g_packed = loss_and_grads(cfg, model, teacher, examples, pack=True, rows_per_batch=1)
    assert micro_batches(examples, True, 40, 8, 0)[0].input_ids.shape[0] < len(examples)  # packing did pack
    assert packed == pytest.approx(unpacked, rel=1e-5)
    for name, grad in g_unpacked.items():
        torch.testing.assert_close(g_packed[name], grad, atol=1e-6, rtol=1e-4, msg=name)
    crossed, _ = loss_and_grads(cfg, model, teacher, examples, pack=True, rows_per_batch=1, shift_positions=True)
    assert abs(crossed - unpacked) > 1e-3  # the comparison is sensitive to examples seeing each other


@pytest.mark.parametrize("pack", [False, True], ids=["rows", "packed"])
def test_gradient_checkpointing_keeps_loss_and_gradients(pack):
    from r1lab.models.checkpointing import enable_activation_checkpointing

    tok = tiny_tokenizer()
    plain, replayed = tiny_model(tok, seed=5).train(), tiny_model(tok, seed=5).train()
    enable_activation_checkpointing(replayed)
    cfg = SFTConfig()
    cfg.model.autocast = "none"
    rows = [SFTRow(f"f:{i}", str(i), prompt=f"{i}+{i * 7}", completion="y" * (3 + i)) for i in range(5)]
    examples = [render_row(r, tok, "plain", "", "") for r in rows]
    loss_plain, grads_plain = loss_and_grads(cfg, plain, None, examples, pack=pack, rows_per_batch=2)
    loss_replayed, grads_replayed = loss_and_grads(cfg, replayed, None, examples, pack=pack, rows_per_batch=2)
    assert loss_replayed == pytest.approx(loss_plain, rel=1e-6)
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_replayed[name], grad, atol=1e-7, rtol=1e-5, msg=name)


def test_model_check_refuses_attention_across_examples_and_foreign_logits():
    tok = tiny_tokenizer()
    model = tiny_model(tok)
    check_model_forward(model, pack=True)
    # With a cache, transformers 5 builds no block mask from position_ids: packed examples would see each other.
    forward = model.model.forward
    model.model.forward = lambda *a, **k: forward(*a, **{**k, "use_cache": True})
    with pytest.raises(ValueError, match="lets packed examples attend to each other; set data.pack=false"):
        check_model_forward(model, pack=True)
    check_model_forward(model, pack=False)  # unpacked rows need no block mask
    # Logits that are not lm_head(hidden) (e.g. soft-capping) would be silently ignored by the chunked loss.
    model = tiny_model(tok)
    full = model.forward
    model.forward = lambda *a, **k: type(out := full(*a, **k))(logits=out.logits * 2)
    with pytest.raises(ValueError, match="does not give the model's logits"):
        check_model_forward(model, pack=False)


def test_teacher_with_another_vocabulary_is_refused(tmp_path, tiny_model_dir):
    tok = tiny_tokenizer()
    tok.add_tokens(["<extra>"])
    model = tiny_model(tok)
    model.save_pretrained(tmp_path / "teacher")
    tok.save_pretrained(tmp_path / "teacher")
    cfg = load_config(SFTConfig, None, ["data.train_path=x.jsonl", f"distill.teacher={tmp_path / 'teacher'}"])
    student_tok = tiny_tokenizer()
    with pytest.raises(ValueError, match="does not share the student's tokenizer"):
        load_teacher(cfg, tiny_model(student_tok), student_tok, torch.device("cpu"))


def problems(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = {}
    while len(out) < n:
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        out[f"What is {a} + {b}?"] = str(a + b)
    return list(out.items())


@pytest.fixture(scope="module")
def sft_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft-data")
    items = problems(30, seed=0)
    # two teacher samples per prompt, as r1lab generate writes them
    traces = [{"id": f"p{i}", "prompt": q, "completion": f"<answer>{a}</answer>", "answer": a, "sample": k,
               "teacher": "program:add"} for i, (q, a) in enumerate(items) for k in range(2)]
    (root / "traces.jsonl").write_text("".join(json.dumps(t) + "\n" for t in traces))
    # the accuracy task: 4 of its held-out problems also appear in the traces and must be dropped from training
    task_rows = [{"prompt": q, "answer": a} for q, a in items[:12]]
    (root / "task.jsonl").write_text("".join(json.dumps(t) + "\n" for t in task_rows))
    return root


def tiny_sets(model_dir, files: Path, out: Path) -> list[str]:
    return [f"model.name={model_dir}", "model.device=cpu", f"data.train_path={files / 'traces.jsonl'}",
            "data.eval_size=3", "data.max_length=96", "prompt.system=", "prompt.instruction=", "train.batch_size=6", "train.micro_batch_size=2",
            "train.lr=3e-3", "train.threads=1", "train.schedule=linear", "eval.every=2", "eval.accuracy=true",
            "eval.max_new_tokens=6", f"task.name={files / 'task.jsonl'}", "task.eval_size=4", "task.params={}",
            "log.progress=false", "log.checkpoint_every=1", "log.samples_per_step=2", f"log.output_dir={out}"]


def test_sft_end_to_end_with_distillation(tiny_model_dir, sft_files, tmp_path):
    teacher = tmp_path / "teacher"
    save_tiny_model(teacher, seed=3)
    run = tmp_path / "run"
    cfg = load_config(SFTConfig, None, tiny_sets(tiny_model_dir, sft_files, run) + [
        "train.steps=6", f"distill.teacher={teacher}", "distill.alpha=0.5", "log.tensorboard=true"])
    result = train_sft(cfg)
    assert result.steps_done == 6
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2, 3, 4, 5, 6]
    for key in ("loss/train", "loss/ce", "loss/kl", "train/grad_norm", "train/tokens", "train/pack_efficiency", "lr"):
        assert records[-1][key] is not None, key
    for key in ("eval/loss", "eval/distill_loss", "eval/greedy_accuracy", "eval/format_rate"):
        assert key in records[0] and key in records[-1], key
    # linear decay from 3e-3 to 0.1 x 3e-3 over 6 steps; each step logs the rate it used: step 6 at 1 - 5/6 of the way
    assert records[1]["lr"] == pytest.approx(3e-3) and records[-1]["lr"] == pytest.approx(3e-3 * (0.1 + 0.9 / 6))
    assert records[-1]["loss/train"] == pytest.approx(0.5 * records[-1]["loss/ce"] + 0.5 * records[-1]["loss/kl"], rel=1e-4)
    assert records[-1]["eval/loss"] < records[0]["eval/loss"]  # it learned the held-out traces' format
    stats = json.loads((run / "data.json").read_text())
    # 30 prompts x 2 samples: 3 prompts held out (6 rows); of the task's 4 held-out problems, those among the
    # remaining training prompts are dropped with both their samples
    assert stats["held_out_examples"] == 6 and stats["held_out_prompts"] == 3
    assert stats["train_examples"] + stats["dropped_overlap"] == 54 and stats["dropped_overlap"] % 2 == 0
    assert stats["dropped_overlap"] > 0
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {0, 2, 4, 6} and {"prompt", "completion", "reference"} <= set(samples[0])
    assert (run / "training.png").stat().st_size > 1000 and list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((run / "config.json").read_text())["distill"]["teacher"] == str(teacher)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(run / "final")


def test_time_limit_stops_saves_and_reports(tiny_model_dir, sft_files, tmp_path):
    run = tmp_path / "run"
    cfg = load_config(SFTConfig, None, tiny_sets(tiny_model_dir, sft_files, run) + [
        "train.steps=50", "train.time_limit_minutes=1e-9", "eval.every=0", "log.tensorboard=false"])
    result = train_sft(cfg)
    assert result.steps_done == 1  # any step takes longer than the limit
    assert (run / "final" / "model.safetensors").is_file() and (run / "checkpoints" / "step_1").is_dir()
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1]


def r1lab(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "r1lab.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def r1lab_killed_after_checkpoint(step: int, *args: str) -> subprocess.CompletedProcess:
    """`r1lab ARGS`, SIGKILLed right after writing the checkpoint of ``step`` (tests/kill_after_checkpoint.py)."""
    killer = Path(__file__).parents[1] / "kill_after_checkpoint.py"
    return subprocess.run([sys.executable, str(killer), str(step), *args], capture_output=True, text=True,
                          timeout=300)


def test_kill_and_resume_matches_straight_run(tiny_model_dir, sft_files, tmp_path, capsys):
    """4 steps straight == the CLI SIGKILLed before step 3 (after step 2's checkpoint), then --resume (bit-identical
    weights and logs)."""
    from r1lab.cli import main

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = ["train.steps=4", "log.tensorboard=false", "model.autocast=bfloat16", "eval.accuracy=false"]
    train_sft(load_config(SFTConfig, None, tiny_sets(tiny_model_dir, sft_files, straight) + common))
    args = ["sft", "--data", str(sft_files / "traces.jsonl"), *sets(tiny_sets(tiny_model_dir, sft_files, resumed) + common)]
    killed = r1lab_killed_after_checkpoint(2, *args)  # a real process, really killed
    assert killed.returncode == -signal.SIGKILL and not (resumed / "final").exists(), killed.stderr
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "step 2" in out and "held-out loss:" in out
    a, b = load_file(straight / "final" / "model.safetensors"), load_file(resumed / "final" / "model.safetensors")
    initial = load_file(Path(tiny_model_dir) / "model.safetensors")
    assert any(not torch.equal(a[k], initial[k]) for k in a)  # training changed the weights
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log = lambda run: [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert [r["step"] for r in log(resumed)] == [0, 1, 2, 3, 4]
    assert [r.get("loss/train") for r in log(resumed)] == [r.get("loss/train") for r in log(straight)]
    assert [r.get("eval/loss") for r in log(resumed)] == [r.get("eval/loss") for r in log(straight)]
    assert main([*args, "--resume"]) == 1 and "already finished" in capsys.readouterr().err
    assert main(args) == 1 and "--resume" in capsys.readouterr().err  # no silent mixing of two runs


def test_cli_help_and_bad_row(tmp_path, capsys):
    from r1lab.cli import main

    help_text = r1lab("sft", "--help").stdout
    for key in ("data.train_path", "data.pack", "distill.temperature", "distill.alpha", "train.micro_batch_size",
                "eval.accuracy", "--resume", "--data"):
        assert key in help_text, key
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "1+1", "completion": "2"}) + "\n" + json.dumps({"prompt": "2+2"}) + "\n")
    assert main(["sft", "--data", str(bad), "--set", f"log.output_dir={tmp_path / 'run'}"]) == 1
    assert f"{bad}:2: missing field 'completion'" in capsys.readouterr().err  # before any model is loaded
    assert main(["sft", "--set", "train.lr=-1", "--data", str(bad)]) == 2  # config error


@pytest.mark.parametrize(
    "overrides, message",
    [
        ([], "config key 'data.train_path': is required"),  # no data given
        (["data.train_path=x.jsonl", "distill.alpha=1.5"], "config key 'distill.alpha': must be in [0, 1]"),
        (["data.train_path=x.jsonl", "distill.temperature=0"], "config key 'distill.temperature': must be > 0"),
        (["data.train_path=x.jsonl", "train.batch_size=0"], "config key 'train.batch_size': must be >= 1"),
        (["data.train_path=x.jsonl", "eval.extraction=[nope]"], "config key 'eval.extraction': unknown method 'nope'"),
        (["data.train_path=x.jsonl", "data.packing=true"], "Did you mean 'data.pack'?"),
    ],
)
def test_config_errors_name_the_key(overrides, message):
    from r1lab.config import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config(SFTConfig, None, overrides)
    assert message in str(err.value)
