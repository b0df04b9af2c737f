"""Rollout/trainer mismatch corrections, against hand-computed weights and a per-token loop."""

from __future__ import annotations

import math

import pytest
import torch

from r1lab.algos import clipped_policy_loss
from r1lab.algos.rollout_correction import ROLLOUT_CORRECTIONS, mismatch_sums


def test_tis_caps_the_ratio_by_hand():
    train = torch.log(torch.tensor([[0.5, 0.2, 0.9]]))
    rollout = torch.log(torch.tensor([[0.25, 0.4, 0.3]]))  # ratios 2, 0.5, 3
    weights, capped = ROLLOUT_CORRECTIONS.get("tis")(train, rollout, cap=2.5)
    torch.testing.assert_close(weights, torch.tensor([[2.0, 0.5, 2.5]]))
    assert capped.tolist() == [[False, False, True]]


def test_icepop_drops_tokens_outside_the_band_by_hand():
    train = torch.log(torch.tensor([[0.5, 0.2, 0.9, 0.1]]))
    rollout = torch.log(torch.tensor([[0.25, 0.4, 0.3, 0.35]]))  # ratios 2, 0.5, 3, 0.2857
    weights, outside = ROLLOUT_CORRECTIONS.get("icepop")(train, rollout, cap=2.5)
    assert weights.tolist() == [[1.0, 1.0, 0.0, 0.0]] and outside.tolist() == [[False, False, True, True]]


@pytest.mark.parametrize("name", ["tis", "icepop"])
def test_matches_a_per_token_loop(name):
    g = torch.Generator().manual_seed(0)
    train, rollout = -torch.rand(3, 5, generator=g) * 3, -torch.rand(3, 5, generator=g) * 3
    weights, _ = ROLLOUT_CORRECTIONS.get(name)(train, rollout, cap=2.0)
    for b in range(3):
        for t in range(5):
            r = math.exp(float(train[b, t] - rollout[b, t]))
            expected = min(r, 2.0) if name == "tis" else float(0.5 <= r <= 2.0)
            assert float(weights[b, t]) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", ["none", "tis", "icepop"])
def test_identical_numerics_make_the_correction_the_identity(name):
    """Engine log-probs equal to the trainer's: every weight is exactly 1, the loss and its gradient unchanged."""
    logp = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([1.0, -0.5], dtype=torch.float64)
    weights, capped = ROLLOUT_CORRECTIONS.get(name)(logp, logp.detach().clone(), cap=2.0)
    assert torch.equal(weights, torch.ones_like(weights)) and not capped.any()
    plain, _ = clipped_policy_loss(logp, logp.detach(), adv, 0.2, 0.2)
    corrected = plain * weights
    assert torch.equal(corrected, plain)
    (g_plain,) = torch.autograd.grad(plain.sum(), logp, retain_graph=True)
    (g_corr,) = torch.autograd.grad(corrected.sum(), logp)
    assert torch.equal(g_plain, g_corr)


def test_weights_carry_no_gradient():
    train = torch.randn(2, 3, requires_grad=True)
    weights, _ = ROLLOUT_CORRECTIONS.get("tis")(train, torch.randn(2, 3), cap=2.0)
    assert not weights.requires_grad


def test_mismatch_sums_by_hand():
    train = torch.log(torch.tensor([[0.5, 0.2, 0.9]]))
    rollout = torch.log(torch.tensor([[0.25, 0.4, 0.3]]))
    _, capped = ROLLOUT_CORRECTIONS.get("tis")(train, rollout, cap=2.5)
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the third token is padding
    sums = mismatch_sums(train, rollout, capped, mask)
    assert sums["abs_log_ratio"] == pytest.approx(2 * math.log(2))
    assert sums["capped"] == 0.0
    assert sums["kl"] == pytest.approx((2 - 1 - math.log(2)) + (0.5 - 1 - math.log(0.5)))
