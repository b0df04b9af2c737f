"""r1lab.train.reward_model (`r1lab rm`): the model built from a causal LM, last-token pooling, gradient
accumulation, exact resume, the run folder, and the round trip into the `reward_model` reward of GRPO."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from r1lab.config import GRPOConfig, load_config
from r1lab.train.rm_config import RMConfig
from r1lab.data.preferences import PreferencePair
from r1lab.train.reward_model import (
    accumulate_gradients,
    build_reward_model,
    encode_pairs,
    head_features,
    pair_scores,
    scorer,
    train_reward_model,
)


@pytest.fixture(scope="module")
def prefs(tmp_path_factory):
    """12 prompts with short, trivially separable pairs (chosen always says 'yes'), 2 categories."""
    path = tmp_path_factory.mktemp("prefs") / "prefs.jsonl"
    rows = [{"prompt": f"q{i}?", "chosen": f"yes {i}", "rejected": f"no {i}", "category": "ab"[i % 2]}
            for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rm_config(model_dir, prefs, out, *more) -> RMConfig:
    return load_config(RMConfig, overrides=[
        f"model.name={model_dir}", "model.device=cpu", f"data.path={prefs}", "data.eval_fraction=0.25",
        f"log.output_dir={out}", "log.progress=false", "log.tensorboard=false", "train.steps=4",
        "train.pairs_per_step=4", "train.micro_batch_size=3", "train.lr=3e-3", "train.warmup_steps=0",
        "eval.every=2", "eval.batch_size=2", "log.checkpoint_every=2", *more])


@pytest.fixture(scope="module")
def run(tiny_model_dir, prefs, tmp_path_factory):
    out = tmp_path_factory.mktemp("rm") / "run"
    cfg = rm_config(tiny_model_dir, prefs, out)
    return cfg, train_reward_model(cfg)


def test_built_from_causal_lm_backbone_with_fresh_head(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model, tok = build_reward_model(str(tiny_model_dir))
    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lm_state = lm.state_dict()
    for name, tensor in model.state_dict().items():
        if name.startswith("score."):
            continue
        torch.testing.assert_close(tensor, lm_state[name], rtol=0, atol=0)  # every backbone weight copied
    assert model.score.weight.shape == (1, lm.config.hidden_size)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id
    assert tok.padding_side == "right"


def test_scores_pool_the_last_real_token_whatever_the_padding(tiny_model_dir):
    torch.manual_seed(0)
    model, tok = build_reward_model(str(tiny_model_dir))
    model.eval()
    pairs = [PreferencePair("a", "hi", "hello there, friend", "go"), PreferencePair("b", "2+2?", "4", "it is 5, I think")]
    _, encoded = encode_pairs(tok, pairs, max_length=200)
    # The chat template ends every text in "\n", not the pad token (<|im_end|> here), so the head reads that "\n".
    assert all(e["input_ids"][-1] == tok.convert_tokens_to_ids("\n") for pair in encoded for e in pair)
    with torch.no_grad():
        chosen, rejected = pair_scores(model, tok, encoded)  # one padded batch of 4 sequences
        oracle = []
        for enc in [encoded[0][0], encoded[1][0], encoded[0][1], encoded[1][1]]:
            ids = torch.tensor([enc["input_ids"]])
            hidden = model.model(input_ids=ids).last_hidden_state[0, -1]  # unpadded, last position
            oracle.append(float(model.score(hidden)[0]))
    torch.testing.assert_close(torch.cat([chosen, rejected]), torch.tensor(oracle), rtol=0, atol=1e-5)


def test_long_pairs_are_dropped_not_truncated(tiny_model_dir):
    _, tok = build_reward_model(str(tiny_model_dir))
    pairs = [PreferencePair("a", "q", "short", "x"), PreferencePair("b", "q", "y" * 100, "x")]
    kept, encoded = encode_pairs(tok, pairs, max_length=60)  # the template alone is ~40 characters
    assert [p.id for p in kept] == ["a"] and len(encoded) == 1


def test_run_folder_and_learning(run):
    cfg, result = run
    files = {p.name for p in result.run_dir.iterdir()}
    assert {"config.json", "metrics.jsonl", "training.png", "results.json", "final", "checkpoints", "eval"} <= files
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2, 3, 4]
    assert [r["step"] for r in records if "eval/accuracy" in r] == [0, 2, 4]  # before, every 2, last
    assert {"eval/accuracy/a", "eval/accuracy/b", "train/loss", "lr", "train/grad_norm"} <= set(records[-1])
    assert result.steps_done == 4 and result.eval_before["step"] == 0 and result.eval_after["step"] == 4
    # 12 prompts, 3 held out (round(0.25 * 12)), one pair each.
    summary = json.loads((result.run_dir / "results.json").read_text())
    assert (summary["train_pairs"], summary["eval_pairs"], summary["dropped_pairs"]) == (9, 3, 0)
    # Separable pairs at lr 3e-3: four steps lower the held-out loss and rank every held-out pair right.
    assert result.eval_after["eval/loss"] < result.eval_before["eval/loss"]
    assert result.eval_after["eval/accuracy"] == 1.0


@pytest.fixture(scope="module")
def probe_run(tiny_model_dir, prefs, tmp_path_factory):
    """Only the head trains (freeze_layers=-1), on features computed once."""
    out = tmp_path_factory.mktemp("rm") / "probe"
    cfg = rm_config(tiny_model_dir, prefs, out, "train.freeze_layers=-1", "train.lr=0.05")
    return cfg, train_reward_model(cfg)


def test_head_features_give_the_full_models_scores(tiny_model_dir, prefs):
    from r1lab.data.preferences import read_preferences

    torch.manual_seed(0)
    model, tok = build_reward_model(str(tiny_model_dir))
    model.eval()
    _, encoded = encode_pairs(tok, read_preferences(prefs), max_length=200)
    feats = head_features(model, tok, encoded, batch_size=5)  # sorted by length, batched differently
    with torch.no_grad():
        want = pair_scores(model, tok, encoded)
        got = scorer(model, tok, cached=True)(feats)
    assert isinstance(model.score, torch.nn.Linear)  # the head is put back
    torch.testing.assert_close(torch.stack(got), torch.stack(want), rtol=0, atol=1e-5)


@pytest.mark.parametrize("which", ["run", "probe_run"])
def test_round_trip_into_the_grpo_reward(which, request):
    """The final folder, loaded by the `reward_model` reward as GRPO configures it, gives the trainer's scores."""
    from r1lab.rewards import RewardContext, score_batch
    from r1lab.types import Example

    cfg, result = request.getfixturevalue(which)
    final = result.final_model_dir
    grpo = load_config(GRPOConfig, overrides=["rewards.weights={reward_model: 1.0}",
                                              f"rewards.params={{reward_model: {{model: '{final}'}}}}"])
    records = [json.loads(line) for line in (result.run_dir / "eval" / "step_4.jsonl").read_text().splitlines()]
    assert len(records) == 3
    ctx = RewardContext(task=None, params=grpo.rewards.params)
    examples = [Example(id=r["id"], answer="", prompt=r["prompt"]) for r in records for _ in range(2)]
    texts = [t for r in records for t in (r["chosen"], r["rejected"])]
    results = score_batch(texts, examples, grpo.rewards.weights, ctx)
    assert all(r.valid for r in results)
    got = torch.tensor([r.total for r in results]).view(-1, 2)  # (pairs, [chosen, rejected])
    want = torch.tensor([[r["chosen_score"], r["rejected_score"]] for r in records])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    accuracy = float((got[:, 0] > got[:, 1]).float().mean())
    assert accuracy == result.eval_after["eval/accuracy"] == 1.0


