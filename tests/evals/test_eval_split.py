"""Which problems `r1lab eval` scores: every problem of a fixed benchmark by default (the train/held-out split is for
training jobs), a generated task's held-out set, or on request the held-out set a training run on the task kept."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from r1lab.cli import build_parser, load_job_config
from r1lab.config import ConfigError, load_config
from r1lab.evals.config import EvalJobConfig
from r1lab.evals.runner import run_eval
from r1lab.tasks import load_task


def qa_file(tmp_path: Path, count: int = 6) -> Path:
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} times 3?", "answer": str(3 * i)}) + "\n"
                            for i in range(count)))
    return data


def eval_config(tmp_path, model_dir, *items: str) -> EvalJobConfig:
    return load_config(EvalJobConfig, None, [
        f"model.name={model_dir}", f"log.output_dir={tmp_path / 'run'}", f"log.cache_dir={tmp_path / 'cache'}",
        "log.progress=false", "sampling.n=1", "sampling.max_new_tokens=8", "metrics.ks=[1]", *items])


def right_answer(prompt: str, i: int) -> str:
    return str(3 * int(prompt.split("What is ")[-1].split(" times")[0]))


def test_humaneval_is_evaluated_whole_by_default():
    """`r1lab eval MODEL --task humaneval`, as the CLI builds its config, loads all 164 problems."""
    cfg = load_job_config(build_parser().parse_args(["eval", "smollm2-135m", "--task", "humaneval"]))
    t = cfg.task
    assert (t.resolved_split(), t.resolved_eval_size()) == ("all", None)
    task = load_task(t.name, t.resolved_params(), t.seed, t.train_size, t.resolved_eval_size(), t.eval_path,
                     t.resolved_split())
    assert len(task.eval) == 164 and task.train == [] and task.eval_only
    assert len({e.id for e in task.eval}) == 164
    assert len(load_task("humaneval", eval_size=164, split="all").eval) == 164  # task.eval_size=164 is all of it
    with pytest.raises(ValueError, match="164 distinct problems, fewer than task.eval_size=165"):
        load_task("humaneval", eval_size=165, split="all")
    # training jobs still split it, and still refuse to hold out every problem
    with pytest.raises(ValueError, match="164 distinct problems, cannot hold out 164 and still train"):
        load_task("humaneval", eval_size=164)


def test_every_problem_of_a_file_is_scored(tmp_path, tiny_model_dir, scripted):
    data = qa_file(tmp_path)
    result = run_eval(eval_config(tmp_path, tiny_model_dir, f"task.name={data}"), lambda: scripted(right_answer))
    assert result.results["num_problems"] == 6 and result.results["task_split"] == "all"
    assert result.results["metrics"]["pass@1"] == 1.0
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["task"]
    assert (recorded["split"], recorded["eval_size"]) == ("all", None)  # what ran, never "auto"


@pytest.mark.parametrize("size", [2, 5])
def test_a_size_picks_a_training_runs_held_out_problems(tmp_path, size):
    """task.eval_size=N with split all scores the N problems a training run with that size held out."""
    data = str(qa_file(tmp_path))
    held_out = load_task(data, seed=3, eval_size=size).eval
    subset = load_task(data, seed=3, eval_size=size, split="all")
    assert [e.id for e in subset.eval] == [e.id for e in held_out]
    assert [e.id for e in load_task(data, seed=3, eval_size=6, split="all").eval] == \
        [e.id for e in load_task(data, seed=3, eval_size=None, split="all").eval]


def test_split_held_out_scores_only_unseen_problems(tmp_path, tiny_model_dir, scripted):
    data = qa_file(tmp_path)
    trained = load_task(str(data), seed=1, eval_size=2)
    engine = scripted(right_answer)
    result = run_eval(eval_config(tmp_path, tiny_model_dir, f"task.name={data}", "task.split=held_out",
                                  "task.eval_size=2", "task.seed=1"), lambda: engine)
    assert result.results["num_problems"] == 2 and result.results["task_split"] == "held_out"
    questions = {e.question for e in trained.eval}
    assert len(engine.prompts) == 2 and all(any(q in p for q in questions) for p in engine.prompts)


def test_generated_tasks_keep_their_held_out_set():
    cfg = load_config(EvalJobConfig, None, ["task.name=rg:basic_arithmetic"])
    assert (cfg.task.resolved_split(), cfg.task.resolved_eval_size()) == ("held_out", 200)
    cfg = load_config(EvalJobConfig, None, ["task.name=data.jsonl", "task.eval_path=test.jsonl"])
    assert cfg.task.resolved_split() == "held_out"  # a named held-out file means the held-out split
    with pytest.raises(ConfigError, match="config key 'task.split': rg:basic_arithmetic generates its problems"):
        load_config(EvalJobConfig, None, ["task.split=all"])
    with pytest.raises(ValueError, match="generates its problems"):
        load_task("rg:basic_arithmetic", eval_size=5, split="all")


@pytest.mark.parametrize("items, key", [
    (["prompt.few_shot=2"], "prompt.few_shot"),
    (["sensitivity.builtin=true"], "sensitivity.builtin"),  # its few_shot_1 and few_shot_3 variants
    (["sensitivity.variants={shots: {few_shot: 1}}"], "sensitivity.variants.shots"),
])
def test_few_shot_needs_problems_outside_the_evaluated_set(items, key):
    with pytest.raises(ConfigError, match=f"config key '{key}': few-shot prompts .* task.split=held_out"):
        load_config(EvalJobConfig, None, ["task.name=humaneval", *items])
    load_config(EvalJobConfig, None, ["task.name=humaneval", "task.split=held_out", "task.eval_size=20", *items])


def test_the_pipeline_evaluates_held_out_problems(tmp_path):
    from r1lab.pipeline.config import job_config
    from r1lab.pipeline.stages import eval_defaults

    pipeline = SimpleNamespace(output_dir=tmp_path, eval=SimpleNamespace(set={"task.name": str(qa_file(tmp_path))}))
    job = job_config(EvalJobConfig, eval_defaults(pipeline), "pipeline eval")
    assert (job.task.resolved_split(), job.task.resolved_eval_size()) == ("held_out", 200)
