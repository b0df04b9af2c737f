"""`r1lab generate`: trace rows, resume (exactly the missing rows), a cut last line, cost arithmetic, a kill, and the
endpoint path against `r1lab serve` on loopback (retries, an unreachable URL that leaves finished rows intact)."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from r1lab.config import load_config
from r1lab.data.config import GenerateConfig
from r1lab.data.generate import TraceFileError, run_generate, summary_path
from r1lab.data.teachers import ProgramTeacher, TeacherError

TRACE_KEYS = {"id", "prompt", "completion", "answer", "sample", "teacher", "usage", "finish_reason", "meta"}
# a small demo task: two-term addition of 1-2 digit numbers (the defaults' params), few problems
SMALL = ["task.train_size=40", "task.eval_size=5", "output.progress=false"]


def config(tmp_path, *overrides: str) -> GenerateConfig:
    return load_config(GenerateConfig, None, SMALL + [f"output.path={tmp_path / 'traces.jsonl'}", *overrides])


def rows_of(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def test_program_teacher_rows_follow_the_trace_format(tmp_path):
    cfg = config(tmp_path, "output.num_prompts=4", "sampling.k=3")
    summary = run_generate(cfg)
    rows = rows_of(cfg.output.path)
    assert len(rows) == 12 and summary["rows_written"] == 12 and summary["rows_skipped"] == 0
    assert all(set(r) == TRACE_KEYS for r in rows)
    assert sorted((r["id"], r["sample"]) for r in rows) == sorted({(r["id"], s) for r in rows for s in range(3)})
    first = rows[0]
    assert first["teacher"] == "program:arithmetic" and first["finish_reason"] == "stop"
    assert first["prompt"].startswith("Calculate ")  # the bare question: no template, no instruction
    a, b = map(int, first["prompt"][len("Calculate "):-1].split(" + "))
    assert first["answer"] == str(a + b) and first["completion"].endswith(f"So {a} + {b} = {a + b}.")
    assert set(first["usage"]) == {"prompt_tokens", "completion_tokens"}
    assert json.loads(summary_path(cfg.output.path).read_text())["rows_in_file"] == 12


def test_resume_skips_exactly_the_rows_already_there(tmp_path):
    run_generate(config(tmp_path, "output.num_prompts=3", "sampling.k=2"))
    before = rows_of(tmp_path / "traces.jsonl")
    summary = run_generate(config(tmp_path, "output.num_prompts=5", "sampling.k=2"))
    after = rows_of(tmp_path / "traces.jsonl")
    assert summary["rows_skipped"] == 6 and summary["rows_written"] == 4
    assert after[:6] == before  # append-only: the finished rows are untouched
    keys = [(r["id"], r["sample"]) for r in after]
    assert len(keys) == len(set(keys)) == 10
    again = run_generate(config(tmp_path, "output.num_prompts=5", "sampling.k=2"))
    assert again["rows_written"] == 0 and again["rows_skipped"] == 10


def test_a_cut_last_line_is_regenerated_and_a_broken_middle_line_is_named(tmp_path):
    cfg = config(tmp_path, "output.num_prompts=2", "sampling.k=2")
    run_generate(cfg)
    path = tmp_path / "traces.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + lines[3][:25])  # a kill in the middle of writing the 4th row
    summary = run_generate(cfg)
    assert summary["rows_written"] == 1 and summary["rows_skipped"] == 3
    def without_latency(rows):
        return [{**r, "meta": {k: v for k, v in r["meta"].items() if k != "latency_s"}} for r in rows]

    # the same row, written again (program teachers are deterministic); only its timing differs
    assert without_latency(rows_of(path)) == without_latency([json.loads(line) for line in lines])
    path.write_text(lines[0] + "{oops\n" + "".join(lines[1:]))
    with pytest.raises(TraceFileError, match=r"traces.jsonl:2: not a trace row"):
        run_generate(cfg)


def test_cost_per_row_and_totals(tmp_path):
    # the seeds' DeepSeek-R1 prices: $0.55 per million input tokens, $2.19 per million output tokens
    cfg = config(tmp_path, "output.num_prompts=3", "sampling.k=2", "teacher.price_input=0.55",
                 "teacher.price_output=2.19")
    summary = run_generate(cfg)
    rows = rows_of(cfg.output.path)
    for r in rows:
        u = r["usage"]
        assert r["meta"]["cost_usd"] == pytest.approx((u["prompt_tokens"] * 0.55 + u["completion_tokens"] * 2.19) / 1e6)
    # a program teacher counts words, numbers and marks: "Calculate", A, "+", B, "." = 5 prompt tokens
    assert all(r["usage"]["prompt_tokens"] == 5 for r in rows)
    total_in = sum(r["usage"]["prompt_tokens"] for r in rows)
    total_out = sum(r["usage"]["completion_tokens"] for r in rows)
    assert summary["run"]["prompt_tokens"] == total_in == 30
    assert summary["run"]["cost_usd"] == pytest.approx((total_in * 0.55 + total_out * 2.19) / 1e6)
    assert summary["file"]["cost_usd"] == pytest.approx(summary["run"]["cost_usd"])


class DyingTeacher(ProgramTeacher):
    """Interrupted (like Ctrl-C or a kill) after ``after`` replies."""

    def __init__(self, after: int):
        super().__init__("arithmetic")
        self.after = after

    def generate(self, requests):
        for i, item in enumerate(super().generate(requests)):
            if i == self.after:
                raise KeyboardInterrupt
            yield item


def test_an_interrupted_run_keeps_its_rows_and_resumes(tmp_path):
    cfg = config(tmp_path, "output.num_prompts=4", "sampling.k=2")
    with pytest.raises(KeyboardInterrupt):
        run_generate(cfg, teacher=DyingTeacher(after=5))
    assert len(rows_of(cfg.output.path)) == 5
    assert json.loads(summary_path(cfg.output.path).read_text())["rows_written"] == 5
    summary = run_generate(cfg)
    assert summary["rows_written"] == 3 and len(rows_of(cfg.output.path)) == 8


def test_local_model_teacher(tmp_path, tiny_model_dir):
    cfg = config(tmp_path, f"teacher.name={tiny_model_dir}", "teacher.device=cpu", "output.num_prompts=2",
                 "sampling.k=2", "sampling.max_new_tokens=4", "prompt.template=plain", "prompt.instruction=")
    summary = run_generate(cfg)
    rows = rows_of(cfg.output.path)
    assert len(rows) == 4 and summary["teacher"] == str(tiny_model_dir)
    for r in rows:
        assert r["usage"]["prompt_tokens"] == len(r["prompt"])  # character tokenizer, plain template
        assert 1 <= r["usage"]["completion_tokens"] <= 4
        if r["finish_reason"] == "length":  # cut: exactly max_new_tokens, no EOS among them
            assert r["usage"]["completion_tokens"] == 4
        else:  # stopped: the EOS token is counted
            assert r["finish_reason"] == "stop"


# ---------------------------------------------------------------------------------------------------------------
# Endpoint teacher against `r1lab serve`
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def flaky_server(fail_first_requests):
    """`r1lab serve` on loopback with a tiny random model; its first 3 requests fail with 500."""
    from r1lab.models.loading import prepare_tokenizer
    from r1lab.models.tiny import tiny_model, tiny_tokenizer
    from r1lab.rollout.server import CompletionService, make_server

    tok = tiny_tokenizer()
    prepare_tokenizer(tok)
    model = tiny_model(tok)
    model.generation_config.eos_token_id = tok.eos_token_id
    server = make_server(CompletionService(model, tok, "tiny"), "127.0.0.1", 0)
    seen = fail_first_requests(server, 3, 500)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    server.shutdown()
    server.server_close()


def endpoint_config(tmp_path, url: str, *overrides: str) -> GenerateConfig:
    return config(tmp_path, "teacher.name=tiny", f"teacher.url={url}", "teacher.backoff_s=0.01",
                  "teacher.concurrency=2", "sampling.max_new_tokens=3", "teacher.price_input=15",
                  "teacher.price_output=60", *overrides)


def test_endpoint_generation_survives_server_errors_then_a_dead_url_keeps_finished_rows(tmp_path, flaky_server):
    url, seen = flaky_server
    cfg = endpoint_config(tmp_path, url, "output.num_prompts=2", "sampling.k=2")
    summary = run_generate(cfg)
    rows = rows_of(cfg.output.path)
    assert len(rows) == 4 and summary["rows_written"] == 4
    assert seen.posts == 7  # 4 answered + the 3 injected failures, each retried
    assert sum(r["meta"].get("retries", 0) for r in rows) == 3
    for r in rows:
        assert r["teacher"] == "tiny" and r["usage"]["completion_tokens"] == 3 and r["finish_reason"] == "length"
        # o1 prices ($15 / $60 per million): a chat prompt of n tokens and 3 completion tokens
        assert r["meta"]["cost_usd"] == pytest.approx((r["usage"]["prompt_tokens"] * 15 + 3 * 60) / 1e6)
    finished = (tmp_path / "traces.jsonl").read_text()

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    cfg = endpoint_config(tmp_path, dead, "output.num_prompts=3", "sampling.k=2", "teacher.max_retries=1")
    with pytest.raises(TeacherError) as info:
        run_generate(cfg)
    assert f"{dead}/chat/completions" in str(info.value) and "Connection refused" in str(info.value)
    assert (tmp_path / "traces.jsonl").read_text() == finished  # finished output intact
    assert "Connection refused" in json.loads(summary_path(cfg.output.path).read_text())["error"]


def test_the_api_key_is_never_written(tmp_path, flaky_server, monkeypatch):
    url, _ = flaky_server
    monkeypatch.setenv("R1LAB_TEST_KEY", "sk-very-secret")
    cfg = endpoint_config(tmp_path, url, "output.num_prompts=1", "sampling.k=1", "teacher.api_key_env=R1LAB_TEST_KEY")
    run_generate(cfg)
    for written in tmp_path.iterdir():
        assert "sk-very-secret" not in written.read_text()


def test_cli_generate(tmp_path, capsys):
    from r1lab.cli import main

    out = tmp_path / "cli.jsonl"
    code = main(["generate", "--k", "2", "--num-prompts", "2", "--output", str(out), "--set", "task.train_size=20",
                 "--set", "task.eval_size=3", "--set", "output.progress=false"])
    assert code == 0 and len(rows_of(out)) == 4
    assert "4 rows written, 0 already there" in capsys.readouterr().out


@pytest.mark.parametrize("command, cls", [("generate", "GenerateConfig"), ("filter", "FilterConfig"),
                                          ("journey", "JourneyConfig")])
def test_help_lists_every_config_key(command, cls, capsys):
    import dataclasses
    import typing

    import r1lab.data.config as config_module
    from r1lab.cli import main

    def keys(c, prefix=""):
        hints = typing.get_type_hints(c)
        for f in dataclasses.fields(c):
            if dataclasses.is_dataclass(hints[f.name]):
                yield from keys(hints[f.name], f"{prefix}{f.name}.")
            else:
                yield prefix + f.name

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    for key in keys(getattr(config_module, cls)):
        assert f"  {key} = " in text


def test_example_configs_load():
    from pathlib import Path

    from r1lab.data.config import FilterConfig

    root = Path(__file__).resolve().parents[2] / "configs"
    assert len(list(root.glob("generate_*.yaml"))) >= 3
    for path in root.glob("generate_*.yaml"):
        load_config(GenerateConfig, path)
    for path in root.glob("filter*.yaml"):
        load_config(FilterConfig, path)


def test_a_user_file_task_then_filter_with_its_own_scorer(tmp_path):
    """A .jsonl task (the default rg params do not apply to it); the program teacher reads the question text."""
    from r1lab.data.config import FilterConfig
    from r1lab.data.filters import run_filter

    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {a} + {b}?", "answer": str(a + b)}) + "\n"
                            for a, b in [(12, 34), (5, 7), (99, 99), (40, 2), (8, 8)]))
    task = [f"task.name={data}", "task.eval_size=1"]
    run_generate(load_config(GenerateConfig, None, task + [f"output.path={tmp_path / 't.jsonl'}", "sampling.k=2",
                                                           "output.progress=false"]))
    rows = rows_of(tmp_path / "t.jsonl")
    assert len(rows) == 8 and all(r["completion"].endswith(f"= {r['answer']}.") for r in rows)
    report = run_filter(load_config(FilterConfig, None, task + [f"input={tmp_path / 't.jsonl'}",
                                                                f"output={tmp_path / 'f.jsonl'}"]))
    assert report["correct_rate"] == 1.0 and report["dropped"]["exact_duplicate"] == 4  # k=2 identical exact traces
