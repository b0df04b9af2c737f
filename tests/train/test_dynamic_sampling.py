"""DAPO dynamic sampling (r1lab.train.dynamic_sampling): which groups are informative, how rounds refill the batch,
and that merged batches keep every row's tokens and masks."""

from __future__ import annotations

import torch

from r1lab.train.dynamic_sampling import collect_informative, informative_groups, select_groups
from r1lab.types import RewardResult, RolloutBatch


def test_informative_groups():
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [2.0, 9.0, 2.0], [0.5, 0.5, 0.5]])
    valid = torch.tensor([[True] * 3, [True] * 3, [True, False, True], [True, True, False]])
    # row 2: only valid rewards count (2, 2 -> all equal); row 3: equal among the valid ones
    assert informative_groups(rewards, valid).tolist() == [False, True, False, False]
    assert informative_groups(torch.tensor([[0.0, 1.0]]), torch.tensor([[True, False]])).tolist() == [False]


def _batch(prompt_len: int, completion_len: int, groups: int, G: int, tag: int) -> RolloutBatch:
    B = groups * G
    ids = torch.arange(B)[:, None] + 100 * tag
    return RolloutBatch(prompt_ids=ids.expand(B, prompt_len).clone(), prompt_mask=torch.ones(B, prompt_len, dtype=torch.long),
                        completion_ids=(ids + 1000).expand(B, completion_len).clone(),
                        completion_mask=torch.ones(B, completion_len), truncated=torch.zeros(B, dtype=torch.bool),
                        texts=[f"{tag}-{i}" for i in range(B)], group_size=G,
                        rollout_logprobs=-torch.ones(B, completion_len))


def test_select_groups_pads_prompts_left_and_completions_right():
    a, b = _batch(3, 2, groups=2, G=2, tag=1), _batch(5, 4, groups=2, G=2, tag=2)
    merged = select_groups([(a, [1]), (b, [0, 1])])
    assert merged.texts == ["1-2", "1-3", "2-0", "2-1", "2-2", "2-3"]
    assert merged.prompt_ids.shape == (6, 5) and merged.completion_ids.shape == (6, 4)
    assert merged.prompt_mask[0].tolist() == [0, 0, 1, 1, 1]  # left padding of the shorter prompts
    assert merged.completion_mask[0].tolist() == [1, 1, 0, 0]  # right padding of the shorter completions
    assert merged.prompt_ids[0, 2:].tolist() == [102, 102, 102] and merged.completion_ids[0, :2].tolist() == [1102] * 2
    assert merged.rollout_logprobs[0].tolist() == [-1, -1, 0, 0]
    assert torch.equal(merged.completion_ids[2:], b.completion_ids)


def _result(x: float) -> RewardResult:
    return RewardResult(total=float(x), breakdown={})


def test_collect_informative_refills_until_enough_groups():
    G = 2
    # round 0: groups [1,1] [0,1] [0,0]; round 1: [0,1] [1,0] [1,1]; need 3 informative -> rounds 2, surplus cut
    rounds = [[(1, 1), (0, 1), (0, 0)], [(0, 1), (1, 0), (1, 1)], [(0, 1)] * 3]
    calls = []

    def rollout_round(r):
        calls.append(r)
        results = [_result(x) for group in rounds[r] for x in group]
        return [f"ex{r}.{i}" for i in range(3)], _batch(2, 2, 3, G, tag=r), results

    examples, batch, results, metrics = collect_informative(rollout_round, prompts=3, max_rounds=3)
    assert calls == [0, 1]
    assert examples == ["ex0.1", "ex1.0", "ex1.1"]
    assert batch.texts == ["0-2", "0-3", "1-0", "1-1", "1-2", "1-3"]
    assert [r.total for r in results] == [0, 1, 0, 1, 1, 0]
    assert metrics == {"sampling/rounds": 2, "sampling/generated_groups": 6, "sampling/informative_groups": 3,
                       "sampling/discarded_groups": 3, "sampling/generated_tokens": 24.0}


def test_collect_informative_stops_at_the_round_cap():
    def rollout_round(r):
        return ["a", "b"], _batch(2, 2, 2, 2, tag=r), [_result(x) for x in (1, 1, 0, 1)]

    examples, batch, _, metrics = collect_informative(rollout_round, prompts=4, max_rounds=2)
    assert examples == ["b", "b"] and metrics["sampling/rounds"] == 2 and metrics["sampling/discarded_groups"] == 2
    assert batch.completion_ids.shape[0] == 4

    def uninformative(r):
        return ["a"], _batch(2, 2, 1, 2, tag=r), [_result(1.0), _result(1.0)]

    examples, batch, _, metrics = collect_informative(uninformative, prompts=1, max_rounds=3)
    assert examples == ["a"] and metrics["sampling/informative_groups"] == 0 and metrics["sampling/rounds"] == 3
