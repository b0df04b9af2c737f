"""gqa_eager_attention: the values and gradients of HF's eager attention (repeat_kv, fp32 softmax) for grouped and
plain multi-head attention, padded and fully masked query rows included."""

from types import SimpleNamespace

import pytest
import torch
from transformers.models.llama.modeling_llama import eager_attention_forward

from r1lab.algos.gqa_attention import gqa_eager_attention


def _inputs(heads: int, kv_heads: int, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    B, L, S, D = 3, 5, 7, 8
    # queries as HF makes them: (B, L, H, D) projections transposed to (B, H, L, D), not contiguous
    query = torch.randn(B, L, heads, D, generator=gen).transpose(1, 2).to(dtype).requires_grad_()
    key = torch.randn(B, kv_heads, S, D, generator=gen).to(dtype).requires_grad_()
    value = torch.randn(B, kv_heads, S, D, generator=gen).to(dtype).requires_grad_()
    allowed = torch.ones(B, 1, L, S + 2, dtype=torch.bool)  # wider than S: the function uses the first S keys
    allowed[:, :, :, S - L:S] = torch.tril(torch.ones(L, L, dtype=torch.bool))  # causal over the last L keys
    allowed[1, :, :, :2] = False  # row 1: two left-padded keys
    allowed[2, :, 0, :] = False  # row 2, query 0: nothing to attend to (a padded query)
    return query, key, value, allowed


def _hf_eager(query, key, value, allowed, heads, kv_heads):
    module = SimpleNamespace(num_key_value_groups=heads // kv_heads, training=False)
    S = key.shape[2]
    additive = torch.zeros(allowed.shape, dtype=query.dtype).masked_fill(~allowed, torch.finfo(query.dtype).min)
    return eager_attention_forward(module, query, key, value, additive[..., :S], scaling=query.shape[-1] ** -0.5)


@pytest.mark.parametrize("heads,kv_heads", [(6, 2), (4, 4)])  # grouped-query, and plain multi-head
def test_values_and_gradients_equal_hf_eager_in_fp32(heads, kv_heads):
    q, k, v, allowed = _inputs(heads, kv_heads, torch.float32)
    module = SimpleNamespace(training=False)
    ours, our_weights = gqa_eager_attention(module, q, k, v, allowed, scaling=q.shape[-1] ** -0.5)
    gen = torch.Generator().manual_seed(1)
    upstream = torch.randn(ours.shape, generator=gen)
    # No loss reads a padded query's output (its row attends to nothing). HF's eager still sends that row's random
    # upstream gradient through the constant mask it adds; masking in place sends none. They agree wherever a loss
    # can reach, so the padded query's upstream gradient is zero here, as in training.
    upstream[2, 0] = 0
    our_grads = torch.autograd.grad((ours * upstream).sum(), (q, k, v))
    theirs, their_weights = _hf_eager(q, k, v, allowed, heads, kv_heads)
    their_grads = torch.autograd.grad((theirs * upstream).sum(), (q, k, v))
    assert ours.shape == theirs.shape == (3, 5, heads, 8) and ours.is_contiguous()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    torch.testing.assert_close(our_weights, their_weights, rtol=0, atol=1e-6)
    for ours_g, theirs_g in zip(our_grads, their_grads):
        torch.testing.assert_close(ours_g, theirs_g, rtol=0, atol=1e-5)
    # the fully masked query attends uniformly (finite), as in HF's eager: no NaN reaches the hidden states
    torch.testing.assert_close(our_weights[2, :, 0], torch.full((heads, 7), 1 / 7))


def test_bf16_matches_hf_eager_to_bf16_rounding():
    q, k, v, allowed = _inputs(6, 2, torch.bfloat16, seed=2)
    ours, _ = gqa_eager_attention(SimpleNamespace(training=False), q, k, v, allowed, scaling=q.shape[-1] ** -0.5)
    theirs, _ = _hf_eager(q, k, v, allowed, 6, 2)
    assert ours.dtype == torch.bfloat16 and torch.isfinite(ours.float()).all()
    torch.testing.assert_close(ours.float(), theirs.float(), rtol=0, atol=2e-2)


def test_without_a_mask_the_attention_is_causal():
    q, k, v, _ = _inputs(6, 2, torch.float32, seed=4)
    causal = torch.ones(3, 1, 5, 7, dtype=torch.bool)
    causal[..., :] = torch.ones(5, 7, dtype=torch.bool).tril(2)  # query i (position 2 + i) sees keys 0..2 + i
    module = SimpleNamespace(training=False, is_causal=True)
    unmasked, _ = gqa_eager_attention(module, q, k, v, None, scaling=0.3)
    masked, _ = gqa_eager_attention(module, q, k, v, causal, scaling=0.3)
    torch.testing.assert_close(unmasked, masked, rtol=0, atol=0)