def test_probe_trains_only_the_head(probe_run, tiny_model_dir):
    _, result = probe_run
    after = load_file(result.final_model_dir / "model.safetensors")
    torch.manual_seed(0)
    before = build_reward_model(str(tiny_model_dir))[0].state_dict()
    assert [n for n in after if not torch.equal(after[n], before[n])] == ["score.weight"]


def test_exact_resume(run, tmp_path):
    cfg, result = run
    # Replay the end of the run: keep only the step-2 checkpoint, resume, and compare with the uninterrupted run.
    out = tmp_path / "resumed"
    shutil.copytree(result.run_dir, out)
    shutil.rmtree(out / "final")
    shutil.rmtree(out / "checkpoints" / "step_4")
    resumed = train_reward_model(rm_config(cfg.model.name, cfg.data.path, out), resume=True)
    a = load_file(result.final_model_dir / "model.safetensors")
    b = load_file(resumed.final_model_dir / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    strip = lambda r: {k: v for k, v in r.items() if not k.startswith("time/")}  # noqa: E731
    lines = lambda d: [strip(json.loads(x)) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert lines(out) == lines(result.run_dir)  # steps 3-4 re-logged once, identically
    with pytest.raises(RuntimeError, match="already finished"):
        train_reward_model(rm_config(cfg.model.name, cfg.data.path, out), resume=True)
    with pytest.raises(FileExistsError, match="--resume"):
        train_reward_model(rm_config(cfg.model.name, cfg.data.path, out))


def test_gradient_accumulation_matches_one_big_batch(tiny_model_dir, prefs):
    # 5 pairs in micro-batches of 1, 2 (2 + 2 + 1) or 5: the same gradient and metrics as one batch of 5.
    from r1lab.data.preferences import read_preferences

    torch.manual_seed(0)
    model, tok = build_reward_model(str(tiny_model_dir))
    _, encoded = encode_pairs(tok, read_preferences(prefs)[:5], max_length=200)
    results = []
    for micro in (5, 1, 2):
        model.zero_grad(set_to_none=True)
        metrics = accumulate_gradients(scorer(model, tok, cached=False), encoded, micro, margin=0.5)
        results.append((metrics, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (want_metrics, want_grads), *others = results
    assert want_metrics["loss"] > 0 and any(g.abs().sum() > 0 for g in want_grads.values())
    for metrics, grads in others:
        assert metrics == pytest.approx(want_metrics, rel=1e-5, abs=1e-7)
        for name, grad in grads.items():
            torch.testing.assert_close(grad, want_grads[name], rtol=1e-4, atol=1e-7)


def test_freeze_layers_keeps_the_bottom_fixed(tiny_model_dir, prefs, tmp_path):
    cfg = rm_config(tiny_model_dir, prefs, tmp_path / "frozen", "train.steps=2", "eval.every=0",
                    "train.freeze_layers=1")
    after = load_file(train_reward_model(cfg).final_model_dir / "model.safetensors")
    torch.manual_seed(0)
    before, _ = build_reward_model(str(tiny_model_dir))
    before = before.state_dict()
    for name, tensor in after.items():
        same = torch.equal(tensor, before[name])
        frozen = name.startswith(("model.embed_tokens.", "model.layers.0."))
        assert same == frozen, name  # frozen ones unchanged, every trained one moved
    with pytest.raises(ValueError, match="only 2 layers"):
        train_reward_model(rm_config(tiny_model_dir, prefs, tmp_path / "bad", "train.freeze_layers=3"))


def test_cli(tiny_model_dir, prefs, tmp_path, capsys):
    from r1lab.cli import main

    with pytest.raises(SystemExit):
        main(["rm", "--help"])
    help_text = capsys.readouterr().out
    assert "data.path" in help_text and "train.margin" in help_text and "--resume" in help_text
    out = tmp_path / "cli"
    config = tmp_path / "rm.yaml"
    config.write_text(f"model: {{name: '{tiny_model_dir}', device: cpu}}\ndata: {{path: '{prefs}', "
                      f"eval_fraction: 0.25}}\ntrain: {{steps: 2, pairs_per_step: 2, lr: 3.0e-3}}\n"
                      f"log: {{progress: false, tensorboard: false}}\n")
    assert main(["rm", str(config), "--set", f"log.output_dir={out}"]) == 0
    printed = capsys.readouterr().out
    assert "held-out pairwise accuracy:" in printed and f"model: '{out / 'final'}'" in printed
    assert main(["rm", str(config), "--set", "train.lr=-1"]) == 2  # validation: config error, exit code 2
    assert "train.lr" in capsys.readouterr().err


def test_lora_reward_model_trains_adapter_and_head_resumes_exactly(tiny_model_dir, prefs, tmp_path):
    """lora.rank > 0: the backbone's adapters and the score head train (modules_to_save), the backbone stays
    bit-identical, a resume from the step-2 checkpoint ends with the same adapter, final/ is a plain merged model."""
    pytest.importorskip("peft")
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "run"
    result = train_reward_model(rm_config(tiny_model_dir, prefs, out, "lora.rank=4"))
    ckpt = load_file(out / "checkpoints" / "step_4" / "model.safetensors")
    assert ckpt and all(".lora_" in k or ".score." in k for k in ckpt)
    merged = load_file(result.final_model_dir / "model.safetensors")
    base = load_file(tiny_model_dir / "model.safetensors")
    for k in merged:
        if not k.endswith("_proj.weight") and not k.startswith("score.") and k in base:
            assert torch.equal(merged[k], base[k]), k
    model = AutoModelForSequenceClassification.from_pretrained(result.final_model_dir)  # no PEFT needed
    assert model.config.num_labels == 1 and (result.final_model_dir / "adapter" / "adapter_config.json").is_file()

    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    shutil.rmtree(resumed / "final")
    shutil.rmtree(resumed / "checkpoints" / "step_4")
    again = train_reward_model(rm_config(tiny_model_dir, prefs, resumed, "lora.rank=4"), resume=True)
    a = load_file(result.final_model_dir / "adapter" / "adapter_model.safetensors")
    b = load_file(again.final_model_dir / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
