"""A JSONL file that starts with a UTF-8 byte-order mark (as Notepad and Excel write them) reads like one without,
in every reader of user JSONL: tasks, SFT traces, preference pairs, trace files, the pipeline's mix stage and the
resumable output of r1lab generate. Line numbers in errors stay those of the file."""

from __future__ import annotations

import json

import pytest

from r1lab.data.jsonl import jsonl_rows


def write_with_bom(path, rows: list) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8-sig")


def test_bom_is_not_part_of_the_first_row(tmp_path):
    path = tmp_path / "bom.jsonl"
    write_with_bom(path, [{"prompt": "What is 1 + 1?", "answer": "2"}, {"prompt": "What is 2 + 2?", "answer": "4"}])
    assert path.read_bytes().startswith(b"\xef\xbb\xbf{")
    assert list(jsonl_rows(path, ValueError)) == [(1, {"prompt": "What is 1 + 1?", "answer": "2"}),
                                                  (2, {"prompt": "What is 2 + 2?", "answer": "4"})]
    broken = tmp_path / "broken.jsonl"
    write_with_bom(broken, [{"a": 1}, "{not json"])
    with pytest.raises(ValueError, match="broken.jsonl:2: not valid JSON"):
        list(jsonl_rows(broken, ValueError))


def test_every_user_jsonl_reader_accepts_a_bom(tmp_path):
    from r1lab.data.filters import read_traces
    from r1lab.data.preferences import read_preferences
    from r1lab.data.sft_data import read_sft_rows
    from r1lab.tasks.files import read_examples

    tasks = tmp_path / "task.jsonl"
    write_with_bom(tasks, [{"prompt": "What is 1 + 1?", "answer": "2"}])
    assert [(e.id, e.question, e.answer) for e in read_examples(tasks)] == [(f"{tasks}:1", "What is 1 + 1?", "2")]

    traces = tmp_path / "traces.jsonl"
    trace = {"id": "p1", "prompt": "What is 1 + 1?", "completion": "1 + 1 = 2. So the answer is 2.", "answer": "2",
             "sample": 0}
    write_with_bom(traces, [trace])
    assert [row["completion"] for _, row in read_traces(traces)] == [trace["completion"]]
    assert [row.completion for row in read_sft_rows(traces)] == [trace["completion"]]

    pairs = tmp_path / "pairs.jsonl"
    write_with_bom(pairs, [{"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."}])
    assert [(p.prompt, p.chosen) for p in read_preferences(pairs)] == [("Say hi.", "Hi!")]


def test_pipeline_mix_and_generate_output_accept_a_bom(tmp_path):
    from r1lab.data.generate import scan_output
    from r1lab.pipeline.stages import MixConfig, run_mix

    source = tmp_path / "reasoning.jsonl"
    write_with_bom(source, [{"id": "a", "prompt": "x", "completion": "y"}])
    out = tmp_path / "mix.jsonl"
    report = run_mix(MixConfig(inputs={"reasoning": str(source)}, output=str(out), shuffle=False))
    assert report["rows"] == 1 and json.loads(out.read_text())["id"] == "a"

    written = tmp_path / "traces.jsonl"
    write_with_bom(written, [{"id": "p1", "sample": 0, "usage": {"prompt_tokens": 3, "completion_tokens": 5}}])
    done, totals = scan_output(written)
    assert done == {("p1", 0)} and totals["rows"] == 1 and totals["completion_tokens"] == 5
