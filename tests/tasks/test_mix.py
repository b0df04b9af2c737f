"""The mixed task (sources by weight, scorer delegating by example) and the general prompt task."""

from __future__ import annotations

import json

import pytest

from r1lab.tasks import load_task
from r1lab.data.preferences import builtin_path

ONE_DIGIT = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"],
             "allow_parentheses": False, "allow_negation": False}
SOURCES = {"sources": [{"name": "rg:basic_arithmetic", "params": ONE_DIGIT, "weight": 0.7},
                       {"name": "general", "weight": 0.3}]}


@pytest.fixture(scope="module")
def mixed():
    return load_task("mix", SOURCES, seed=3, train_size=100, eval_size=10)


def test_sources_share_training_by_weight(mixed):
    sources = [e.meta["source"] for e in mixed.train]
    # 100 training prompts split 0.7 / 0.3
    assert sources.count("rg:basic_arithmetic") == 70 and sources.count("general") == 30
    assert len({e.id for e in mixed.train}) == 100  # ids stay unique (generate resumes by id)
    # the general prompts have no answer; the arithmetic ones do
    assert all(e.answer is None for e in mixed.train if e.meta["source"] == "general")
    assert all(e.answer for e in mixed.train if e.meta["source"] != "general")
    # sources are interleaved, not in blocks: both appear among the first 10
    assert {e.meta["source"] for e in mixed.train[:10]} == {"rg:basic_arithmetic", "general"}


def test_held_out_set_is_the_verifiable_sources(mixed):
    # eval_size 10 split 7 / 3; only the 7 arithmetic problems can be scored, the 3 general prompts are only held out
    assert len(mixed.eval) == 7 and all(e.meta["source_index"] == 0 for e in mixed.eval)
    held_general = load_task("general", None, seed=3, eval_size=3).eval  # each source: the mix's seed
    assert not {e.question for e in held_general} & {e.question for e in mixed.train}


def test_a_source_with_its_own_eval_size_matches_the_single_task():
    # the held-out set of a single-task run with eval_size 5, and its training problems' exclusion, carry over
    sources = {"sources": [{**SOURCES["sources"][0], "eval_size": 5}, SOURCES["sources"][1]]}
    mixed = load_task("mix", sources, seed=3, train_size=20, eval_size=10)
    single = load_task("rg:basic_arithmetic", ONE_DIGIT, seed=3, train_size=20, eval_size=5)
    assert [e.question for e in mixed.eval] == [e.question for e in single.eval]
    assert not {e.question for e in single.eval} & {e.question for e in mixed.train}


def test_scorer_delegates_to_the_source(mixed):
    arith = next(e for e in mixed.train if e.meta["source_index"] == 0)
    gold = int(arith.answer)
    assert mixed.score(str(gold), arith) == 1.0  # reasoning-gym's own verifier
    assert mixed.score(str(gold + 1), arith) == 0.0
    general = next(e for e in mixed.train if e.meta["source_index"] == 1)
    with pytest.raises(ValueError, match="no verifiable answer"):  # never scored 0 by a rule
        mixed.score("anything", general)


def test_general_task_builtin_and_file(tmp_path):
    task = load_task("general", None, seed=0, eval_size=10)
    rows = [json.loads(line) for line in builtin_path("general_prompts.jsonl").read_text().splitlines() if line.strip()]
    assert len(task.train) + len(task.eval) == len(rows) and len(task.eval) == 10
    assert all(e.answer is None for e in task.train) and "category" in task.train[0].meta
    path = tmp_path / "g.jsonl"
    path.write_text('{"prompt": "Say hi."}\n{"prompt": "Say bye."}\n{"prompt": "Wave."}\n')
    own = load_task(f"general:{path}", None, seed=0, eval_size=1)
    assert len(own.train) == 2 and len(own.eval) == 1
    path.write_text('{"text": "no prompt"}\n')
    with pytest.raises(ValueError, match=r"g.jsonl:1: needs field 'prompt'"):
        load_task(f"general:{path}", None, seed=0, eval_size=1)


# (task.params, fragment of the error)
BAD = [
    ({}, "non-empty list"),  # no sources
    ({"sources": [{"name": "general"}], "mode": "x"}, "unknown task.params key(s) mode"),
    ({"sources": [{"name": "general", "wieght": 1}]}, "sources[0]: unknown key(s) wieght"),
    ({"sources": [{"name": "general", "weight": 0}]}, "sources[0]: weight must be a number > 0"),
    ({"sources": [{"name": "general", "eval_size": 0}]}, "sources[0]: eval_size must be an integer >= 1"),
    ({"sources": [{"weight": 1}]}, "sources[0]: needs 'name'"),
    ({"sources": [{"name": "mix"}]}, "a mix cannot contain a mix"),
    ({"sources": [{"name": "rg:no_such_dataset"}]}, "sources[0] (rg:no_such_dataset)"),
]


@pytest.mark.parametrize("params,fragment", BAD)
def test_bad_sources_are_named(params, fragment):
    with pytest.raises(ValueError) as err:
        load_task("mix", params, seed=0, train_size=10, eval_size=2)
    assert fragment in str(err.value)
