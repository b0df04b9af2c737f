"""r1lab.algos.losses: PPO/DAPO clipped surrogate, KL estimators, loss aggregations (hand values + loop oracles)."""

from __future__ import annotations

import math

import pytest
import torch

from r1lab.algos.losses import (
    KL_ESTIMATORS,
    LOSS_AGGREGATIONS,
    aggregate,
    clipped_policy_loss,
    kl_k1,
    kl_k2,
    kl_k3,
)

torch.set_num_threads(1)

AGGS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm")


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def _logp_pair(ratios):
    """(logp, old_logp) rows whose exp-difference is exactly the given ratios."""
    old = _t([[-1.0] * len(row) for row in ratios])
    return old + torch.log(_t(ratios)), old


# ---------------------------------------------------------------------------------------------------------------
# Clipped policy loss
# ---------------------------------------------------------------------------------------------------------------
def test_clipped_loss_hand_values_symmetric_clip():
    # eps = 0.2, ratio r in {0.5, 0.9, 1.0, 1.1, 1.5}; loss = -min(r A, clip(r, 0.8, 1.2) A).
    #   A = +2: r=0.5 -> -min(1.0, 1.6) = -1.0 (unclipped: a bad action can always be made less likely)
    #           r=1.5 -> -min(3.0, 2.4) = -2.4 (clipped: stop pushing an already-favoured action up)
    #   A = -1: r=0.5 -> -min(-0.5, -0.8) = 0.8 (clipped: stop pushing down an already-disfavoured action)
    #           r=1.5 -> -min(-1.5, -1.2) = 1.5 (unclipped: pessimistic bound keeps the full penalty)
    ratios = [[0.5, 0.9, 1.0, 1.1, 1.5], [0.5, 0.9, 1.0, 1.1, 1.5]]
    logp, old = _logp_pair(ratios)
    adv = _t([2.0, -1.0])
    loss, clipped = clipped_policy_loss(logp, old, adv, clip_low=0.2, clip_high=0.2)
    expected = _t([[-1.0, -1.8, -2.0, -2.2, -2.4], [0.8, 0.9, 1.0, 1.1, 1.5]])
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    # The clipped branch is taken (zero gradient) only for A>0 & r>1+eps and A<0 & r<1-eps.
    torch.testing.assert_close(clipped, _t([[0, 0, 0, 0, 1], [1, 0, 0, 0, 0]]), rtol=0, atol=0)
    assert clipped.dtype == logp.dtype and loss.shape == logp.shape


def test_clipped_loss_asymmetric_clip_higher():
    # DAPO clip-higher: clip_low=0.2, clip_high=0.28 -> range [0.8, 1.28].
    # A=+1: r=1.25 is inside the higher bound (unclipped, -1.25) though outside a symmetric 0.2 clip; r=1.4 -> -1.28.
    # A=-1: r=0.75 is below 0.8 -> clipped to 0.8 (loss 0.8); r=0.85 inside (0.85).
    logp, old = _logp_pair([[1.25, 1.4, 0.75, 0.85], [1.25, 1.4, 0.75, 0.85]])
    adv = _t([1.0, -1.0])
    loss, clipped = clipped_policy_loss(logp, old, adv, clip_low=0.2, clip_high=0.28)
    expected = _t([[-1.25, -1.28, -0.75, -0.85], [1.25, 1.4, 0.8, 0.85]])
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(clipped, _t([[0, 1, 0, 0], [0, 0, 1, 0]]), rtol=0, atol=0)
    # Swapping the bounds must change the answer: the low and high bounds are not interchangeable.
    loss_swapped, _ = clipped_policy_loss(logp, old, adv, clip_low=0.28, clip_high=0.2)
    assert not torch.allclose(loss, loss_swapped)
    torch.testing.assert_close(loss_swapped[0, 0], _t(-1.2), rtol=0, atol=1e-12)  # 1.25 now clipped to 1.2
    torch.testing.assert_close(loss_swapped[1, 2], _t(0.75), rtol=0, atol=1e-12)  # 0.75 now inside [0.72, 1.2]


