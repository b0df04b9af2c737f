"""r1lab.rewards.mathcheck: the math-verify checker, pinned case by case, its worker pool (external timeout, a
stuck or dead worker replaced) and the batched ``math`` reward.

Cases marked "issue N" were reported at huggingface/Math-Verify; each pins the behaviour we chose.
"""

from __future__ import annotations

import math
import os
import re
import signal
import time
from pathlib import Path

import pytest

from r1lab.rewards.combine import score_batch
from r1lab.rewards.functions import REWARDS, RewardContext, is_batched
from r1lab.rewards.mathcheck import (
    MathVerifierPool,
    MathVerifyError,
    MathVerifyTimeout,
    is_bare_answer,
    normalise,
    prediction_of,
    shared_pool,
    verify_math,
)
from r1lab.types import Example

# (gold, prediction, expected score, why)
CASES = [
    # --- math-verify false positives we correct -----------------------------------------------------------------
    (r"\frac{1}{2004!}", r"$\frac{1}{2006!}$", 0.0, "issue 14: tiny exact values differ (math-verify chops to 0)"),
    (r"\frac{1}{2^{99}}", r"\boxed{\frac{1}{2^{98}}}", 0.0, "issue 14: 1/2^99 != 1/2^98"),
    (r"\frac{2^{2005}+1}{3 \cdot 2^{2006}}", r"\boxed{\frac{1}{3 \cdot 2^{2006}}}", 0.0, "issue 14: huge exact values"),
    (r"\frac{1}{2004!}", r"\boxed{\frac{1}{2004!}}", 1.0, "the exact check still accepts the same value"),
    (r"1 - \frac{1}{\mathrm{e}}", r"\boxed{1 + \frac{1}{\mathrm{e}}}", 0.0,
     "issue 14: \\mathrm{e} no longer truncates to 1"),
    (r"1 - \frac{1}{\mathrm{e}}", r"\boxed{1 - e^{-1}}", 1.0, "\\mathrm{e} is Euler's number"),
    (r"4", r"\boxed{4\sqrt(2)}", 0.0, "issue 41: \\sqrt(2) is read as \\sqrt{2}, not dropped"),
    (r"4\sqrt{2}", r"\boxed{4\sqrt(2)}", 1.0, "... and equals 4\\sqrt{2}"),
    (r"3x+4y+14=0", r"\boxed{3x-y+13=0}", 0.0, "issue 60: different lines (plain text read both as 0)"),
    # --- mixed numbers: whole number + proper fraction is their sum ---------------------------------------------
    (r"1", r"1 1/4", 0.0, "issue 34: plain '1 1/4' is not 1"),
    (r"\frac{5}{4}", r"1 1/4", 1.0, "plain mixed number = 5/4"),
    (r"\frac54", r"\boxed{1 1/4}", 1.0, "plain mixed number inside a box"),
    (r"\frac{5}{2}", r"\boxed{2\frac{1}{2}}", 1.0, "LaTeX mixed fraction 2\\frac{1}{2} = 5/2"),
    (r"-\frac{5}{2}", r"\boxed{-2\frac{1}{2}}", 1.0, "negative mixed fraction: the sign covers both parts"),
    (r"2.5", r"\boxed{2\frac12}", 1.0, "issue 34: short \\frac12 form, decimal gold"),
    (r"2\frac{1}{2}", r"\boxed{2.5}", 1.0, "mixed fraction as the gold"),
    (r"\frac{2x}{y}", r"\boxed{2\frac{x}{y}}", 1.0, "with letters it is a product, not a mixed number"),
    # --- \text{} --------------------------------------------------------------------------------------------------
    (r"13", r"\boxed{\text{13}}", 1.0, "issue 37: \\text{13} is 13"),
    (r"\text{13}", r"13", 1.0, "issue 37, gold side"),
    (r"18", r"\boxed{18 \text{ cm}}", 1.0, "a unit in text is ignored"),
    (r"18", r"\boxed{\$18}", 1.0, "a currency sign is ignored"),
    # --- no box: math-verify's search, anchored answer first, else the last expression -----------------------------
    (r"5", "I think it's 3. Wait, no: 5", 1.0, "no box: the last number counts"),
    (r"3", "I think it's 3. Wait, no: 5", 0.0, "no box: an earlier number does not"),
    (r"\frac{1}{2}", "The answer is 1/2.", 1.0, "no box: a plain fraction after 'answer'"),
    (r"73", "Final Answer: **73**", 1.0, "issue 76: markdown bold around the answer"),
    (r"7", "so the final answer is 7 and the check gives 8", 1.0, "'final answer is' outranks a later number"),
    (r"5", "", 0.0, "an empty completion is wrong, not an error"),
    # --- several boxes, answer tags -----------------------------------------------------------------------------------
    (r"4", r"First \boxed{3}, on reflection \boxed{4}", 1.0, "the last box wins"),
    (r"3", r"First \boxed{3}, on reflection \boxed{4}", 0.0, "an earlier box does not count"),
    (r"4", r"<think>maybe \boxed{3}</think><answer>4</answer>", 1.0, "the <answer> block outranks boxes elsewhere"),
    # --- percentages: math-verify accepts X% for X and for X/100, but only when % is written -----------------------
    (r"50", r"\boxed{50\%}", 1.0, "percent sign against the bare number"),
    (r"0.5", r"\boxed{50\%}", 1.0, "percent against the fraction"),
    (r"50\%", r"\boxed{50}", 1.0, "percent gold, bare prediction"),
    (r"50", r"\boxed{0.5}", 0.0, "no percent sign written: 0.5 is not 50"),
    # --- intervals and sets ------------------------------------------------------------------------------------------
    (r"(1,2)", r"\boxed{(1,2)}", 1.0, "open interval"),
    (r"[1,2)", r"\boxed{[1,2]}", 0.0, "closed end differs"),
    (r"\{1,2\}", r"\boxed{\{2,1\}}", 1.0, "sets ignore order"),
    (r"\pm 2021", r"\boxed{2021}", 0.0, "issue 14: one of the two roots is not the answer"),
    (r"n=2,3,4", r"\boxed{n=1,2,3}", 0.0, "issue 14: different solution sets"),
    (r"D = (0, 1)", r"\boxed{D = (0, 1.5)}", 0.0, "issue 14: different intervals"),
    # --- equations -------------------------------------------------------------------------------------------------
    (r"3", r"\boxed{x=3}", 1.0, "an assignment's value is the answer"),
    (r"x=3", r"\boxed{3}", 1.0, "bare value against an assignment gold"),
    (r"2x+4y-3=0", r"\boxed{y = -\frac{1}{2}x + \frac{3}{4}}", 1.0, "issue 26: equivalent lines"),
    (r"x^2+2x+1", r"\boxed{(x+1)^2}", 1.0, "symbolic equality"),
    # --- fractions and decimals --------------------------------------------------------------------------------------
    (r"\frac12", r"0.5", 1.0, "bare LaTeX gold, decimal prediction"),
    (r"0.5", r"\frac12", 1.0, "bare LaTeX prediction"),
    (r"\frac{1}{3}", r"\boxed{0.333333}", 1.0, "a float is compared rounded to 6 decimals"),
    (r"\frac{1}{3}", r"\boxed{0.33}", 0.0, "... and 2 decimals are not enough"),
    (r"\sqrt{2}/2", r"\boxed{\frac{1}{\sqrt{2}}}", 1.0, "exact irrational values that are equal"),
    (r"\frac{\sqrt{3}}{2}", r"\boxed{\frac{\sqrt{2}}{2}}", 0.0, "exact irrational values that differ"),
    # --- thousands separators and signs ------------------------------------------------------------------------------
    (r"1234", r"\boxed{1,234}", 1.0, "thousands separator in a box"),
    (r"1,234", r"1234", 1.0, "thousands separator in the gold"),
    (r"1234", "The total is 1,234 dollars.", 1.0, "thousands separator in prose"),
    (r"-3", r"\boxed{3}", 0.0, "the sign matters"),
    (r"-3", r"\boxed{- 3}", 1.0, "a space after the minus sign"),
    (r"-3", "so x = -3", 1.0, "negative number in prose"),
    # --- multiple choice ----------------------------------------------------------------------------------------------
    (r"\text{(B)}", r"\boxed{B}", 1.0, "a choice letter, with or without \\text{()}"),
]


