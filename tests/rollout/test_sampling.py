"""Next-token sampling: the warping equals HF generate's own logits processors, and the inverse-CDF draw samples
the categorical distribution (frequencies, zero-probability tokens, one-hot rows)."""

import math

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from r1lab.rollout.base import SamplingParams
from r1lab.rollout.sampling import next_tokens, sample_categorical, warp_logits


@pytest.mark.parametrize("temperature,top_k,top_p", [
    (1.0, 0, 1.0),  # untouched
    (0.7, 0, 1.0),  # temperature only
    (1.0, 5, 1.0),  # top-k only
    (1.0, 0, 0.9),  # nucleus only
    (0.6, 8, 0.8),  # all three, in HF's order: temperature, top-k, top-p
])
def test_warp_logits_equals_hf_logits_processors(temperature, top_k, top_p):
    logits = 3 * torch.randn(4, 40, generator=torch.Generator().manual_seed(0))
    expected = logits.clone()
    if temperature != 1.0:
        expected = TemperatureLogitsWarper(temperature)(None, expected)
    if top_k:
        expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p < 1.0:
        expected = TopPLogitsWarper(top_p)(None, expected)
    sampling = SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k)
    got = warp_logits(logits, sampling)
    assert torch.equal(torch.isinf(got), torch.isinf(expected))
    torch.testing.assert_close(got[~torch.isinf(got)], expected[~torch.isinf(expected)])
    overwritten = logits.clone()  # the decode loop's in-place form: the same values, written over its input
    assert torch.equal(warp_logits(overwritten, sampling, in_place=True), got) and torch.equal(overwritten, got)


def test_sample_categorical_frequencies_and_zero_probability_tokens():
    # 40,000 draws of [0.1, 0, 0.2, 0.3, 0.4]: frequencies within 4.5 standard errors, token 1 never drawn.
    probs = torch.tensor([0.1, 0.0, 0.2, 0.3, 0.4]).expand(40_000, 5)
    draws = sample_categorical(probs, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=5).double() / len(draws)
    for p, f in zip(probs[0].tolist(), freq.tolist()):
        assert abs(f - p) <= 4.5 * math.sqrt(p * (1 - p) / len(draws)) + 1e-12
    assert freq[1] == 0
    # one-hot rows (the rest exactly 0 after top-k/top-p) always give their token, first and last index included
    one_hot = torch.eye(6)[[0, 5, 3]]
    assert sample_categorical(one_hot).tolist() == [0, 5, 3]


@pytest.mark.parametrize("vocab", [1000, 1024])  # a partial last block, and whole blocks only
def test_sample_categorical_two_level_draws_match_probabilities_across_blocks(vocab):
    # Mass spread over many blocks of 256 (and inside them), with empty blocks and zeros at block edges:
    # 200,000 draws: every token's count within 5 standard deviations of n*p (+3 draws of slack for the rarest
    # tokens, whose counts are Poisson-like), zero-probability tokens never drawn.
    gen = torch.Generator().manual_seed(1)
    p = torch.rand(vocab, generator=gen) ** 4
    p[256:512] = 0.0  # a whole empty block
    p[[0, 255, 767, vocab - 1]] = 0.0  # zeros at block edges
    p[300] = 0.5 * p.sum()  # then the only token of that block, with a third of the mass
    p = p / p.sum()
    n = 200_000
    draws = sample_categorical(p.expand(n, vocab), generator=torch.Generator().manual_seed(2))
    counts = torch.bincount(draws, minlength=vocab).double()
    assert counts.shape[0] == vocab  # never an index past the vocabulary
    assert (counts[p == 0] == 0).all()
    expected = n * p.double()
    assert ((counts - expected).abs() <= 5 * (expected * (1 - p.double())).sqrt() + 3).all()
    # one-hot rows whose token sits at a block's first and last index, and in the partial last block
    one_hot = torch.zeros(3, vocab)
    one_hot[0, 256], one_hot[1, 511], one_hot[2, vocab - 2] = 1.0, 1.0, 1.0
    assert sample_categorical(one_hot).tolist() == [256, 511, vocab - 2]


def test_next_tokens_greedy_log_probs_and_banned_ids():
    logits = torch.tensor([[0.0, math.log(3.0), -1.0], [2.0, 0.0, 0.0]])
    token, logp = next_tokens(logits, SamplingParams(temperature=0.0))
    assert token.tolist() == [1, 0]
    expected = torch.log_softmax(logits, dim=-1)[[0, 1], [1, 0]]
    torch.testing.assert_close(logp, expected)
    # a banned id (EOS before min_new_tokens) is never chosen, even when it is the best
    token, _ = next_tokens(logits, SamplingParams(temperature=0.0), banned=torch.tensor([0, 1]))
    assert token.tolist() == [2, 2]
    token, logp = next_tokens(logits, SamplingParams(temperature=1.0), banned=torch.tensor([1]))
    assert 1 not in token.tolist() and (logp <= 0).all()


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9)])
def test_next_tokens_in_a_kept_buffer_draw_the_same_tokens_and_log_probs(temperature, top_p):
    # The decode loop passes a scratch buffer wider than the batch: the same draws as without it (same RNG
    # state), log-probs = log softmax of the warped logits at the drawn token, the caller's logits untouched,
    # and a banned id never drawn.
    logits = 2 * torch.randn(5, 600, generator=torch.Generator().manual_seed(3))
    logits_before = logits.clone()
    sampling = SamplingParams(temperature=temperature, top_p=top_p)
    banned = torch.tensor([int(logits[0].argmax())])
    torch.manual_seed(11)
    plain_token, plain_logp = next_tokens(logits, sampling, banned=banned)
    torch.manual_seed(11)
    token, logp = next_tokens(logits, sampling, banned=banned, scratch=torch.empty(8, 600))
    assert torch.equal(logits, logits_before)
    assert torch.equal(token, plain_token) and torch.equal(logp, plain_logp)
    assert banned.item() not in token.tolist()
    warped = warp_logits(logits.index_fill(1, banned, float("-inf")), sampling)
    torch.testing.assert_close(logp, torch.log_softmax(warped, dim=-1).gather(1, token[:, None]).squeeze(1))
