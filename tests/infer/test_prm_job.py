"""``r1lab prm``: the job labels by Monte-Carlo rollouts, trains, and measures held-out step agreement; the CLI
writes every promised file."""

from __future__ import annotations

import json

import pytest

from r1lab.cli import main
from r1lab.config import load_config
from r1lab.infer.prm_job import PRMJobConfig, run_prm_job, step_agreement


def solver(prompt: str, i: int) -> str:
    """Solutions 'step a / step b / 5' (right) and 'step c / 9' (wrong) to 'q A:'; rollouts from step prefixes."""
    if prompt.endswith("A:"):
        return ["step a\nstep b\n5", "step c\n9"][i]
    if prompt.endswith("step a\nstep b\n"):
        return "5"
    if prompt.endswith("step a\n"):
        return ["so 5", "so 4"][i]
    if prompt.endswith("step c\n"):
        return ["7", "8"][i]
    raise AssertionError(prompt)


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "answer": "5"}) + "\n" for i in range(3)))
    return path


def test_job_labels_trains_and_measures(task_file, tiny_model_dir, tmp_path, scripted_ctx):
    ctx, engine = scripted_ctx(solver)
    cfg = load_config(PRMJobConfig, overrides=[
        f"model.name={tiny_model_dir}", f"task.name={task_file}", "task.eval_size=1", "prompt.template=plain",
        "prompt.instruction='A:'", "mc.train_problems=2", "mc.heldout_problems=1", "mc.solutions=2", "mc.rollouts=2",
        "train.epochs=2", f"log.output_dir={tmp_path / 'run'}", "log.tensorboard=false"])
    summary = run_prm_job(cfg, generator=ctx.generator, tokenizer=engine.tokenizer)
    labels = [json.loads(line) for line in (tmp_path / "run" / "labels.jsonl").read_text().splitlines()]
    # per problem: step a 1/2 rollouts right, step b 2/2, "5" right; step c 0/2, "9" wrong (Math-Shepherd, soft)
    assert [r["labels"] for r in labels] == [[0.5, 1.0, 1.0], [0.0, 0.0]] * 2
    assert summary["train_solutions"] == 4 and summary["train_steps_labelled"] == 10
    assert summary["train_label_mean"] == pytest.approx((2.5 * 2) / 10)
    assert summary["train_solution_accuracy"] == 0.5
    assert summary["heldout/steps"] == 5.0  # the held-out problem's two solutions, 3 + 2 steps
    assert 0.0 <= summary["heldout/step_accuracy"] <= 1.0
    for name in ("config.json", "heldout_labels.jsonl", "metrics.jsonl", "prm_training.png", "summary.json",
                 "final/r1lab_prm.json"):
        assert (tmp_path / "run" / name).is_file(), name
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "train/loss" in r] == [1, 2]  # 4 solutions, batch 8, 2 epochs
    with pytest.raises(FileExistsError, match="already holds a trained PRM"):
        run_prm_job(cfg, generator=ctx.generator, tokenizer=engine.tokenizer)


class FixedPRM:
    def score_steps(self, questions, steps):
        return [[0.9, 0.2][: len(s)] for s in steps]


def test_step_agreement_by_hand():
    records = [{"question": "q", "steps": ["a", "b"], "labels": [1.0, 1.0]},
               {"question": "q", "steps": ["c"], "labels": [0.0]}]
    # scores 0.9, 0.2 | 0.9 against labels 1, 1 | 0: right, wrong, wrong -> 1/3; |errors| 0.1, 0.8, 0.9
    got = step_agreement(FixedPRM(), records)
    assert got["heldout/step_accuracy"] == pytest.approx(1 / 3)
    assert got["heldout/step_mae"] == pytest.approx(1.8 / 3)


def test_cli_runs_on_a_tiny_model(tiny_model_dir, tmp_path, task_file, capsys):
    code = main(["prm", "--set", f"model.name={tiny_model_dir}", "--set", f"task.name={task_file}",
                 "--set", "task.eval_size=1", "--set", "prompt.template=plain", "--set", "model.dtype=float32",
                 "--set", "mc.train_problems=2", "--set", "mc.heldout_problems=1", "--set", "mc.solutions=2",
                 "--set", "mc.rollouts=1", "--set", "mc.max_new_tokens=8", "--set", "train.epochs=1",
                 "--set", f"log.output_dir={tmp_path / 'cli'}"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "held-out step agreement" in out
    assert (tmp_path / "cli" / "final" / "r1lab_prm.json").is_file()


def test_bad_config_names_the_key(capsys):
    assert main(["prm", "--set", "mc.mode=sometimes"]) == 2
    assert "mc.mode" in capsys.readouterr().err