def test_clipped_loss_on_policy_is_minus_advantage_with_unit_gradient():
    # First inner step (logp == old_logp): loss = -A per token and d loss / d logp = -A (plain policy gradient).
    old = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    logp = old.clone().requires_grad_(True)
    adv = _t([1.5, -0.5, 0.0])
    loss, clipped = clipped_policy_loss(logp, old, adv, 0.2, 0.2)
    torch.testing.assert_close(loss.detach(), -adv[:, None].expand(3, 4), rtol=0, atol=1e-12)
    assert clipped.sum() == 0
    loss.sum().backward()
    torch.testing.assert_close(logp.grad, -adv[:, None].expand(3, 4), rtol=0, atol=1e-12)


def test_clipped_tokens_have_zero_gradient():
    # Where was_clipped is 1 the gradient must vanish (that is the point of PPO clipping); elsewhere it is -r A.
    g = torch.Generator().manual_seed(4)
    old = torch.randn(4, 6, generator=g, dtype=torch.float64)
    logp = (old + 0.5 * torch.randn(4, 6, generator=g, dtype=torch.float64)).requires_grad_(True)
    adv = _t([1.0, -1.0, 2.0, -0.5])
    loss, clipped = clipped_policy_loss(logp, old, adv, 0.2, 0.28)
    loss.sum().backward()
    ratio = torch.exp(logp.detach() - old)
    expected_grad = torch.where(clipped.bool(), torch.zeros_like(ratio), -ratio * adv[:, None])
    torch.testing.assert_close(logp.grad, expected_grad, rtol=1e-12, atol=1e-12)
    assert 0 < clipped.sum() < clipped.numel()  # the case really exercises both branches


def test_clipped_loss_matches_loop_oracle():
    g = torch.Generator().manual_seed(5)
    B, T = 5, 7
    old = torch.randn(B, T, generator=g, dtype=torch.float64)
    logp = old + 0.4 * torch.randn(B, T, generator=g, dtype=torch.float64)
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    lo, hi = 0.2, 0.28
    loss, clipped = clipped_policy_loss(logp, old, adv, lo, hi)
    for b in range(B):
        for t in range(T):
            r = math.exp(logp[b, t].item() - old[b, t].item())
            a = adv[b].item()
            unclipped_obj = r * a
            clipped_obj = min(max(r, 1 - lo), 1 + hi) * a
            assert loss[b, t].item() == pytest.approx(-min(unclipped_obj, clipped_obj), abs=1e-12)
            assert clipped[b, t].item() == float(clipped_obj < unclipped_obj)


# ---------------------------------------------------------------------------------------------------------------
# KL estimators
# ---------------------------------------------------------------------------------------------------------------
def test_kl_registry():
    assert KL_ESTIMATORS.get("k1") is kl_k1
    assert KL_ESTIMATORS.get("k2") is kl_k2
    assert KL_ESTIMATORS.get("k3") is kl_k3


def test_kl_hand_values():
    # d = logp - ref_logp in {0, ln 2, -ln 2}.
    #   k1 = d; k2 = d^2 / 2; k3 = exp(-d) + d - 1: d=ln2 -> 0.5 + ln2 - 1; d=-ln2 -> 2 - ln2 - 1.
    ln2 = math.log(2.0)
    ref = _t([[-1.0, -1.0, -1.0]])
    logp = ref + _t([[0.0, ln2, -ln2]])
    torch.testing.assert_close(kl_k1(logp, ref), _t([[0.0, ln2, -ln2]]), rtol=0, atol=1e-12)
    torch.testing.assert_close(kl_k2(logp, ref), _t([[0.0, ln2**2 / 2, ln2**2 / 2]]), rtol=0, atol=1e-12)
    torch.testing.assert_close(kl_k3(logp, ref), _t([[0.0, ln2 - 0.5, 1.0 - ln2]]), rtol=0, atol=1e-12)


