"""r1lab.evals.runner: the evaluation job on scripted replies (hand-computed metrics), the generation cache (a
second run never calls the engine), prompt variants and their spread, user JSONL and HumanEval tasks."""

from __future__ import annotations

import json
import re

import pytest

from r1lab.config import load_config
from r1lab.evals.config import BUILTIN_VARIANTS, EvalJobConfig
from r1lab.evals.runner import run_eval

ARITH = ["task.params={min_terms: 2, max_terms: 2, min_digits: 1, max_digits: 1, operators: ['+'], "
         "allow_parentheses: false, allow_negation: false}", "task.train_size=50", "task.eval_size=4", "task.seed=1"]


def config(tmp_path, model_dir, *extra: str, task: list[str] = ARITH) -> EvalJobConfig:
    return load_config(EvalJobConfig, None, [
        f"model.name={model_dir}", f"log.output_dir={tmp_path / 'run'}", f"log.cache_dir={tmp_path / 'cache'}",
        "log.progress=false", "sampling.max_new_tokens=64", "metrics.score_workers=2", *task, *extra])


def total(prompt: str) -> int:
    """The sum the last 'Calculate a + b' of the prompt asks for (few-shot prompts hold several)."""
    a, b = re.findall(r"Calculate (\d+) \+ (\d+)", prompt)[-1]
    return int(a) + int(b)


def four_kinds(prompt: str, i: int) -> str:
    """Per problem: two right answers (one in R1 format), one wrong after a 'Wait', one without any number."""
    s = total(prompt)
    return [f"<think>add</think><answer>{s}</answer>", f"The answer is {s}.", f"Wait, it is {s + 1}",
            "I do not know"][i]


def test_metrics_of_scripted_replies_and_the_cache(tmp_path, tiny_model_dir, scripted):
    engines = []

    def factory():
        engines.append(scripted(four_kinds))
        return engines[-1]

    cfg = config(tmp_path, tiny_model_dir, "sampling.n=4", "metrics.ks=[1, 2]")
    first = run_eval(cfg, engine_factory=factory)
    assert len(engines) == 1 and engines[0].calls >= 1 and first.generated_prompts == 4
    m = first.results["metrics"]
    assert m["pass@1"] == pytest.approx(0.5)  # 2 of 4 right on every problem
    assert m["pass@2"] == pytest.approx(5 / 6)  # 1 - C(2,2)/C(4,2)
    assert m["pass@4"] == pytest.approx(1.0)  # n is always added
    assert m["maj@1"] == pytest.approx(0.5)
    # pairs: (0,1) right, (0,2) tie -> 0 right, (0,3) right, (1,2) tie -> 1 right, (1,3) right, (2,3) wrong
    assert m["maj@2"] == pytest.approx(5 / 6)
    assert m["maj@4"] == pytest.approx(1.0)  # the right answer has two votes of three
    assert m["format_rate"] == pytest.approx(0.25) and m["extract_rate"] == pytest.approx(0.75)
    assert m["reflection_rate"] == pytest.approx(0.25) and m["reflection_words"] == {"wait": pytest.approx(0.25)}
    assert m["score_errors"] == 0 and m["num_samples"] == 16
    # Character tokens (tags are single tokens) + EOS. Sums 7, 8, 6, 15: right replies 9 and 17 tokens (10 and 18
    # for 15), wrong ones 14 and 14 (15 and 14 for 15).
    assert m["mean_length_correct"] == pytest.approx((3 * (9 + 17) + (10 + 18)) / 8)
    assert m["mean_length_wrong"] == pytest.approx((3 * (14 + 14) + (15 + 14)) / 8)
    assert m["tokens_per_correct"] == pytest.approx((106 + 113) / 8)  # all tokens over 8 right replies
    sampling = first.results["sampling"]
    assert (sampling["temperature"], sampling["top_p"], sampling["n"]) == (0.6, 0.95, 4)  # the R1 defaults
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "completions.jsonl").read_text().splitlines()]
    assert len(records) == 16 and records[2]["reflection"] == {"wait": 1} and records[3]["answer"] is None
    assert records[0]["correct"] and records[0]["formatted"] and "prompt" in records[0]
    report = (run / "report.md").read_text()
    assert "| 2 | 0.833 | 0.833 |" in report  # k, pass@k, maj@k
    assert (run / "pass_at_k.png").stat().st_size > 1000 and (run / "lengths.png").stat().st_size > 1000

    # A second run asking for another k reuses every generation: the engine is never built.
    again = run_eval(config(tmp_path, tiny_model_dir, "sampling.n=4", "metrics.ks=[1, 2, 3]"), engine_factory=factory)
    assert len(engines) == 1 and again.generated_prompts == 0
    assert again.results["metrics"]["pass@3"] == pytest.approx(1.0)
    assert again.results["metrics"]["maj@2"] == pytest.approx(m["maj@2"])
    # A changed sampling setting is a different cache entry: it generates again.
    run_eval(config(tmp_path, tiny_model_dir, "sampling.n=4", "sampling.temperature=0.7"), engine_factory=factory)
    assert len(engines) == 2