@pytest.fixture(scope="module")
def pool():
    """The process-wide pool with default settings: the one the reward, verify_math and math tasks use."""
    return shared_pool()


@pytest.fixture(scope="module")
def case_scores(pool):
    """Every case scored in one batch (the workers share the load), checked one by one below."""
    return pool.score([(prediction, gold) for gold, prediction, _, _ in CASES])


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c[3] for c in CASES])
def test_case(case_scores, index):
    gold, prediction, expected, _ = CASES[index]
    assert case_scores[index] == expected, (gold, prediction)


def test_repeated_answers_in_a_batch_each_get_their_score(pool):
    """A GRPO group repeats answers; each distinct (answer, gold) is checked once and its score fanned out."""
    batch = [(r"\boxed{2}", "2"), ("3", "2"), (r"so \boxed{2}", "2"), (r"\boxed{2}", "3"), (r"\boxed{2}", "2")]
    assert pool.score(batch) == [1.0, 0.0, 1.0, 0.0, 1.0]


def test_unparseable_gold_is_an_error_not_a_zero(pool):
    (result,) = pool.score([("5", r"\frac{")])
    assert isinstance(result, MathVerifyError) and "gold answer" in str(result)


# (text, normalised, why)
NORMALISE_CASES = [
    ("1 1/4", "5/4", "mixed number"),
    ("-2 1/2", "-5/2", "negative mixed number"),
    ("4 10/3", "4 10/3", "improper fraction part: not a mixed number"),
    ("1 1/45", "46/45", "the whole denominator is read"),
    ("3.5 1/2", "3.5 1/2", "a decimal is not a whole part"),
    ("x^2 1/2", "x^2 1/2", "an exponent is not a whole part"),
    (r"4\sqrt(2)", r"4\sqrt{2}", "\\sqrt with parentheses"),
    (r"\boxed{\$18}", r"\boxed{18}", "currency sign"),
    (r"\mathrm{e}^{2}", r"e^{2}", "roman single letter"),
]


