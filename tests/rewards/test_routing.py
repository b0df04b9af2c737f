"""rewards.apply_to: rule rewards for verifiable examples, a reward model for general ones (R1's last RL stage),
with hand-computed totals and the GRPO logs' per-reward means over the samples each reward applied to."""

from __future__ import annotations

import pytest
import torch

from r1lab.config import ConfigError, GRPOConfig, load_config
from r1lab.rewards.combine import applies, score_batch
from r1lab.rewards.functions import REWARDS, RewardContext, batched
from r1lab.types import Example, RewardResult, RolloutBatch

VERIFIABLE = Example(id="v", answer="5", prompt="What is 2+3?")
GENERAL = Example(id="g", answer=None, prompt="Give a tip for studying.")
EMPTY_ANSWER = Example(id="e", answer="", prompt="Say hi.")  # the built-in general file writes answer ""


class StrictTask:
    """Exact-match verifier that refuses examples without an answer, like the general task's scorer."""

    def score(self, answer, example):
        if example.answer is None:
            raise ValueError("no verifiable answer")
        return 1.0 if answer == example.answer else 0.0


SEEN: list[str] = []
FAKE_RM = "test_routing_fake_rm"
WEIGHTS = {"accuracy": 1.0, "format": 0.5, FAKE_RM: 2.0}
ROUTES = {"accuracy": "verifiable", FAKE_RM: "general"}
GOOD = "<think>2+3=5</think><answer>5</answer>"


@pytest.fixture
def fake_rm():
    """Stands in for the reward model: 0.5 per word of the completion; records which examples it saw."""

    @REWARDS.register(FAKE_RM)
    @batched
    def fake_reward_model(completions, examples, ctx):
        SEEN.extend(e.id for e in examples)
        return [0.5 * len(c.split()) for c in completions]

    SEEN.clear()
    yield
    REWARDS._items.pop(FAKE_RM, None)


@pytest.mark.parametrize("scope,example,expected", [
    ("all", GENERAL, True), ("verifiable", VERIFIABLE, True), ("verifiable", GENERAL, False),
    ("verifiable", EMPTY_ANSWER, False),  # an empty answer is no answer
    ("general", GENERAL, True), ("general", EMPTY_ANSWER, True), ("general", VERIFIABLE, False),
])
def test_applies(scope, example, expected):
    assert applies(scope, example) is expected


def test_routed_totals_and_breakdowns(fake_rm):
    completions = [GOOD, "the sum is 7", GOOD, "Read in short blocks."]
    examples = [VERIFIABLE, VERIFIABLE, GENERAL, GENERAL]
    results = score_batch(completions, examples, WEIGHTS, RewardContext(task=StrictTask()), apply_to=ROUTES)
    assert all(r.valid for r in results)  # the strict verifier never saw a general example
    # 0: accuracy 1 (answer tag "5") + 0.5 x format 1                           = 1.5
    assert results[0].total == pytest.approx(1.5) and results[0].breakdown == {"accuracy": 1.0, "format": 1.0}
    # 1: accuracy 0 (last number 7) + 0.5 x format 0                           = 0
    assert results[1].total == 0.0 and results[1].breakdown == {"accuracy": 0.0, "format": 0.0}
    # 2: 0.5 x format 1 + 2 x fake RM (one "word": the tags and text hold no space) 2 x 0.5 = 1.5
    assert results[2].total == pytest.approx(1.5)
    assert results[2].breakdown == {"format": 1.0, "test_routing_fake_rm": 0.5}
    # 3: 0.5 x format 0 + 2 x fake RM (4 words) 2 x 2.0                        = 4.0
    assert results[3].total == pytest.approx(4.0)
    assert results[3].breakdown == {"format": 0.0, "test_routing_fake_rm": 2.0}
    assert SEEN == ["g", "g"]  # the reward model ran on the general examples only


def test_without_routing_every_reward_scores_every_sample(fake_rm):
    results = score_batch([GOOD, GOOD], [VERIFIABLE, GENERAL], WEIGHTS, RewardContext(task=StrictTask()))
    # 1 + 0.5 + 2 x 0.5 = 2.5 for the verifiable one; the strict verifier fails the general one (no silent 0)
    assert results[0].total == pytest.approx(2.5)
    assert not results[1].valid and "accuracy: ValueError" in results[1].error
    assert SEEN == ["v", "g"]


def test_no_applicable_reward_scores_zero():
    results = score_batch(["x"], [GENERAL], {"accuracy": 1.0}, RewardContext(task=StrictTask()),
                          apply_to={"accuracy": "verifiable"})
    assert results[0].valid and results[0].total == 0.0 and results[0].breakdown == {}


def test_grpo_logs_means_over_the_samples_a_reward_applied_to():
    from r1lab.train.grpo_metrics import rollout_metrics as _rollout_metrics, row_records as _row_records

    results = [RewardResult(1.5, {"accuracy": 1.0, "format": 1.0}), RewardResult(0.0, {"accuracy": 0.0, "format": 0.0}),
               RewardResult(1.5, {"format": 1.0, "rm": 0.5}), RewardResult(4.0, {"format": 0.0, "rm": 2.0})]
    batch = RolloutBatch(prompt_ids=torch.zeros(4, 1, dtype=torch.long), prompt_mask=torch.ones(4, 1, dtype=torch.long),
                         completion_ids=torch.zeros(4, 3, dtype=torch.long), completion_mask=torch.ones(4, 3),
                         truncated=torch.zeros(4, dtype=torch.bool), texts=[""] * 4, group_size=2)
    examples = [Example(id=str(i), prompt="q", answer="1") for i in range(4)]
    metrics = _rollout_metrics(_row_records(batch, results, examples, torch.zeros(4)), batch.group_size)
    assert metrics["reward/accuracy"] == pytest.approx(0.5)  # (1 + 0) / 2 verifiable samples
    assert metrics["reward/rm"] == pytest.approx(1.25)  # (0.5 + 2) / 2 general samples
    assert metrics["reward/format"] == pytest.approx(0.5)  # all four
    assert metrics["reward/mean"] == pytest.approx(7.0 / 4)


@pytest.mark.parametrize("routes,fragment", [
    ({"accuracy": "rules"}, "allowed: all, verifiable, general"),
    ({"format": "general"}, "'format' is not in rewards.weights"),
])
def test_apply_to_is_validated(routes, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(GRPOConfig, None, [f"rewards.apply_to={routes}"])
    assert "rewards.apply_to" in str(err.value) and fragment in str(err.value)