def test_prompt_variants_and_their_spread(tmp_path, tiny_model_dir, scripted):
    def careful_only(prompt: str, i: int) -> str:  # right only under the 'careful reasoner' system prompt
        return str(total(prompt) + (0 if "careful reasoner" in prompt else 1))

    engine = scripted(careful_only)
    result = run_eval(config(tmp_path, tiny_model_dir, "sampling.n=2", "sensitivity.builtin=true",
                             "sensitivity.variants={terse: {instruction: 'Number only.'}}"), lambda: engine)
    variants = result.results["variants"]
    assert list(variants) == ["default", *BUILTIN_VARIANTS, "terse"]
    assert variants["reasoner_system"]["pass@1"] == 1.0
    assert all(v["pass@1"] == 0.0 for name, v in variants.items() if name != "reasoner_system")
    spread = result.results["prompt_sensitivity"]["pass@1"]
    p = 1 / 7  # one variant of seven at 1.0
    assert (spread["min"], spread["max"], spread["range"]) == (0.0, 1.0, 1.0)
    assert spread["std"] == pytest.approx((p * (1 - p)) ** 0.5)
    # Few-shot prompts show training problems (never held-out ones) as earlier chat turns, the same for every question.
    question = r"Calculate \d+ \+ \d+"
    three_shot = [pr for pr in engine.prompts if pr.count("Calculate") == 4]
    assert len(three_shot) == 4
    shots = re.findall(question, three_shot[0])[:3]
    assert all(re.findall(question, pr)[:3] == shots for pr in three_shot)  # the same shots for every question
    asked = {re.findall(question, pr)[-1] for pr in three_shot}
    assert len(asked) == 4 and not asked & set(shots)  # shots come from the training split
    assert three_shot[0].count("<|im_start|>assistant") == 4  # three shown answers + the real turn
    assert sum("A conversation between User and Assistant" in pr for pr in engine.prompts) == 4  # r1_zero variant


def test_user_jsonl_task(tmp_path, tiny_model_dir, scripted):
    data = tmp_path / "qa.jsonl"
    rows = [{"prompt": f"What is {i} times 3?", "answer": str(3 * i)} for i in range(6)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def reply(prompt: str, i: int) -> str:
        k = int(re.findall(r"What is (\d+) times 3", prompt)[-1])
        return [f"{3 * k}", f"{3 * k}.0", "7"][i]  # "3k" and "3k.0" are one answer to the numeric verifier

    result = run_eval(config(tmp_path, tiny_model_dir, "sampling.n=3", task=[f"task.name={data}", "task.eval_size=2"]),
                      lambda: scripted(reply))
    m = result.results["metrics"]
    assert result.results["num_problems"] == 2
    assert m["pass@1"] == pytest.approx(2 / 3) and m["maj@3"] == pytest.approx(1.0)
    records = [json.loads(line) for line in (tmp_path / "run" / "completions.jsonl").read_text().splitlines()]
    assert [r["cluster"] for r in records[:3]] == [0, 0, 1]


def test_humaneval_scores_programs_in_the_sandbox(tmp_path, tiny_model_dir, scripted):
    from r1lab.tasks import load_task

    try:
        task = load_task("humaneval", seed=0, eval_size=2)
    except (ImportError, ValueError) as err:
        pytest.skip(f"humaneval task not available: {err}")
    by_setup = {e.meta["setup"]: e for e in task.eval}

    def reply(prompt: str, i: int) -> str:
        example = next(e for setup, e in by_setup.items() if setup.strip() in prompt)
        return f"```python\n{example.meta['reference']}```" if i == 0 else "```python\ndef nothing():\n    pass\n```"

    # The scripted replies are longer than the tiny model's 512-token context, and its prompts need no room for them
    result = run_eval(config(tmp_path, tiny_model_dir, "sampling.n=2", "sampling.max_new_tokens=2000",
                             "sampling.max_prompt_tokens=4096",
                             task=["task.name=humaneval", "task.eval_size=2", "task.seed=0"]), lambda: scripted(reply))
    m = result.results["metrics"]
    assert "Answer with just the number" not in json.loads((tmp_path / "run" / "completions.jsonl").read_text()
                                                           .splitlines()[0])["prompt"]  # code prompts keep their own
    assert m["score_errors"] == 0
    assert m["pass@1"] == pytest.approx(0.5) and m["pass@2"] == pytest.approx(1.0)


@pytest.mark.parametrize("features, expected", [(("avx512_bf16", "avx2"), "float32"),
                                               (("amx_bf16", "amx_tile", "avx2"), "bfloat16")])
def test_auto_dtype_is_resolved_before_it_is_recorded(tmp_path, tiny_model_dir, scripted, monkeypatch,
                                                      features, expected):
    from r1lab.models import precision

    monkeypatch.setattr(precision, "cpu_matrix_features", lambda: features)
    cfg = config(tmp_path, tiny_model_dir, "sampling.n=2", "metrics.ks=[1]", "model.dtype=auto", "model.device=cpu")
    result = run_eval(cfg, engine_factory=lambda: scripted(four_kinds))
    assert result.results["sampling"]["dtype"] == expected
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["dtype"] == expected
    # The cache is keyed by the resolved dtype: the same run asked for explicitly finds every generation cached.
    again = run_eval(config(tmp_path, tiny_model_dir, "sampling.n=2", "metrics.ks=[1]", f"model.dtype={expected}",
                            "model.device=cpu"), engine_factory=lambda: scripted(four_kinds))
    assert again.generated_prompts == 0
