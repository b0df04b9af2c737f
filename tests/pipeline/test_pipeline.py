"""`r1lab pipeline` end to end on a tiny model: generate -> filter -> sft -> grpo, with state, lineage, summary,
skipping finished stages, resuming a killed training stage from its checkpoint, and --rerun."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from r1lab.config import ConfigError
from r1lab.pipeline import PipelineError, parse_pipeline, run_pipeline
from r1lab.pipeline import stages as stage_jobs

ARITH = {"task.params": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"],
                         "allow_parentheses": False, "allow_negation": False},
         "task.train_size": 40, "task.eval_size": 4}
QUIET = {"log.progress": False, "log.tensorboard": False}


def pipeline_dict(out: Path, model: Path) -> dict:
    return {
        "output_dir": str(out), "base_model": str(model),
        "eval": {"set": {**ARITH, "sampling.max_new_tokens": 6, "log.progress": False}},
        "stages": [
            {"name": "traces", "kind": "generate",
             "set": {**ARITH, "teacher.name": "program:arithmetic", "teacher.format": "think", "sampling.k": 1,
                     "output.num_prompts": 6, "output.progress": False}},
            {"name": "clean", "kind": "filter", "data": "traces"},
            {"name": "cold", "kind": "sft", "model": "base", "data": "clean",
             "set": {**QUIET, "train.steps": 3, "train.batch_size": 2, "train.micro_batch_size": 2,
                     "data.eval_size": 0, "data.max_length": 160, "eval.every": 0, "log.checkpoint_every": 1,
                     "train.threads": 1}},
            {"name": "rl", "kind": "grpo", "model": "cold",
             "set": {**ARITH, **QUIET, "train.steps": 2, "train.prompts_per_step": 2, "rollout.group_size": 2,
                     "rollout.max_new_tokens": 6, "eval.every": 0, "train.micro_batch_size": 4,
                     "log.checkpoint_every": 1, "train.threads": 1,
                     "rewards.weights": {"accuracy": 1.0, "tag_count": 1.0}}},
        ],
    }


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory):
    """One full run through the CLI (`r1lab pipeline FILE`), copied by the tests that change it."""
    import yaml

    from r1lab.cli import main

    folder = tmp_path_factory.mktemp("pipeline")
    out = folder / "run"
    (folder / "test.yaml").write_text(yaml.safe_dump(pipeline_dict(out, tiny_model_dir)))
    assert main(["pipeline", str(folder / "test.yaml")]) == 0
    return out, json.loads((out / "summary.json").read_text())


def copy_run(finished_run, tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    shutil.copytree(finished_run[0], out)
    # The state records absolute paths; the copy is a fresh run folder whose records point at itself.
    for name in ("pipeline_state.json", "lineage.json"):
        (out / name).write_text((out / name).read_text().replace(str(finished_run[0]), str(out)))
    return out, parse_pipeline(pipeline_dict(out, tiny_model_dir), "test.yaml")


def calls_of(monkeypatch) -> list[str]:
    """Record every stage job and evaluation the runner starts (and still run it)."""
    calls: list[str] = []
    real_job, real_eval = stage_jobs.run_job, stage_jobs.run_eval_job
    monkeypatch.setattr(stage_jobs, "run_job", lambda stage, job, resume: calls.append(stage.name) or
                        real_job(stage, job, resume))
    monkeypatch.setattr(stage_jobs, "run_eval_job", lambda job: calls.append(f"eval:{Path(job.log.output_dir).name}")
                        or real_eval(job))
    return calls


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_end_to_end_writes_state_lineage_and_summary(finished_run):
    out, summary = finished_run
    state = json.loads((out / "pipeline_state.json").read_text())
    assert [state["stages"][n]["status"] for n in ("traces", "clean", "cold", "rl")] == ["done"] * 4
    assert set(state["evals"]) == {"base", "cold", "rl"}  # the base and every model-producing stage
    # 6 prompts x k=1 from the exact program teacher: all correct, all kept
    assert state["stages"]["traces"]["outputs"]["data"]["rows"] == 6
    assert state["stages"]["clean"]["outputs"]["data"]["rows"] == 6
    lineage = json.loads((out / "lineage.json").read_text())
    cold = lineage["stages"]["cold"]
    clean_file = out / "stages" / "clean" / "data.jsonl"
    assert cold["inputs"]["data"][0]["sha256"] == sha256(clean_file)
    from r1lab.evals.generations import model_fingerprint

    assert lineage["stages"]["rl"]["inputs"]["model"]["fingerprint"] == model_fingerprint(out / "stages/cold/final")
    assert lineage["stages"]["rl"]["inputs"]["model"]["stage"] == "cold"
    assert lineage["stages"]["cold"]["config"]["model"]["name"] == str(lineage["base_model"])
    assert lineage["stages"]["rl"]["config"]["train"]["steps"] == 2
    assert lineage["stages"]["rl"]["duration_s"] > 0 and lineage["stages"]["rl"]["finished"]
    # the filter inherited generate's task section (its verifier looks problems up by id)
    assert lineage["stages"]["clean"]["config"]["task"]["train_size"] == 40
    assert cold["eval"]["num_problems"] == 4 and 0.0 <= cold["eval"]["accuracy"] <= 1.0
    # a finished training stage keeps its final model; its checkpoints are deleted (keep_checkpoints: false)
    assert (out / "stages/cold/final/config.json").is_file() and not (out / "stages/cold/checkpoints").exists()
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [r["stage"] for r in rows] == ["base", "traces", "clean", "cold", "rl"]
    assert rows[3]["model"] == "stages/cold/final" and rows[3]["accuracy"] is not None
    assert rows[1]["accuracy"] is None and rows[1]["duration_s"] is not None
    assert "| cold | sft | stages/cold/final |" in (out / "summary.md").read_text()
    assert (out / "summary.png").stat().st_size > 1000
    assert summary["pipeline"].endswith("test.yaml")


def test_cli_help_and_config_error(tmp_path, capsys):
    from r1lab.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["pipeline", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for fragment in ("--rerun STAGE", "--resume", "output_dir:", "reward_model:", "apply_to", "mix ", "journey "):
        assert fragment in text
    bad = tmp_path / "bad.yaml"
    bad.write_text("output_dir: x\nbase_model: m\nstages:\n  - {name: a, kind: sft, data: b}\n")
    assert main(["pipeline", str(bad)]) == 2
    assert "stage 'a', data: 'b' is not an earlier stage" in capsys.readouterr().err


def test_second_run_skips_finished_stages(finished_run, tmp_path, tiny_model_dir, monkeypatch, capsys):
    out, cfg = copy_run(finished_run, tmp_path, tiny_model_dir)
    calls = calls_of(monkeypatch)
    with pytest.raises(PipelineError, match="--resume"):  # without --resume an existing run is not touched
        run_pipeline(cfg, progress=False)
    run_pipeline(cfg, resume=True)
    assert calls == []  # no stage job and no evaluation ran again
    printed = capsys.readouterr().out
    assert printed.count("done earlier, skipped") == 4 and "held-out accuracy" in printed


def test_a_changed_eval_section_re_evaluates_every_model_only(finished_run, tmp_path, tiny_model_dir, monkeypatch):
    out, _ = copy_run(finished_run, tmp_path, tiny_model_dir)
    raw = pipeline_dict(out, tiny_model_dir)
    raw["eval"]["set"]["sampling.max_new_tokens"] = 3
    calls = calls_of(monkeypatch)
    run_pipeline(parse_pipeline(raw), resume=True, progress=False)
    assert calls == ["eval:base", "eval:cold", "eval:rl"]  # every summary row comes from the same evaluation
    state = json.loads((out / "pipeline_state.json").read_text())
    assert state["evals"]["rl"]["mean_length"] <= 3
    assert state["evals"]["rl"]["setting"]["sampling"]["max_new_tokens"] == 3


def test_rerun_invalidates_dependants(finished_run, tmp_path, tiny_model_dir, monkeypatch):
    out, cfg = copy_run(finished_run, tmp_path, tiny_model_dir)
    before = json.loads((out / "pipeline_state.json").read_text())
    calls = calls_of(monkeypatch)
    run_pipeline(cfg, rerun=["cold"], progress=False)
    assert calls == ["cold", "eval:cold", "rl", "eval:rl"]  # traces and clean are kept, base not re-evaluated
    after = json.loads((out / "pipeline_state.json").read_text())
    assert after["stages"]["clean"] == before["stages"]["clean"]
    assert after["stages"]["cold"]["finished"] >= before["stages"]["cold"]["finished"]
    with pytest.raises(PipelineError, match="no such stage"):
        run_pipeline(cfg, rerun=["nope"], progress=False)


def test_changed_config_of_a_finished_stage_asks_for_rerun(finished_run, tmp_path, tiny_model_dir, monkeypatch):
    out, _ = copy_run(finished_run, tmp_path, tiny_model_dir)
    raw = pipeline_dict(out, tiny_model_dir)
    raw["stages"][3]["set"]["train.lr"] = 0.5
    calls = calls_of(monkeypatch)
    with pytest.raises(PipelineError, match=r"stage 'rl' .*train\.lr.*--rerun rl"):
        run_pipeline(parse_pipeline(raw), resume=True, progress=False)
    assert calls == []


def test_changed_input_of_a_finished_stage_asks_for_rerun(finished_run, tmp_path, tiny_model_dir, monkeypatch):
    # A finished stage is skipped only while its inputs are the ones it was made from: a dataset edited by hand
    # (or rewritten by a stage re-run outside the pipeline) makes its consumer's outputs stale.
    out, cfg = copy_run(finished_run, tmp_path, tiny_model_dir)
    clean = out / "stages" / "clean" / "data.jsonl"
    clean.write_text(clean.read_text().splitlines()[0] + "\n")
    calls = calls_of(monkeypatch)
    with pytest.raises(PipelineError, match=r"stage 'cold' finished earlier from inputs that have changed since "
                                            r"\(data .*clean/data\.jsonl: sha256 .*--rerun cold"):
        run_pipeline(cfg, resume=True, progress=False)
    assert calls == []
    # the same for a model folder rewritten in place (its files' sizes or times change)
    out2, cfg2 = copy_run(finished_run, tmp_path / "second", tiny_model_dir)
    config = out2 / "stages" / "cold" / "final" / "config.json"
    config.write_text(config.read_text() + "\n")
    with pytest.raises(PipelineError, match=r"stage 'rl' finished earlier .*model .*cold/final rewritten"):
        run_pipeline(cfg2, resume=True, progress=False)


def test_killed_training_stage_resumes_from_its_checkpoint(tiny_model_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    raw = pipeline_dict(out, tiny_model_dir)
    raw["eval"]["enabled"] = False
    raw["stages"] = raw["stages"][:3]
    cfg = parse_pipeline(raw)

    class Killed(Exception):
        pass

    from r1lab.train import checkpoint

    save = checkpoint.save_checkpoint

    def save_then_die(root, step, *args, **kwargs):  # the SFT stage dies right after step 2's checkpoint
        path = save(root, step, *args, **kwargs)
        if step == 2:
            raise Killed(f"after the checkpoint of step {step}")
        return path

    monkeypatch.setattr(checkpoint, "save_checkpoint", save_then_die)
    with pytest.raises(PipelineError, match="stage 'cold' .*Killed.*--resume"):
        run_pipeline(cfg, progress=False)
    state = json.loads((out / "pipeline_state.json").read_text())
    assert state["stages"]["cold"]["status"] == "failed" and "cold" not in state["evals"]
    assert sorted(p.name for p in (out / "stages/cold/checkpoints").iterdir()) == ["step_1", "step_2"]
    monkeypatch.undo()
    calls = calls_of(monkeypatch)
    capsys.readouterr()
    run_pipeline(cfg, resume=True, progress=True)
    printed = capsys.readouterr().out
    assert calls == ["cold"]  # traces and clean were finished: not run again
    assert "resumed from" in printed and "step 2 of 3" in printed and "resuming from its last checkpoint" in printed
    metrics = [json.loads(line) for line in (out / "stages/cold/metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]  # each step logged once across the kill
    state = json.loads((out / "pipeline_state.json").read_text())
    assert state["stages"]["cold"]["status"] == "done" and state["stages"]["cold"]["attempts"] == 2
    assert state["stages"]["cold"]["resumed"] is True
    assert not (out / "stages/cold/checkpoints").exists()


def test_mix_stage_caps_and_tags_sources(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"id": f"a{i}", "meta": {"x": i}}) + "\n" for i in range(5)))
    b.write_text("".join(json.dumps({"id": f"b{i}"}) + "\n" for i in range(3)))
    cfg = stage_jobs.MixConfig(inputs={"A": str(a), "B": str(b)}, output=str(tmp_path / "m.jsonl"), caps={"A": 2},
                               shuffle=False)
    report = stage_jobs.run_mix(cfg)
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    # cap 2 of A's 5 rows (its first ones), then all 3 of B's, in order when not shuffled
    assert [r["id"] for r in rows] == ["a0", "a1", "b0", "b1", "b2"]
    assert report["per_source"] == {"A": 2, "B": 3}
    assert rows[0]["meta"] == {"x": 0, "mix_source": "A"} and rows[2]["meta"] == {"mix_source": "B"}
    stage_jobs.run_mix(dataclasses.replace(cfg, shuffle=True, seed=1))
    mixed = [json.loads(line)["id"] for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert sorted(mixed) == ["a0", "a1", "b0", "b1", "b2"] and mixed != ["a0", "a1", "b0", "b1", "b2"]


def base_raw(tmp_path) -> dict:
    return {"output_dir": str(tmp_path / "run"), "base_model": "some-model",
            "stages": [{"name": "gen", "kind": "generate"}, {"name": "flt", "kind": "filter", "data": "gen"},
                       {"name": "sft1", "kind": "sft", "data": "flt"}]}


# (edit of the raw pipeline, expected fragments of the error message)
ERRORS = [
    # unknown kind: the allowed kinds are listed
    (lambda r: r["stages"][0].update(kind="distill"),
     ["stage 'gen'", "unknown kind 'distill'", "generate, filter, journey, mix, sft, grpo, rm, eval"]),
    # a reference to a later stage
    (lambda r: r["stages"][1].update(data="sft1"), ["stage 'flt', data", "'sft1' is not an earlier stage"]),
    # a reference to an unknown stage
    (lambda r: r["stages"][2].update(model="warm"), ["stage 'sft1', model", "'warm' is not an earlier stage"]),
    # a model input pointing at a dataset stage
    (lambda r: r["stages"][2].update(model="flt"), ["stage 'sft1', model", "'flt' is a filter stage"]),
    # a typo in a job key, found by the job's own config class at load time
    (lambda r: r["stages"][2].update(set={"train.stpes": 3}),
     ["stage 'sft1' (sft)", "unknown config key 'train.stpes'", "Did you mean 'train.steps'"]),
    # a bad value, checked by the job's validation
    (lambda r: r["stages"][2].update(set={"train.batch_size": 0}), ["stage 'sft1' (sft)", "train.batch_size"]),
    # a key the pipeline wires
    (lambda r: r["stages"][2].update(set={"data.train_path": "x.jsonl"}),
     ["stage 'sft1', set.data.train_path", "set by the pipeline"]),
    # an input the kind does not take
    (lambda r: r["stages"][1].update(model="base"), ["stage 'flt', model", "takes no 'model' input"]),
    # sft without data
    (lambda r: r["stages"][2].pop("data"), ["stage 'sft1', data", "needs 'data'"]),
    # duplicate names
    (lambda r: r["stages"][1].update(name="gen"), ["stage 'gen'", "unique"]),
    # unknown stage key
    (lambda r: r["stages"][0].update(inputs="x"), ["stage 'gen'", "unknown key(s) inputs"]),
    # unknown top-level key
    (lambda r: r.update(stage=[]), ["unknown pipeline key(s) stage"]),
    # the pipeline's eval section is an r1lab eval config too
    (lambda r: r.update(eval={"set": {"sampling.m": 2}}), ["pipeline eval", "unknown config key 'sampling.m'"]),
]


@pytest.mark.parametrize("edit,fragments", ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_config_errors_name_stage_and_key(tmp_path, edit, fragments):
    raw = base_raw(tmp_path)
    parse_pipeline(copy.deepcopy(raw))  # the unedited pipeline is valid
    edit(raw)
    with pytest.raises(ConfigError) as err:
        parse_pipeline(raw)
    for fragment in fragments:
        assert fragment in str(err.value)


SHRINK = {  # kind -> overrides that make configs/r1_cpu.yaml's stages take seconds on the tiny model
    "generate": {"output.num_prompts": 3, "sampling.max_new_tokens": 8, "output.progress": False},
    "sft": {"train.steps": 1, "train.batch_size": 2, "train.micro_batch_size": 2, "data.eval_size": 0,
            "eval.every": 0, "train.time_limit_minutes": 0, "log.progress": False, "train.threads": 1},
    "grpo": {"train.steps": 1, "train.prompts_per_step": 2, "rollout.group_size": 2, "rollout.max_new_tokens": 6,
             "train.micro_batch_size": 4, "train.time_limit_minutes": 0, "log.progress": False, "train.threads": 1},
    "rm": {"train.steps": 2, "eval.every": 0, "train.time_limit_minutes": 0, "log.progress": False},
}
# a random model's text is neither correct, formatted, finished nor English: keep it so later stages get data
KEEP_ALL = {"verify.enabled": False, "readability.format": "none", "readability.drop_truncated": False,
            "readability.language": "", "readability.max_repeated_ngrams": 1.0}


def test_the_cpu_recipe_runs_end_to_end_shrunk(tiny_model_dir, tmp_path):
    """configs/r1_cpu.yaml's twelve stages, wiring and rewards as written, with tiny sizes on a tiny model."""
    import yaml

    raw = yaml.safe_load(Path("configs/r1_cpu.yaml").read_text())
    raw.update(output_dir=str(tmp_path / "run"), base_model=str(tiny_model_dir))
    raw["eval"]["enabled"] = False  # evaluations are covered above; the eval section is still validated
    for stage in raw["stages"]:
        sets = stage.setdefault("set", {})
        sets.update(SHRINK.get(stage["kind"], {}))
        if sets.get("task.name", "").startswith("rg:"):
            sets["task.train_size"] = 40
        if sets.get("task.name") == "mix":  # one step over all 10 prompts: 7 arithmetic and 3 general
            sets.update({"task.train_size": 10, "train.prompts_per_step": 10})
        if stage["name"] in ("rs_data", "general_data"):
            sets.update(KEEP_ALL)
    summary = run_pipeline(parse_pipeline(raw, "r1_cpu.yaml"), progress=False)
    state = json.loads((tmp_path / "run" / "pipeline_state.json").read_text())
    assert all(state["stages"][s["name"]]["status"] == "done" for s in raw["stages"])
    # the mix holds the rejection samples (3 prompts x k=4, capped at max_per_prompt=2) and the 3 general answers
    assert state["stages"]["rs_traces"]["outputs"]["data"]["rows"] == 12
    assert state["stages"]["sft_mix"]["outputs"]["data"]["rows"] == 3 * 2 + 3
    final = state["stages"]["final_rl"]
    assert final["inputs"]["reward_model"]["stage"] == "rm"
    assert final["config"]["rewards"]["params"]["reward_model"]["model"] == str(tmp_path / "run/stages/rm/final")
    # the routed rewards were logged over the samples each applied to
    metrics = [json.loads(line) for line in (tmp_path / "run/stages/final_rl/metrics.jsonl").read_text().splitlines()]
    assert {"reward/accuracy", "reward/reward_model", "reward/language_consistency"} <= set(metrics[-1])
    assert 0 < metrics[-1]["reward/reward_model"] < 1  # normalize: sigmoid
    samples = [json.loads(line) for line in (tmp_path / "run/stages/final_rl/samples.jsonl").read_text().splitlines()]
    for sample in samples:  # general prompts (no gold) get the reward model, arithmetic ones the accuracy rule
        routed = "reward_model" if sample["gold"] is None else "accuracy"
        assert set(sample["breakdown"]) == {routed, "language_consistency"}, sample
    assert [r["stage"] for r in summary["rows"]] == [s["name"] for s in raw["stages"]]
