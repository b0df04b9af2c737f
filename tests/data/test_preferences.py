"""r1lab.data.preferences: reading preference JSONL (errors name file, line, field), the built-in sets, and the
held-out split by prompt."""

from __future__ import annotations

import collections
import importlib.util
import json

import pytest

from r1lab.data.preferences import (
    PreferenceFormatError,
    PreferencePair,
    builtin_path,
    drop_shared_prompts,
    read_preferences,
    split_by_prompt,
)


def write(tmp_path, lines: list[str], name: str = "prefs.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def row(prompt="What is 2+2?", chosen="4", rejected="5", **extra) -> str:
    return json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected, **extra})


def test_reads_pairs_with_meta_and_line_ids(tmp_path):
    path = write(tmp_path, [row(category="correct"), "", row("Hi", "Hello! How can I help?", "Go away.")])
    pairs = read_preferences(path)
    assert pairs == [PreferencePair(f"{path}:1", "What is 2+2?", "4", "5"),
                     PreferencePair(f"{path}:3", "Hi", "Hello! How can I help?", "Go away.")]  # blank line 2 skipped
    assert pairs[0].meta == {"category": "correct"} and pairs[1].meta == {}


@pytest.mark.parametrize("line,expected", [
    ('{"prompt": "a", "chosen": "b"', "not valid JSON"),                                 # truncated object
    ('["a", "b", "c"]', "expected a JSON object"),                                       # a list, not an object
    (json.dumps({"prompt": "a", "chosen": "b"}), "missing field 'rejected'"),            # field absent
    (json.dumps({"prompt": "a", "chosen": None, "rejected": "c"}), "missing field 'chosen'"),  # null
    (json.dumps({"prompt": 3, "chosen": "b", "rejected": "c"}), "field 'prompt' must be a string, got int"),
    (json.dumps({"prompt": "a", "chosen": "  ", "rejected": "c"}), "field 'chosen' is empty"),
    (json.dumps({"prompt": "a", "chosen": "same", "rejected": "same"}), "are identical"),
])
def test_malformed_row_names_file_line_and_field(tmp_path, line, expected):
    path = write(tmp_path, [row(), line])  # the bad row is on line 2
    with pytest.raises(PreferenceFormatError) as err:
        read_preferences(path)
    assert f"{path}:2:" in str(err.value) and expected in str(err.value)


def test_file_level_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="preference file not found"):
        read_preferences(tmp_path / "missing.jsonl")
    with pytest.raises(PreferenceFormatError, match="must be a .jsonl file"):
        read_preferences(write(tmp_path, [row()], name="prefs.json"))
    with pytest.raises(PreferenceFormatError, match="no preference pairs"):
        read_preferences(write(tmp_path, ["", "  "]))


def _pairs(prompts: list[str]) -> list[PreferencePair]:
    return [PreferencePair(f"f:{i}", p, "good", "bad") for i, p in enumerate(prompts)]


def test_split_holds_out_whole_prompts():
    # 10 distinct prompts, prompt 0 appears three times (once with extra spaces: the same prompt after normalising).
    pairs = _pairs(["p0", "p0", " p0 "] + [f"p{i}" for i in range(1, 10)])
    train, held = split_by_prompt(pairs, eval_fraction=0.2, seed=7)
    norm = lambda ps: {" ".join(p.prompt.split()) for p in ps}  # noqa: E731
    assert len(norm(held)) == 2 and len(norm(train)) == 8  # round(0.2 * 10) prompts held out
    assert not norm(train) & norm(held)
    assert sorted(p.id for p in train + held) == sorted(p.id for p in pairs)  # nothing lost or duplicated
    if "p0" in norm(held):
        assert sum(p.prompt.strip() == "p0" for p in held) == 3
    # Seeded: the same seed gives the same split; some other seed gives a different one.
    assert split_by_prompt(pairs, 0.2, seed=7) == (train, held)
    assert any(norm(split_by_prompt(pairs, 0.2, seed=s)[1]) != norm(held) for s in range(8, 14))


@pytest.mark.parametrize("fraction", [0.01, 0.99])  # 10 prompts: holds out 0, or all 10
def test_split_needs_a_prompt_on_each_side(fraction):
    with pytest.raises(ValueError, match="at least one prompt on each side"):
        split_by_prompt(_pairs([f"p{i}" for i in range(10)]), fraction, seed=0)


def test_drop_shared_prompts():
    train = _pairs(["a", "b", "c  d"])
    held = _pairs(["c d", "x"])
    assert [p.prompt for p in drop_shared_prompts(train, held)] == ["a", "b"]


def test_builtin_preferences():
    pairs = read_preferences("builtin")
    assert len(pairs) == 200
    counts = collections.Counter(p.meta["category"] for p in pairs)
    assert counts == {"correct": 56, "refusal": 36, "helpful": 28, "polite": 28, "on_topic": 28, "harmless": 24}
    assert len({p.prompt for p in pairs}) == 88
    # The harmlessness slice: chosen declines, rejected complies.
    harmless = [p for p in pairs if p.meta["category"] == "harmless"]
    assert all(any(w in p.chosen for w in ("I can't", "I won't", "I'd rather not")) for p in harmless)
    assert all(not p.rejected.startswith(("I can't", "I won't")) for p in harmless)


def test_builtin_general_prompts_load_as_a_task():
    from r1lab.tasks.files import read_examples

    examples = read_examples(builtin_path("general_prompts.jsonl"))
    assert len(examples) == 100 and len({e.question for e in examples}) == 100
    assert collections.Counter(e.meta["category"] for e in examples)["harmful_request"] == 10


def test_builtin_files_are_what_the_generator_writes():
    # The shipped files can be regenerated exactly from make_builtin.py (no hand edits that the source lacks).
    spec = importlib.util.spec_from_file_location("make_builtin", builtin_path("make_builtin.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for name, rows in (("preferences.jsonl", gen.preference_rows()), ("general_prompts.jsonl", gen.general_rows())):
        shipped = [json.loads(line) for line in builtin_path(name).read_text(encoding="utf-8").splitlines()]
        assert shipped == rows, name


def test_builtin_path_names_a_missing_file():
    with pytest.raises(FileNotFoundError, match="missing from the installed package"):
        builtin_path("nope.jsonl")
