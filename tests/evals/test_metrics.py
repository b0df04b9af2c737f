"""r1lab.evals.metrics: pass@k against brute-force enumeration, maj@k and its tie-break by hand, clustering by the
task verifier, lengths, cost and reflection words, and the summary of a hand-built evaluation."""

from __future__ import annotations

import itertools

import pytest

from r1lab.evals.answers import as_gold, equivalence
from r1lab.evals.metrics import (
    Sample, cluster_answers, cluster_correctness, cost_per_1k, length_stats, maj_at_k, mean_pass_at_k, pass_at_k,
    reflection_stats, summarize, tokens_per_correct, vote,
)
from r1lab.tasks.base import Task, normalised_match
from r1lab.types import Example


# ---------------------------------------------------------------------------------------------------------------
# pass@k
# ---------------------------------------------------------------------------------------------------------------
def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """The definition: the share of k-subsets of the n samples (c of them correct) holding a correct one."""
    correct = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(correct, k))
    return sum(any(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_equals_enumeration_over_all_subsets(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


PASS_CASES = [
    (10, 3, 1, 0.3, "pass@1 is c/n"),
    (4, 1, 2, 0.5, "1 - C(3,2)/C(4,2) = 1 - 3/6"),
    (5, 2, 2, 0.7, "1 - C(3,2)/C(5,2) = 1 - 3/10"),
    (5, 4, 2, 1.0, "n - c < k: every pair holds a correct one"),
    (6, 0, 3, 0.0, "nothing correct"),
    (200, 1, 100, 0.5, "large n stays exact: 1 - 199!/(99! 200!/100!) = 1/2"),
]


@pytest.mark.parametrize("n, c, k, expected", [c[:4] for c in PASS_CASES], ids=[c[4] for c in PASS_CASES])
def test_pass_at_k_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_rejects_impossible_inputs_and_averages_eligible_problems():
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError, match="c <= n"):
        pass_at_k(3, 4, 1)
    # Problem 2 has only 2 valid samples: left out of pass@3, kept in pass@2 (0.5 and 1 - C(2,2)/C(4,2) = 5/6).
    counts = [(4, 1), (2, 1)]
    assert mean_pass_at_k(counts, 2) == pytest.approx((0.5 + 1.0) / 2)
    assert mean_pass_at_k(counts, 3) == pytest.approx(pass_at_k(4, 1, 3))
    assert mean_pass_at_k(counts, 5) is None


# ---------------------------------------------------------------------------------------------------------------
# majority vote
# ---------------------------------------------------------------------------------------------------------------
VOTE_CASES = [
    ([0, 1, 1], 1, "plain majority"),
    ([2, 1, 1, 2], 2, "tie: the cluster voted for first wins"),
    ([None, 1, 2], 1, "abstentions do not vote; tie broken by first vote"),
    ([None, None], None, "nobody answered"),
    ([3], 3, "a single vote"),
]


@pytest.mark.parametrize("ids, winner", [c[:2] for c in VOTE_CASES], ids=[c[2] for c in VOTE_CASES])
def test_vote_and_its_tie_break(ids, winner):
    assert vote(ids) == winner


# Samples: cluster 0 (correct), cluster 1 twice (wrong), one sample without an answer.
IDS, CORRECT = [0, 1, 1, None], {0: True, 1: False}
MAJ_CASES = [
    (1, 1 / 4, "maj@1: only the sample of cluster 0 is right"),
    # pairs: (0,1) tie -> 0, (0,2) tie -> 0, (0,3) -> 0, (1,2) -> 1, (1,3) -> 1, (2,3) -> 1: 3 of 6 right
    (2, 3 / 6, "maj@2 with ties going to the earlier sample"),
    # triples: (0,1,2) -> 1, (0,1,3) tie -> 0, (0,2,3) tie -> 0, (1,2,3) -> 1: 2 of 4 right
    (3, 2 / 4, "maj@3"),
    (4, 0.0, "maj@4 = cons@4: cluster 1 has two votes"),
]


@pytest.mark.parametrize("k, expected", [c[:2] for c in MAJ_CASES], ids=[c[2] for c in MAJ_CASES])
def test_maj_at_k_hand_values(k, expected):
    assert maj_at_k(IDS, CORRECT, k) == pytest.approx(expected)


def test_maj_at_k_sampled_subsets_are_seeded_and_close_to_exact():
    ids = [0, 1, 0, 2, 1, 0, None, 1, 0, 2, 1, 1]  # C(12, 6) = 924 subsets
    correct = {0: True, 1: False, 2: False}
    exact = maj_at_k(ids, correct, 6, max_subsets=1000)
    sampled = maj_at_k(ids, correct, 6, max_subsets=400, seed=3)
    assert sampled == maj_at_k(ids, correct, 6, max_subsets=400, seed=3)  # same seed, same subsets
    assert abs(sampled - exact) < 0.08


def test_cluster_correctness_takes_the_representative():
    assert cluster_correctness([None, 1, 0, 1], [False, True, False, False]) == {1: True, 0: False}


def test_clusters_follow_the_numeric_verifier():
    task = Task("toy", train=[Example("t", "1", prompt="q0")], eval=[],
                scorer=lambda a, e: normalised_match(a, e.answer))
    example = Example("e", "2", prompt="q")
    ids = cluster_answers(["2", "2.0", " 2", "3", None, "3.00", "0002"], equivalence(task, example))
    assert ids == [0, 0, 0, 1, None, 1, 0]


def test_rg_gold_is_replaced_in_the_entry():
    ex = Example("e", "5", prompt="q", meta={"entry": {"answer": "5", "question": "q"}})
    gold = as_gold(ex, "7")
    assert gold.answer == "7" and gold.meta["entry"] == {"answer": "7", "question": "q"}
    assert ex.meta["entry"]["answer"] == "5"  # the original is untouched


def test_clusters_follow_math_verify():
    pytest.importorskip("math_verify")
    from r1lab.tasks.math import math_scorer

    task = Task("math:toy", train=[Example("t", "1", prompt="q0")], eval=[], scorer=math_scorer)
    example = Example("e", "\\frac{1}{2}", prompt="q")
    ids = cluster_answers(["0.5", "1/2", "\\frac{1}{2}", "\\frac{2}{3}", "0.50"], equivalence(task, example))
    assert ids == [0, 0, 0, 1, 0]


# ---------------------------------------------------------------------------------------------------------------
# length, cost, reflection
# ---------------------------------------------------------------------------------------------------------------
def test_lengths_and_tokens_per_correct():
    lengths, correct = [10, 20, 30, 40], [True, False, True, False]
    assert length_stats(lengths, correct) == {"mean_length": 25.0, "mean_length_correct": 20.0,
                                              "mean_length_wrong": 30.0}
    assert tokens_per_correct(lengths, correct) == 50.0  # 100 tokens for 2 correct answers
    assert tokens_per_correct(lengths, [False] * 4) is None


def test_cost_per_1k_at_r1_api_prices():
    # 1,000 questions x (100 input tokens x $0.55/M + 1,000 output tokens x $2.19/M) = $0.055 + $2.19
    assert cost_per_1k(100, 1000, 0.55, 2.19) == pytest.approx(2.245)


REFLECTION_CASES = [
    ("Wait, let me check. Hmm... wait!", {"wait": 2, "let me check": 1, "hmm": 1}, "case-insensitive, repeated"),
    ("Let me verify: 2+2=4. Verified.", {"let me verify": 1}, "longest phrase wins; 'Verified' is another word"),
    ("I waited; awaiting; no-wait", {}, "whole words only"),
    ("let  me\ncheck", {"let me check": 1}, "any whitespace inside a phrase"),
]


@pytest.mark.parametrize("text, expected", [c[:2] for c in REFLECTION_CASES], ids=[c[2] for c in REFLECTION_CASES])
def test_reflection_words(text, expected):
    stats = reflection_stats([text])
    assert stats["reflection_words"] == {k: float(v) for k, v in sorted(expected.items())}
    assert stats["reflection_rate"] == sum(expected.values())


def test_reflection_rate_is_per_response_and_the_list_is_configurable():
    stats = reflection_stats(["wait wait", "fine", "hmm"], words=["wait"])
    assert stats["reflection_rate"] == pytest.approx(2 / 3)  # 2 occurrences over 3 responses
    assert stats["reflection_share"] == pytest.approx(1 / 3)
    assert stats["reflection_words"] == {"wait": pytest.approx(2 / 3)}


# ---------------------------------------------------------------------------------------------------------------
# the summary
# ---------------------------------------------------------------------------------------------------------------
def S(correct: bool, cluster, length: int, text: str = "", valid: bool = True, formatted: bool = False) -> Sample:
    return Sample(text=text, length=length, prompt_tokens=10, correct=correct, valid=valid, cluster=cluster,
                  formatted=formatted)


def test_summary_of_a_hand_built_evaluation():
    problems = [
        # problem A: 2 of 4 right; votes 0,0,1,1 -> tie, cluster 0 (right) first
        [S(True, 0, 10, "wait", formatted=True), S(True, 0, 20), S(False, 1, 30), S(False, 1, 40)],
        # problem B: 0 of 3 valid right, one sample the verifier could not score
        [S(False, 0, 50), S(False, None, 60), S(False, 1, 70), S(False, 0, 999, valid=False)],
    ]
    out = summarize(problems, ks=[1, 4], price_input=1.0, price_output=2.0)
    assert out["num_problems"] == 2 and out["num_samples"] == 8 and out["score_errors"] == 1
    assert out["pass@1"] == pytest.approx((0.5 + 0.0) / 2)
    assert out["pass@4"] == pytest.approx(1.0)  # only A has 4 valid samples
    assert out["maj@4"] == pytest.approx(1.0)  # A's tie goes to the earlier, correct cluster; B is left out
    assert out["maj@1"] == pytest.approx((2 / 4 + 0 / 3) / 2)
    assert out["mean_length"] == pytest.approx(40.0)  # (10+20+30+40+50+60+70)/7
    assert out["mean_length_correct"] == pytest.approx(15.0)
    assert out["mean_length_wrong"] == pytest.approx(50.0)
    assert out["tokens_per_correct"] == pytest.approx(280 / 2)
    assert out["format_rate"] == pytest.approx(1 / 7)
    assert out["extract_rate"] == pytest.approx(6 / 7)
    assert out["cost_per_1k"] == pytest.approx(1000 * (10 * 1.0 + 40 * 2.0) / 1e6)
    assert out["reflection_rate"] == pytest.approx(1 / 7)
    # With every cluster's members agreeing on correctness, maj@1 is pass@1 (one sample votes for itself).
    assert out["maj@1"] == pytest.approx(out["pass@1"])
