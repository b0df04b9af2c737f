"""r1lab.algos.preference: the Bradley-Terry pairwise loss (hand values, a loop oracle, gradients, errors)."""

from __future__ import annotations

import math

import pytest
import torch

from r1lab.algos.preference import bradley_terry_loss


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def loop_oracle(chosen: list[float], rejected: list[float], margins: list[float]) -> tuple[float, float]:
    """The obvious per-pair loop: -log(1 / (1 + exp(-(c - r - m)))) averaged; accuracy with ties as 1/2."""
    losses, wins = [], []
    for c, r, m in zip(chosen, rejected, margins):
        losses.append(-math.log(1.0 / (1.0 + math.exp(-(c - r - m)))))
        wins.append(1.0 if c > r else 0.5 if c == r else 0.0)
    return sum(losses) / len(losses), sum(wins) / len(wins)


def test_hand_values():
    # diff = c - r: 0 -> -log(1/2) = log 2 = 0.693147; ln(3) -> -log(3/4) = 0.287682; -ln(3) -> -log(1/4) = 1.386294
    chosen, rejected = _t([1.0, math.log(3.0), 0.0]), _t([1.0, 0.0, math.log(3.0)])
    loss, m = bradley_terry_loss(chosen, rejected)
    expected = (math.log(2) + math.log(4 / 3) + math.log(4)) / 3
    assert float(loss) == pytest.approx(expected, abs=1e-12)
    assert m["loss"] == pytest.approx(expected, abs=1e-12)
    assert m["accuracy"] == pytest.approx((0.5 + 1 + 0) / 3)  # a tie, a win, a loss
    assert m["margin"] == pytest.approx(0.0, abs=1e-12)  # ln 3 and -ln 3 cancel
    assert m["chosen"] == pytest.approx((1 + math.log(3)) / 3)
    assert m["rejected"] == pytest.approx((1 + math.log(3)) / 3)


def test_margin_hand_value():
    # diff 2, margin 2 -> the pair counts as a tie for the loss: log 2; it is still ranked right (accuracy 1).
    loss, m = bradley_terry_loss(_t([3.0]), _t([1.0]), margin=2.0)
    assert float(loss) == pytest.approx(math.log(2), abs=1e-12)
    assert m["accuracy"] == 1.0
    # Per-pair margins (Llama 2 eq. 2): diffs (1, 1), margins (0, 1) -> (log(1 + e^-1) + log 2) / 2.
    loss, _ = bradley_terry_loss(_t([1.0, 1.0]), _t([0.0, 0.0]), margin=_t([0.0, 1.0]))
    assert float(loss) == pytest.approx((math.log(1 + math.exp(-1)) + math.log(2)) / 2, abs=1e-12)


def test_matches_loop_oracle_on_random_pairs():
    g = torch.Generator().manual_seed(0)
    chosen, rejected = torch.randn(64, generator=g, dtype=torch.float64) * 3, torch.randn(64, generator=g, dtype=torch.float64) * 3
    rejected[:4] = chosen[:4]  # some exact ties
    margins = torch.rand(64, generator=g, dtype=torch.float64)
    loss, m = bradley_terry_loss(chosen, rejected, margin=margins)
    want_loss, want_acc = loop_oracle(chosen.tolist(), rejected.tolist(), margins.tolist())
    assert float(loss) == pytest.approx(want_loss, rel=1e-12)
    assert m["accuracy"] == pytest.approx(want_acc, abs=1e-12)


def test_gradient_is_sigmoid_of_negative_diff():
    # d/dc [-log sigmoid(c - r)] = -(1 - sigmoid(c - r)) = -sigmoid(r - c); per pair divided by N (mean).
    chosen = _t([2.0, -1.0]).requires_grad_()
    rejected = _t([0.0, 1.0]).requires_grad_()
    loss, _ = bradley_terry_loss(chosen, rejected)
    loss.backward()
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    torch.testing.assert_close(chosen.grad, _t([-sig(-2.0) / 2, -sig(2.0) / 2]))
    torch.testing.assert_close(rejected.grad, -chosen.grad)


def test_stable_for_very_confident_scores():
    # A naive log(sigmoid(-100)) underflows to log(0) = -inf; logsigmoid gives the exact 100 + log(1 + e^-100).
    loss, m = bradley_terry_loss(_t([-50.0]), _t([50.0]))
    assert float(loss) == pytest.approx(100.0, rel=1e-12)
    assert m["accuracy"] == 0.0


@pytest.mark.parametrize("chosen,rejected", [
    ([1.0, 2.0], [1.0]),            # different lengths
    ([[1.0]], [[0.0]]),             # not (N,)
    ([], []),                       # no pairs
])
def test_bad_shapes_raise(chosen, rejected):
    with pytest.raises(ValueError):
        bradley_terry_loss(_t(chosen), _t(rejected))
