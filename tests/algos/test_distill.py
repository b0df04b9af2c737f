"""The SFT / distillation token loss: hand-computed values, a slow loop oracle, and chunking invariance."""

from __future__ import annotations

import math

import pytest
import torch

from r1lab.algos.distill import chunked_sft_loss, kl_teacher_student, sft_token_losses


@pytest.mark.parametrize(
    "student, teacher, T, expected",
    [
        # identical distributions: no divergence
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 2.0, 0.0),
        # uniform student, teacher (3/4, 1/4) at T=1: 3/4 ln(3/4 / 1/2) + 1/4 ln(1/4 / 1/2)
        ([0.0, 0.0], [math.log(3.0), 0.0], 1.0, 0.75 * math.log(1.5) + 0.25 * math.log(0.5)),
        # same at T=2: teacher softened to (sqrt3, 1)/(sqrt3 + 1); Hinton's T^2 = 4 scaling applies
        ([0.0, 0.0], [math.log(3.0), 0.0], 2.0,
         4 * sum(p * math.log(p / 0.5) for p in (3**0.5 / (3**0.5 + 1), 1 / (3**0.5 + 1)))),
        # a shift of all logits changes nothing (softmax invariance)
        ([5.0, 5.0], [math.log(3.0) + 7, 7.0], 1.0, 0.75 * math.log(1.5) + 0.25 * math.log(0.5)),
    ],
)
def test_kl_hand_computed(student, teacher, T, expected):
    kl = kl_teacher_student(torch.tensor([student]), torch.tensor([teacher]), T)
    assert kl.shape == (1,)
    assert kl.item() == pytest.approx(expected, abs=1e-6)


def test_kl_gradient_is_T_times_probability_gap():
    # d/ds [T^2 KL(p_t || softmax(s/T))] = T (softmax(s/T) - p_t): the T^2 factor keeps gradients O(1/T), not O(1/T^2)
    s = torch.tensor([[0.3, -1.2, 2.0]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0, -0.5]])
    T = 3.0
    kl_teacher_student(s, t, T).sum().backward()
    expected = T * (torch.softmax(s.detach() / T, -1) - torch.softmax(t / T, -1))
    torch.testing.assert_close(s.grad, expected, atol=1e-6, rtol=1e-5)


def test_token_losses_mix_ce_and_kl():
    logits = torch.zeros(1, 3)  # uniform: CE of any target is ln 3
    teacher = torch.tensor([[math.log(3.0), 0.0, 0.0]])
    loss, ce, kl = sft_token_losses(logits, torch.tensor([1]), teacher, alpha=0.25, temperature=1.0)
    expected_kl = 0.6 * math.log(0.6 * 3) + 2 * 0.2 * math.log(0.2 * 3)  # teacher probs (3, 1, 1) / 5
    assert ce.item() == pytest.approx(math.log(3.0))
    assert kl.item() == pytest.approx(expected_kl, abs=1e-6)
    assert loss.item() == pytest.approx(0.75 * math.log(3.0) + 0.25 * expected_kl, abs=1e-6)
    plain, ce2, none = sft_token_losses(logits, torch.tensor([1]))
    assert none is None and torch.equal(plain, ce2)


def loop_oracle(s_logits, targets, t_logits, alpha, T):
    """Position by position, vocabulary entry by entry, in python floats."""
    total = ce_total = kl_total = 0.0
    for i in range(s_logits.shape[0]):
        s, t = s_logits[i].tolist(), t_logits[i].tolist()
        z = sum(math.exp(v) for v in s)
        ce = -(s[targets[i]] - math.log(z))
        zs = sum(math.exp(v / T) for v in s)
        zt = sum(math.exp(v / T) for v in t)
        kl = 0.0
        for a, b in zip(s, t):
            p_t = math.exp(b / T) / zt
            p_s = math.exp(a / T) / zs
            kl += p_t * math.log(p_t / p_s)
        kl *= T * T
        total += (1 - alpha) * ce + alpha * kl
        ce_total += ce
        kl_total += kl
    return total, ce_total, kl_total


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_chunked_loss_matches_loop_oracle_and_unchunked_gradients(chunk):
    torch.manual_seed(0)
    N, H, V = 7, 5, 11
    head = torch.nn.Linear(H, V, bias=False)
    teacher_head = torch.nn.Linear(4, V, bias=False)
    hidden = torch.randn(N, H, requires_grad=True)
    teacher_hidden = torch.randn(N, 4)
    targets = torch.randint(0, V, (N,))
    alpha, T = 0.3, 1.7
    loss, ce, kl = chunked_sft_loss(hidden, head, targets, teacher_hidden, teacher_head, alpha, T, chunk)
    with torch.no_grad():
        expected = loop_oracle(head(hidden), targets.tolist(), teacher_head(teacher_hidden), alpha, T)
    assert (loss.item(), ce.item(), kl.item()) == pytest.approx(expected, rel=1e-5)
    # Gradients through the checkpointed chunks equal those of one plain, unchunked computation.
    loss.backward()
    grad_chunked, head_grad_chunked = hidden.grad.clone(), head.weight.grad.clone()
    hidden.grad, head.weight.grad = None, None
    full, _, _ = sft_token_losses(head(hidden), targets, teacher_head(teacher_hidden).detach(), alpha, T)
    full.sum().backward()
    torch.testing.assert_close(grad_chunked, hidden.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(head_grad_chunked, head.weight.grad, atol=1e-6, rtol=1e-5)
    assert teacher_head.weight.grad is None  # the teacher is never trained


def test_chunked_loss_without_teacher_is_summed_ce():
    torch.manual_seed(1)
    head = torch.nn.Linear(4, 6, bias=False)
    hidden, targets = torch.randn(5, 4), torch.randint(0, 6, (5,))
    loss, ce, kl = chunked_sft_loss(hidden, head, targets, chunk_size=2)
    assert kl is None
    expected = torch.nn.functional.cross_entropy(head(hidden), targets, reduction="sum")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and ce.item() == pytest.approx(expected.item(), rel=1e-6)
