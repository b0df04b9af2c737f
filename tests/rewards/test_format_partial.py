"""The partial-credit format reward against the strict one, on hand-written completions."""

import pytest

from r1lab.rewards.functions import REWARDS, format_partial_reward, format_reward

CASES = [  # (completion, format_partial by hand, strict format)
    ("<think>3 + 4 = 7</think> <answer>7</answer>", 1.0, 1.0),
    ("  <think>3 + 4 = 7</think>\n<answer>7</answer>\n", 1.0, 1.0),
    ("<think>3 + 4 = 7</think> <answer>7</answer> I hope this helps.", 0.75, 0.0),  # text after the answer
    ("<think>3 + 4 = 7</think> So: <answer>7</answer>", 0.75, 0.0),  # text between the blocks
    ("<think>3 + 4 = 7</think> The answer is 7.", 0.5, 0.0),  # thinks, never answers in tags
    ("<think>3 + 4 = 7</think> <answer> </answer>", 0.5, 0.0),  # blank answer
    ("<think>3 + 4 is", 0.25, 0.0),  # cut off while thinking
    ("<think></think> <answer>7</answer>", 0.25, 0.0),  # blank thinking
    ("<think>a</think><think>b</think><answer>7</answer>", 0.0, 0.0),  # two think blocks
    ("The answer is <answer>7</answer>", 0.0, 0.0),
    ("7", 0.0, 0.0),
    ("", 0.0, 0.0),
]


@pytest.mark.parametrize("completion,partial,strict", CASES)
def test_format_partial_by_hand(completion, partial, strict):
    assert format_partial_reward(completion, None, None) == partial
    assert format_reward(completion, None, None) == strict


def test_full_partial_credit_exactly_when_strict():
    for completion, _, strict in CASES:
        assert (format_partial_reward(completion, None, None) == 1.0) == (strict == 1.0)


def test_registered():
    assert REWARDS.get("format_partial") is format_partial_reward
