"""The Countdown check: each given number exactly once, the target's value, and nothing but arithmetic is run."""

import pytest

from r1lab.rewards.countdown import countdown_score


@pytest.mark.parametrize("answer, numbers, target, score", [
    ("44 + 19 - 35", [44, 19, 35], 28, 1.0),
    ("(44 - 35) * 19 / 19", [44, 35, 19], 9, 0.0),  # 19 used twice, 44 and 35 once: not the given numbers
    ("44 + 19 - 35 = 28", [44, 19, 35], 28, 1.0),  # an equation: either side may be the expression
    ("28 = 44 + 19 - 35", [44, 19, 35], 28, 1.0),
    ("(12 - 3 * 2)", [12, 3, 2], 6, 1.0),
    ("12 / (3 - 1) * 1", [12, 3, 1, 1], 6, 1.0),
    ("3 \\times 8 \\times 1", [3, 8, 1], 24, 1.0),  # LaTeX and typographic operators
    ("3 × 8 ÷ 1", [3, 8, 1], 24, 1.0),
    ("7 / 2 + 2 / 4", [7, 2, 2, 4], 4, 1.0),  # exact fractions: 3.5 + 0.5
    ("44 + 19", [44, 19, 35], 63, 0.0),  # a number left unused
    ("28", [44, 19, 35], 28, 0.0),
    ("2 ** 3", [2, 3], 8, 0.0),  # only + - * /
    ("5 / (2 - 2)", [5, 2, 2], 1, 0.0),  # division by zero is not an answer
    ("__import__('os').getcwd()", [1], 1, 0.0),
    ("", [1], 1, 0.0),
])
def test_countdown_score(answer, numbers, target, score):
    assert countdown_score(answer, numbers, target) == score
