"""r1lab.algos.policy_losses: GSPO, CISPO, SAPO (and ppo_clip through the registry): hand-computed values, loop
oracles, and the plain policy gradient at ratio 1."""

from __future__ import annotations

import math

import pytest
import torch

from r1lab.algos.losses import aggregate
from r1lab.algos.policy_losses import POLICY_LOSSES, cispo_loss, gspo_loss, sapo_loss

torch.set_num_threads(1)


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def _random(B=4, T=6, seed=0, spread=0.4):
    g = torch.Generator().manual_seed(seed)
    old = torch.randn(B, T, generator=g, dtype=torch.float64)
    logp = old + spread * torch.randn(B, T, generator=g, dtype=torch.float64)
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).to(torch.float64)
    return logp, old, adv, mask


def test_registry_names():
    assert POLICY_LOSSES.names() == ("cispo", "gspo", "ppo_clip", "sapo")


def test_gspo_hand_values():
    # row 0: token log-ratios (log 1.1, log 1.1, pad) -> s = 1.1; A = +1, clip [0.9, 1.05] -> clipped: loss -1.05
    # row 1: log-ratios (log 0.5, log 2.0) -> mean 0 -> s = 1; A = -2 -> loss 2 (token ratios far from 1 cancel)
    old = _t([[-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]])
    logp = old + torch.log(_t([[1.1, 1.1, 7.0], [0.5, 2.0, 1.0]]))
    mask = _t([[1, 1, 0], [1, 1, 1]])
    mask[1, 2] = 1.0
    logp[1, 2] = old[1, 2]  # third token of row 1: ratio 1, so s = exp(mean(log .5, log 2, 0)) = 1
    loss, clipped = gspo_loss(logp, old, _t([1.0, -2.0]), mask, 0.1, 0.05)
    torch.testing.assert_close(loss, _t([[-1.05] * 3, [2.0] * 3]), rtol=0, atol=1e-12)
    torch.testing.assert_close(clipped, _t([[1, 1, 1], [0, 0, 0]]), rtol=0, atol=0)


def test_gspo_matches_loop_oracle():
    logp, old, adv, mask = _random(seed=1, spread=0.1)
    lo, hi = 0.02, 0.03
    loss, clipped = gspo_loss(logp, old, adv, mask, lo, hi)
    for b in range(logp.shape[0]):
        n = int(mask[b].sum())
        s = math.exp(sum(logp[b, t].item() - old[b, t].item() for t in range(n)) / n)
        a = adv[b].item()
        expected = -min(s * a, min(max(s, 1 - lo), 1 + hi) * a)
        for t in range(logp.shape[1]):
            assert loss[b, t].item() == pytest.approx(expected, abs=1e-12)
            assert clipped[b, t].item() == float(min(max(s, 1 - lo), 1 + hi) * a < s * a)


def test_gspo_rejects_per_token_advantages():
    logp, old, adv, mask = _random()
    with pytest.raises(ValueError, match="one advantage per sequence"):
        gspo_loss(logp, old, adv[:, None].expand_as(logp), mask, 0.2, 0.2)


def test_cispo_hand_values_and_no_token_loses_its_gradient():
    # ratios 0.5, 1.0, 2.0 with bounds [0.8, 1.28]: weights 0.8, 1.0, 1.28; loss value -w A; gradient -w A
    old = _t([[-1.0, -1.0, -1.0]])
    logp = (old + torch.log(_t([[0.5, 1.0, 2.0]]))).requires_grad_(True)
    loss, clipped = cispo_loss(logp, old, _t([2.0]), torch.ones(1, 3, dtype=torch.float64), 0.2, 0.28)
    torch.testing.assert_close(loss.detach(), _t([[-1.6, -2.0, -2.56]]), rtol=0, atol=1e-12)
    torch.testing.assert_close(clipped, _t([[1, 0, 1]]), rtol=0, atol=0)
    loss.sum().backward()
    # PPO's clip would zero the third token's gradient (A > 0, r > 1 + eps); CISPO keeps it, weighted by 1.28
    torch.testing.assert_close(logp.grad, _t([[-1.6, -2.0, -2.56]]), rtol=0, atol=1e-12)