def test_k3_nonnegative_and_k1_can_be_negative():
    # k3 = x - log x - 1 >= 0 for every x > 0 (DeepSeekMath eq. 4); k1 has no such guarantee.
    g = torch.Generator().manual_seed(6)
    logp = 3 * torch.randn(50, 20, generator=g, dtype=torch.float64)
    ref = 3 * torch.randn(50, 20, generator=g, dtype=torch.float64)
    assert (kl_k3(logp, ref) >= 0).all()
    assert (kl_k2(logp, ref) >= 0).all()
    assert (kl_k1(logp, ref) < 0).any()
    # Oracle: x = pi_ref / pi elementwise.
    x = torch.exp(ref - logp)
    torch.testing.assert_close(kl_k3(logp, ref), x - torch.log(x) - 1, rtol=1e-9, atol=1e-9)


def test_kl_estimators_unbiased_on_categorical():
    # E_{a~pi}[k1] = E_{a~pi}[k3] = KL(pi || pi_ref) exactly when the expectation is taken over the support.
    pi = _t([0.5, 0.3, 0.2])
    ref = _t([0.2, 0.5, 0.3])
    kl = (pi * (pi.log() - ref.log())).sum()
    for fn in (kl_k1, kl_k3):
        torch.testing.assert_close((pi * fn(pi.log(), ref.log())).sum(), kl, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Loss aggregation
# ---------------------------------------------------------------------------------------------------------------
# Hand example: 2 sequences, T = 4; seq 0 has 3 real tokens, seq 1 has 1.
LOSS = _t([[1.0, 2.0, 3.0, 100.0], [4.0, 100.0, 100.0, 100.0]])  # 100s sit on padding and must never count
MASK = _t([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])


def test_aggregation_registry():
    assert set(AGGS) <= set(LOSS_AGGREGATIONS.names())
    with pytest.raises(KeyError, match="Did you mean"):
        aggregate("token_means", LOSS, MASK)


def test_token_mean_hand():
    # DAPO: (1+2+3+4) / 4 tokens = 2.5; the long sequence weighs 3x the short one.
    torch.testing.assert_close(aggregate("token_mean", LOSS, MASK), _t(2.5), rtol=0, atol=1e-12)


def test_seq_mean_token_mean_hand():
    # GRPO: per-sequence means (6/3 = 2, 4/1 = 4), then mean over sequences = 3.
    torch.testing.assert_close(aggregate("seq_mean_token_mean", LOSS, MASK), _t(3.0), rtol=0, atol=1e-12)


def test_seq_mean_token_sum_norm_hand():
    # Dr. GRPO: per-sequence sums (6, 4) / constant; default constant is T = 4 -> (1.5 + 1.0) / 2 = 1.25.
    torch.testing.assert_close(aggregate("seq_mean_token_sum_norm", LOSS, MASK), _t(1.25), rtol=0, atol=1e-12)
    # With an explicit constant (max completion length, say 10): (0.6 + 0.4) / 2 = 0.5.
    torch.testing.assert_close(
        aggregate("seq_mean_token_sum_norm", LOSS, MASK, norm_constant=10.0), _t(0.5), rtol=0, atol=1e-12
    )


def test_explicit_counts_override_batch_counts():
    # Global counts replace the micro-batch's own: token_mean over 8 tokens = 10/8; seq means over 4 seqs = 6/4.
    torch.testing.assert_close(aggregate("token_mean", LOSS, MASK, num_tokens=8.0), _t(10 / 8), rtol=0, atol=1e-12)
    torch.testing.assert_close(aggregate("seq_mean_token_mean", LOSS, MASK, num_seqs=4.0), _t(6 / 4), rtol=0, atol=1e-12)


def test_all_padding_row_and_empty_mask_are_finite():
    # A fully masked row contributes 0 (no 0/0); an all-zero mask gives 0, not NaN.
    loss = _t([[1.0, 2.0], [5.0, 5.0]])
    mask = _t([[1.0, 1.0], [0.0, 0.0]])
    torch.testing.assert_close(aggregate("seq_mean_token_mean", loss, mask), _t(1.5 / 2), rtol=0, atol=1e-12)
    for name in AGGS:
        out = aggregate(name, loss, torch.zeros_like(mask))
        assert torch.isfinite(out) and out.item() == 0.0, name


def aggregate_oracle(name, loss, mask, num_tokens=None, num_seqs=None, norm_constant=None):
    """Plain loops over rows and tokens."""
    B, T = len(loss), len(loss[0])
    if num_tokens is None:
        num_tokens = sum(mask[b][t] for b in range(B) for t in range(T))
    if num_seqs is None:
        num_seqs = B
    if norm_constant is None:
        norm_constant = T
    if name == "token_mean":
        total = 0.0
        for b in range(B):
            for t in range(T):
                if mask[b][t]:
                    total += loss[b][t]
        return total / max(num_tokens, 1.0)
    per_seq = []
    for b in range(B):
        s, n = 0.0, 0
        for t in range(T):
            if mask[b][t]:
                s += loss[b][t]
                n += 1
        if name == "seq_mean_token_mean":
            per_seq.append(s / n if n else 0.0)
        elif name == "seq_mean_token_sum_norm":
            per_seq.append(s / norm_constant)
        else:
            raise ValueError(name)
    return sum(per_seq) / max(num_seqs, 1.0)


def _random_batch(seed, B=6, T=9):
    g = torch.Generator().manual_seed(seed)
    loss = torch.randn(B, T, generator=g, dtype=torch.float64)
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    lengths[0] = T  # one full-length row
    lengths[1] = 0  # one empty row
    mask = (torch.arange(T)[None, :] < lengths[:, None]).double()  # right padding from lengths
    return loss, mask


@pytest.mark.parametrize("name", AGGS)
@pytest.mark.parametrize("seed", range(4))
def test_aggregation_matches_loop_oracle(name, seed):
    loss, mask = _random_batch(seed)
    got = aggregate(name, loss, mask)
    assert got.item() == pytest.approx(aggregate_oracle(name, loss.tolist(), mask.tolist()), abs=1e-12)
    got = aggregate(name, loss, mask, num_tokens=17.0, num_seqs=11.0, norm_constant=32.0)
    expected = aggregate_oracle(name, loss.tolist(), mask.tolist(), 17.0, 11.0, 32.0)
    assert got.item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("name", AGGS)
@pytest.mark.parametrize("splits", [(1, 1, 1, 1, 1, 1), (2, 4), (3, 3), (1, 5), (6,)])
def test_micro_batches_sum_to_full_batch(name, splits):
    # Gradient accumulation: summing micro-batch losses computed with the *global* token/sequence counts and the
    # same norm constant must reproduce the full-batch loss exactly (and therefore its gradient).
    loss, mask = _random_batch(7)
    C = 16.0
    global_tokens, global_seqs = float(mask.sum()), float(mask.shape[0])
    full = aggregate(name, loss, mask, norm_constant=C)
    parts, start = [], 0
    for size in splits:
        # Micro-batches may be trimmed to their own longest row, as a trainer does to save compute.
        mb_loss, mb_mask = loss[start : start + size], mask[start : start + size]
        width = max(int(mb_mask.sum(dim=1).max().item()), 1)
        mb_loss, mb_mask = mb_loss[:, :width], mb_mask[:, :width]
        parts.append(
            aggregate(name, mb_loss, mb_mask, num_tokens=global_tokens, num_seqs=global_seqs, norm_constant=C)
        )
        start += size
    torch.testing.assert_close(sum(parts), full, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", AGGS)
def test_micro_batch_gradients_match_full_batch(name):
    # Same property on the gradient, which is what accumulation actually needs.
    loss, mask = _random_batch(8)
    w_full = loss.clone().requires_grad_(True)
    aggregate(name, w_full * 1.0, mask, norm_constant=12.0).backward()
    w_mb = loss.clone().requires_grad_(True)
    n_tok, n_seq = float(mask.sum()), float(mask.shape[0])
    for sl in (slice(0, 2), slice(2, 5), slice(5, 6)):
        aggregate(name, w_mb[sl], mask[sl], num_tokens=n_tok, num_seqs=n_seq, norm_constant=12.0).backward()
    torch.testing.assert_close(w_mb.grad, w_full.grad, rtol=1e-12, atol=1e-12)
    assert (w_full.grad[mask == 0] == 0).all()  # padding never receives gradient
