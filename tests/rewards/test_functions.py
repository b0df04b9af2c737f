"""r1lab.rewards.functions and r1lab.rewards.combine: format/tag-count/accuracy rewards and their weighted sum,
including the "verifiers never hide failures" rule (docs/architecture.md principle 6)."""

from __future__ import annotations

import math
import uuid

import pytest

from r1lab.rewards.combine import score_batch, score_completion
from r1lab.rewards.functions import REWARDS, RewardContext, accuracy_reward, format_reward, tag_count_reward
from r1lab.types import Example, RewardResult

EX = Example(id="e0", answer="5", prompt="What is 2+3?")


class StubTask:
    """Records what it was asked to score; exact-match verifier returning 1.0 / 0.0."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    def score(self, answer, example):
        self.calls.append((answer, example.id))
        return 1.0 if answer == example.answer else 0.0


def ctx(task=None, **kw) -> RewardContext:
    return RewardContext(task=task if task is not None else StubTask(), **kw)


# ---------------------------------------------------------------------------------------------------------------
# format
# ---------------------------------------------------------------------------------------------------------------
FORMAT_CASES = [
    ("<think>2+3=5</think><answer>5</answer>", 1.0, "canonical R1-Zero format"),
    ("<think>\nadd them\n</think>\n<answer>\n5\n</answer>", 1.0, "newlines inside and between blocks"),
    ("  <think>a</think> <answer>5</answer>\n", 1.0, "surrounding whitespace is allowed"),
    ("<answer>5</answer>", 0.0, "missing think"),
    ("<think> </think><answer> </answer>", 0.0, "blank blocks earn no format credit"),
    ("<think>I guess <answer>3</answer></think><answer>4</answer>", 0.0, "an answer inside the thinking is not the format"),
    ("<think>a</think>", 0.0, "missing answer"),
    ("<think>a</think><answer>5</answer> and more text", 0.0, "text after the answer"),
    ("Sure! <think>a</think><answer>5</answer>", 0.0, "text before think"),
    ("<think>a</think> so <answer>5</answer>", 0.0, "text between think and answer"),
    ("<answer>5</answer><think>a</think>", 0.0, "blocks in the wrong order"),
    ("<think></think><answer>5</answer>", 0.0, "empty think"),
    ("<think>a</think><answer></answer>", 0.0, "empty answer"),
    ("<think><think>a</think></think><answer>5</answer>", 0.0, "nested think"),
    ("<think>a</think><think>b</think><answer>5</answer>", 0.0, "duplicated think block"),
    ("<think>a</think><answer>5</answer><answer>6</answer>", 0.0, "duplicated answer block"),
    ("<think>a</think><answer><answer>5</answer></answer>", 0.0, "nested answer"),
    ("<think>a<answer>5</answer>", 0.0, "think never closed"),
    ("", 0.0, "empty completion"),
]


@pytest.mark.parametrize("text, expected", [c[:2] for c in FORMAT_CASES], ids=[c[2] for c in FORMAT_CASES])
def test_format_reward(text, expected):
    assert format_reward(text, EX, ctx()) == expected
    assert REWARDS.get("format")(text, EX, ctx()) == expected  # same function through the registry


# ---------------------------------------------------------------------------------------------------------------
# tag_count
# ---------------------------------------------------------------------------------------------------------------
TAG_CASES = [
    ("<think>a</think><answer>5</answer>", 1.0, "all four tags once"),
    ("<think>a</think> 5", 0.5, "think pair only"),
    ("<think>a", 0.25, "one opening tag"),
    ("no tags", 0.0, "nothing"),
    ("<think>a</think><think>b</think><answer>5</answer>", 0.5, "duplicated think tags earn nothing"),
    ("<answer>1</answer><answer>2</answer>", 0.0, "duplicated answer tags earn nothing"),
    ("</answer><answer></think><think>", 1.0, "order is not checked, only counts (partial credit signal)"),
]


@pytest.mark.parametrize("text, expected", [c[:2] for c in TAG_CASES], ids=[c[2] for c in TAG_CASES])
def test_tag_count_reward(text, expected):
    assert tag_count_reward(text, EX, ctx()) == pytest.approx(expected)
    assert REWARDS.get("tag_count")(text, EX, ctx()) == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------------------------
# accuracy
# ---------------------------------------------------------------------------------------------------------------
def test_accuracy_passes_extracted_answer_and_example_to_task():
    task = StubTask()
    assert accuracy_reward("<think>a</think><answer> 5 </answer>", EX, ctx(task)) == 1.0
    assert task.calls == [("5", "e0")]  # stripped answer, the right example


def test_accuracy_wrong_answer_scores_zero():
    assert accuracy_reward("<answer>6</answer>", EX, ctx()) == 0.0


def test_accuracy_nothing_extracted_scores_zero_without_calling_task():
    # No answer at all is a wrong answer (0), not a verifier failure; the task is not consulted.
    task = StubTask()
    assert accuracy_reward("I don't know", EX, ctx(task)) == 0.0
    assert task.calls == []


def test_accuracy_respects_extraction_order():
    # ctx.extraction chooses the method: with last_number only, the tag's 5 is ignored and 7 is scored.
    task = StubTask()
    assert accuracy_reward("<answer>5</answer> or 7", EX, ctx(task, extraction=("last_number",))) == 0.0
    assert task.calls == [("7", "e0")]


def test_accuracy_returns_float_of_task_score():
    class BoolTask:
        def score(self, answer, example):
            return True

    out = accuracy_reward("5", EX, ctx(BoolTask()))
    assert out == 1.0 and isinstance(out, float)


# ---------------------------------------------------------------------------------------------------------------
# score_completion / score_batch
# ---------------------------------------------------------------------------------------------------------------
def test_score_completion_weighted_total_and_breakdown():
    # accuracy 1.0 * 1.0 + format 1.0 * 0.5 + tag_count 1.0 * 0.25 = 1.75; breakdown holds the raw, unweighted scores.
    text = "<think>2+3</think><answer>5</answer>"
    res = score_completion(text, EX, {"accuracy": 1.0, "format": 0.5, "tag_count": 0.25}, ctx())
    assert isinstance(res, RewardResult)
    assert res.breakdown == {"accuracy": 1.0, "format": 1.0, "tag_count": 1.0}
    assert res.total == pytest.approx(1.75)
    assert res.valid and res.error is None


def test_score_completion_partial():
    # Wrong answer, bad format, two tags: 0*2 + 0*1 + 0.5*0.5 = 0.25.
    text = "<think>hmm</think> 6"
    res = score_completion(text, EX, {"accuracy": 2.0, "format": 1.0, "tag_count": 0.5}, ctx())
    assert res.breakdown == {"accuracy": 0.0, "format": 0.0, "tag_count": 0.5}
    assert res.total == pytest.approx(0.25)
    assert res.valid


def test_score_completion_empty_weights():
    res = score_completion("anything", EX, {}, ctx())
    assert res.total == 0 and res.breakdown == {} and res.valid


def test_score_completion_unknown_reward_is_an_error_result():
    # A typo in the weights is reported (with the registry's hint), never scored 0.
    res = score_completion("5", EX, {"acuracy": 1.0}, ctx())
    assert not res.valid and math.isnan(res.total)
    assert "acuracy" in res.error and "Did you mean 'accuracy'" in res.error


@pytest.fixture
def raising_reward():
    """A reward that raises (unless the completion is exactly "fine", which scores 0.5), registered under a unique
    name and removed afterwards (Registry has no public unregister)."""
    name = f"test_raises_{uuid.uuid4().hex}"

    @REWARDS.register(name)
    def boom(completion, example, ctx):
        if completion == "fine":
            return 0.5
        raise RuntimeError("verifier crashed")

    yield name
    REWARDS._items.pop(name, None)


def test_raising_reward_sets_error_nan_and_invalid(raising_reward):
    # docs/architecture.md principle 6: a verifier failure is surfaced (error, NaN total, valid False) so the sample
    # gets no advantage, instead of being silently scored 0 like a wrong answer.
    weights = {"format": 1.0, raising_reward: 1.0, "tag_count": 1.0}
    res = score_completion("<think>a</think><answer>5</answer>", EX, weights, ctx())
    assert res.valid is False
    assert math.isnan(res.total)
    assert res.error is not None
    assert raising_reward in res.error and "RuntimeError" in res.error and "verifier crashed" in res.error
    assert res.breakdown.get("format") == 1.0  # what was scored before the failure is kept for debugging
    assert raising_reward not in res.breakdown


def test_task_that_raises_inside_accuracy_is_surfaced():
    class BrokenTask:
        def score(self, answer, example):
            raise ValueError("bad gold answer")

    res = score_completion("<answer>5</answer>", EX, {"accuracy": 1.0}, ctx(BrokenTask()))
    assert not res.valid and math.isnan(res.total)
    assert "accuracy" in res.error and "ValueError" in res.error


def test_non_finite_score_is_an_error():
    class NanTask:
        def score(self, answer, example):
            return float("nan")

    res = score_completion("<answer>5</answer>", EX, {"accuracy": 1.0}, ctx(NanTask()))
    assert not res.valid and math.isnan(res.total) and "non-finite" in res.error


def test_score_batch_pairs_completion_i_with_example_i(raising_reward):
    ex2 = Example(id="e1", answer="7", prompt="3+4?")
    task = StubTask()
    out = score_batch(["<answer>5</answer>", "<answer>5</answer>"], [EX, ex2], {"accuracy": 1.0}, ctx(task))
    assert [r.total for r in out] == [1.0, 0.0]
    assert task.calls == [("5", "e0"), ("5", "e1")]
    # One failing sample does not invalidate its neighbours.
    out = score_batch(["fine", "crash", "fine"], [EX, ex2, EX], {raising_reward: 2.0}, ctx())
    assert [r.valid for r in out] == [True, False, True]
    assert out[0].total == 1.0 and out[2].total == 1.0 and math.isnan(out[1].total)


def test_score_batch_rejects_mismatched_lengths():
    # Silently scoring fewer completions than were generated would misalign rewards and samples.
    with pytest.raises(ValueError):
        score_batch(["a", "b"], [EX], {"accuracy": 1.0}, ctx())


@pytest.fixture
def batched_reward():
    """A batched reward: 1.0 for "good", the exception object for "bad", and the whole call raises on "explode"."""
    from r1lab.rewards.functions import batched

    name = f"test_batched_{uuid.uuid4().hex}"
    calls = []

    @REWARDS.register(name)
    @batched
    def scorer(completions, examples, ctx):
        calls.append(list(completions))
        if "explode" in completions:
            raise RuntimeError("pool died")
        if "short" in completions:
            return [1.0]
        return [1.0 if c == "good" else ValueError("unparseable") if c == "bad" else 0.0 for c in completions]

    yield name, calls
    REWARDS._items.pop(name, None)


def test_batched_reward_is_called_once_per_batch(batched_reward):
    name, calls = batched_reward
    out = score_batch(["good", "meh", "good"], [EX] * 3, {name: 0.5, "tag_count": 1.0}, ctx())
    assert calls == [["good", "meh", "good"]]  # one call for the whole batch, in order
    assert [r.total for r in out] == [0.5, 0.0, 0.5]
    assert out[0].breakdown == {name: 1.0, "tag_count": 0.0}


def test_batched_reward_exception_in_list_fails_only_that_sample(batched_reward):
    name, _ = batched_reward
    out = score_batch(["good", "bad", "good"], [EX] * 3, {name: 1.0}, ctx())
    assert [r.valid for r in out] == [True, False, True]
    assert "ValueError" in out[1].error and "unparseable" in out[1].error and math.isnan(out[1].total)


def test_batched_reward_that_raises_fails_every_sample(batched_reward):
    name, _ = batched_reward
    out = score_batch(["good", "explode"], [EX] * 2, {name: 1.0}, ctx())
    assert all(not r.valid and "pool died" in r.error for r in out)


def test_batched_reward_with_wrong_number_of_scores_fails_every_sample(batched_reward):
    # A short list would otherwise shift every later reward onto the wrong sample.
    name, _ = batched_reward
    out = score_batch(["short", "good"], [EX] * 2, {name: 1.0}, ctx())
    assert all(not r.valid and "1 scores for 2 completions" in r.error for r in out)


def test_reward_context_params_of_returns_a_copy():
    c = ctx(params={"cosine": {"max_len": 10}})
    p = c.params_of("cosine")
    p["max_len"] = 99
    assert c.params_of("cosine") == {"max_len": 10} and c.params_of("format") == {}
