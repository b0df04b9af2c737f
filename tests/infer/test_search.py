"""PRM-guided search with a stub PRM of known step scores: beam search keeps the top-scoring beams, DVTS keeps the
best of each independent subtree, and the step-score aggregation (last / min / prod) decides the answer."""

from __future__ import annotations

import itertools

import pytest

from r1lab.infer import METHODS
from r1lab.infer.prm import aggregate, split_steps
from r1lab.types import Example

EX = [Example("e0", "5", prompt="2+3?")]
SCORES = {"r0": 0.1, "r1": 0.9, "r2": 0.5, "r3": 0.7, "answer 5": 0.8, "t1": 0.3, "answer 6": 0.85, "t3": 0.95}


def tree_replies():
    """First steps r0, r1, r2, r3 in call order; from r1 the model answers 5 (or writes t1), from r3 it answers 6."""
    counter = itertools.count()

    def reply(prompt: str, i: int) -> str:
        if prompt.endswith("A:"):
            return f"r{next(counter)}\n"
        if prompt.endswith("r1\n"):
            return ["answer 5", "t1\n"][i]
        if prompt.endswith("r3\n"):
            return ["answer 6", "t3\n"][i]
        raise AssertionError(f"a beam that should have been dropped was expanded: {prompt!r}")

    return reply


def test_aggregations():
    scores = [0.9, 0.5, 0.8]
    assert aggregate(scores, "last") == 0.8
    assert aggregate(scores, "min") == 0.5
    assert aggregate(scores, "prod") == pytest.approx(0.36)
    with pytest.raises(ValueError, match="allowed: last, min, prod"):
        aggregate(scores, "max")
    assert split_steps("a\n\n b \nc", "\n") == ["a", "b", "c"]


def test_beam_search_keeps_the_top_beams(scripted_ctx, stub_prm):
    prm = stub_prm(SCORES)
    ctx, engine = scripted_ctx(tree_replies(), prm=prm)
    (a,) = METHODS.get("beam_search")(EX, ctx, {"beams": 2, "expand": 2, "max_steps": 3})
    # round 1: the root, as 2 beams x 2 samples, gives r0..r3; the PRM keeps r1 (0.9) and r3 (0.7)
    assert prm.asked[:4] == [["r0"], ["r1"], ["r2"], ["r3"]]
    assert a.info["trace"][0] == [("r1\n", 0.9), ("r3\n", 0.7)]
    assert engine.prompts[:2] == ["Q: 2+3? [default]\nA:"] * 2
    # round 2: each kept beam expanded twice; two solutions finish, which fills the pool of 2: the search stops
    assert engine.prompts[2:] == ["Q: 2+3? [default]\nA:r1\n", "Q: 2+3? [default]\nA:r3\n"]
    assert a.info["trace"][1] == [("r3\nanswer 6", 0.85), ("r1\nanswer 5", 0.8)]  # finished, best first
    assert a.answer == "6" and a.candidates == 2  # aggregate "last": 0.85 beats 0.8
    # round 1: 4 x "rK\n" (3 tokens); round 2: "answer N" + EOS (9) and "tK\n" (3), twice
    assert a.tokens == 4 * 3 + 2 * (9 + 3)


@pytest.mark.parametrize("how, answer", [("last", "6"), ("min", "5"), ("prod", "5")])
def test_aggregation_decides_between_finished_solutions(scripted_ctx, stub_prm, how, answer):
    # r1 -> answer 5 scores (0.9, 0.8); r3 -> answer 6 scores (0.7, 0.85): last 0.8 < 0.85, min 0.8 > 0.7,
    # prod 0.72 > 0.595
    ctx, _ = scripted_ctx(tree_replies(), prm=stub_prm(SCORES))
    (a,) = METHODS.get("beam_search")(EX, ctx, {"beams": 2, "expand": 2, "aggregate": how})
    assert a.answer == answer


def test_dvts_keeps_the_best_of_each_subtree(scripted_ctx, stub_prm):
    prm = stub_prm(SCORES)
    ctx, engine = scripted_ctx(tree_replies(), prm=prm)
    (a,) = METHODS.get("dvts")(EX, ctx, {"n": 4, "expand": 2})
    # two subtrees of width 1: tree 0 sees r0, r1 and keeps r1; tree 1 sees r2, r3 and keeps r3 (trace: tree 0)
    assert a.info["trace"] == [[("r1\n", 0.9)], [("r1\nanswer 5", 0.8)]]
    assert engine.prompts[2:] == ["Q: 2+3? [default]\nA:r1\n", "Q: 2+3? [default]\nA:r3\n"]
    assert a.answer == "6" and a.candidates == 2
    with pytest.raises(ValueError, match="multiple of expand"):
        METHODS.get("dvts")(EX, ctx, {"n": 5, "expand": 2})


def test_weighted_selection_sums_scores_per_answer(scripted_ctx, stub_prm):
    replies = itertools.cycle(["answer 5", "answer 6", "answer 5.0"])  # 3 root copies x 1 sample; all finish
    ctx, _ = scripted_ctx(lambda prompt, i: next(replies), prm=stub_prm({"answer 5": 0.4, "answer 6": 0.7,
                                                                         "answer 5.0": 0.4}))
    (best,) = METHODS.get("beam_search")(EX, ctx, {"beams": 3, "expand": 1})
    assert best.answer == "6"  # the single best solution
    (voted,) = METHODS.get("beam_search")(EX, ctx, {"beams": 3, "expand": 1, "select": "vote"})
    assert voted.answer == "5"  # 0.4 + 0.4 for 5 (= 5.0) beats 0.7 for 6