@pytest.mark.parametrize("text, expected", [c[:2] for c in NORMALISE_CASES], ids=[c[2] for c in NORMALISE_CASES])
def test_normalise(text, expected):
    assert normalise(text) == expected


# (completion, text handed to math-verify, read as a bare answer, why)
PREDICTION_CASES = [
    (r"<think>\boxed{3}</think><answer>The result is \boxed{4}.</answer>", "4", True, "answer block, box unwrapped"),
    ("<answer>x = 5</answer>", "x = 5", True, "answer block without a box"),
    (r"so \boxed{1} or rather \boxed{\frac{3}{4}}", r"\frac{3}{4}", True, "last box"),
    ("The sum is 12.", "The sum is 12.", False, "prose goes to math-verify's search"),
    (r"\frac12", r"\frac12", True, "an extracted bare answer"),
    ("$x$ is 4", "$x$ is 4", False, "delimited LaTeX is not bare"),
]


@pytest.mark.parametrize("completion, text, bare", [c[:3] for c in PREDICTION_CASES],
                         ids=[c[3] for c in PREDICTION_CASES])
def test_prediction_of(completion, text, bare):
    assert prediction_of(completion) == (text, bare)
    assert is_bare_answer(text) == bare


def test_verify_math_single_call(pool):
    assert verify_math(r"so \boxed{\frac{1}{2}}", "0.5") == 1.0
    assert verify_math("0.25", r"\frac{1}{2}") == 0.0
    with pytest.raises(MathVerifyError):
        verify_math("1", r"\frac{")


def test_pathological_input_times_out_and_the_pool_recovers():
    """A power tower (9^387420489 alone has 370 million digits) overruns the per-item limit: that item is a
    timeout error, the others in the batch are scored, the stuck worker is replaced and the pool keeps working."""
    timeout = 1.0
    with MathVerifierPool(workers=1, timeout=timeout) as small:
        small.score([("1", "1")])  # start the worker outside the timed part
        start = time.monotonic()
        results = small.score([(r"\boxed{2}", "2"), (r"\boxed{9^{9^{9^{9}}}}", "1"), (r"\boxed{3}", "2")])
        elapsed = time.monotonic() - start
        assert results[0] == 1.0 and results[2] == 0.0
        assert isinstance(results[1], MathVerifyTimeout)
        assert elapsed < timeout + 20  # the replacement worker's start-up (~1 s idle) is the rest
        assert small.restarts == 1
        assert small.score([(r"\boxed{\frac{1}{2}}", "0.5")]) == [1.0]


def test_a_dead_worker_is_replaced(pool):
    """A worker that died while idle is replaced without failing the next batch's items."""
    pool.score([("1", "1")])  # make sure the workers are up
    pid, restarts = pool.pids[0], pool.restarts
    os.kill(pid, signal.SIGKILL)
    while Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":  # wait until it is really gone (a zombie)
        time.sleep(0.01)
    assert pool.score([("7", "7"), ("8", "7"), ("7.0", "7")]) == [1.0, 0.0, 1.0]
    assert pool.restarts == restarts + 1


def _ctx(params=None) -> RewardContext:
    return RewardContext(task=None, params=params or {})


def test_math_reward_is_registered_and_batched(pool):
    fn = REWARDS.get("math")
    assert is_batched(fn)
    examples = [Example(id=str(i), answer=a) for i, a in enumerate([r"\frac{1}{2}", "12", "x=3"])]
    completions = [r"<think>half</think><answer>\boxed{0.5}</answer>", "I get 13.", r"Therefore \boxed{3}"]
    assert fn(completions, examples, _ctx()) == [1.0, 0.0, 1.0]


def test_math_reward_failure_is_recorded_not_scored_zero(pool):
    examples = [Example(id="good", answer="2"), Example(id="bad gold", answer=r"\frac{")]
    results = score_batch([r"\boxed{2}", r"\boxed{2}"], examples, {"math": 1.0}, _ctx())
    assert results[0].total == 1.0 and results[0].valid
    assert not results[1].valid and math.isnan(results[1].total) and "math: MathVerifyError" in results[1].error


# (params, message, why)
BAD_PARAMS = [
    ({"timeout": 0}, "reward 'math': parameter 'timeout' must be a number of seconds > 0, got 0", "zero timeout"),
    ({"workers": 1.5}, "reward 'math': parameter 'workers' must be an integer >= 1, got 1.5", "fractional workers"),
    ({"memory_mb": True}, "reward 'math': parameter 'memory_mb' must be an integer >= 0", "a boolean is no number"),
    ({"max_len": 10}, "reward 'math': unknown parameter 'max_len'; allowed: timeout, workers, memory_mb",
     "unknown key"),
]


@pytest.mark.parametrize("params, message", [c[:2] for c in BAD_PARAMS], ids=[c[2] for c in BAD_PARAMS])
def test_math_reward_params_are_validated(params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        REWARDS.get("math")(["1"], [Example(id="0", answer="1")], _ctx({"math": params}))