def test_cispo_matches_loop_oracle():
    logp, old, adv, mask = _random(seed=2)
    logp.requires_grad_(True)
    loss, _ = cispo_loss(logp, old, adv, mask, 0.2, 0.28)
    loss.sum().backward()
    for b in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            r = math.exp(logp[b, t].item() - old[b, t].item())
            w = min(max(r, 0.8), 1.28)
            assert loss[b, t].item() == pytest.approx(-w * adv[b].item(), abs=1e-12)
            assert logp.grad[b, t].item() == pytest.approx(-w * adv[b].item(), abs=1e-12)


def test_sapo_hand_values():
    # f(r) = 4/tau sigmoid(tau (r - 1)); A = +1 uses tau_pos = 1, A = -1 uses tau_neg = 2
    old = _t([[-1.0, -1.0], [-1.0, -1.0]])
    logp = old + torch.log(_t([[1.0, 1.5], [1.0, 1.5]]))
    loss, damped = sapo_loss(logp, old, _t([1.0, -1.0]), torch.ones(2, 2, dtype=torch.float64), 0.2, 0.2,
                             tau_pos=1.0, tau_neg=2.0)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = _t([[-4 * 0.5, -4 * sig(0.5)], [2 / 1 * 0.5, 2 * sig(1.0)]])
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    assert damped.sum() == 0  # 4 sig (1 - sig) at x = 0.5 and 1.0 is 0.94 and 0.79: not halved


def test_sapo_gradient_matches_loop_oracle_and_decays_smoothly():
    logp, old, adv, mask = _random(seed=3, spread=1.5)
    logp.requires_grad_(True)
    loss, damped = sapo_loss(logp, old, adv, mask, 0.2, 0.2, tau_pos=1.0, tau_neg=1.05)
    loss.sum().backward()
    for b in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            r = math.exp(logp[b, t].item() - old[b, t].item())
            a = adv[b].item()
            tau = 1.0 if a > 0 else 1.05
            s = 1 / (1 + math.exp(-tau * (r - 1)))
            assert loss[b, t].item() == pytest.approx(-4 / tau * s * a, abs=1e-12)
            # d/dlogp of -4/tau sig(tau (r-1)) A = -A r 4 sig (1 - sig)
            assert logp.grad[b, t].item() == pytest.approx(-a * r * 4 * s * (1 - s), abs=1e-10)
            assert damped[b, t].item() == float(4 * s * (1 - s) < 0.5)
    assert 0 < damped.sum() < damped.numel()


@pytest.mark.parametrize("name", ["ppo_clip", "cispo", "sapo"])
def test_token_losses_give_the_plain_policy_gradient_at_ratio_one(name):
    # logp == old_logp (the first pass of a step): d loss / d logp = -A on every token, per-token advantages too
    logp0, _, adv, mask = _random(seed=4)
    for a in (adv, adv[:, None] * torch.linspace(0.5, 1.5, logp0.shape[1], dtype=torch.float64)):
        logp = logp0.clone().requires_grad_(True)
        loss, _ = POLICY_LOSSES.get(name)(logp, logp0.clone(), a, mask, 0.2, 0.28)
        loss.sum().backward()
        expected = -(a[:, None] if a.dim() == 1 else a).expand_as(logp)
        torch.testing.assert_close(logp.grad, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"])
def test_gspo_gradient_at_ratio_one_equals_the_policy_gradient(agg):
    # GSPO's per-sequence loss, spread over its tokens, aggregates to the same gradient as GRPO's at s = r = 1
    logp0, _, adv, mask = _random(seed=5)
    grads = []
    for name in ("gspo", "ppo_clip"):
        logp = logp0.clone().requires_grad_(True)
        loss, _ = POLICY_LOSSES.get(name)(logp, logp0.clone(), adv, mask, 3e-4, 4e-4)
        aggregate(agg, loss, mask).backward()
        grads.append(logp.grad * mask)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-12)
    # and with seq_mean_token_mean it is the paper's -A_i / |y_i| per token
    if agg == "seq_mean_token_mean":
        expected = -(adv / mask.sum(1))[:, None] / logp0.shape[0] * mask
        torch.testing.assert_close(grads[0], expected, rtol=1e-12, atol=1e-12)
