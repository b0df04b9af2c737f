"""PackedLinear: oneDNN pre-packed bf16 weights give exactly F.linear's output; elsewhere it is F.linear."""

import pytest
import torch
import torch.nn.functional as F

from r1lab.rollout.packed_linear import PackedLinear, packing_applies

needs_bf16_onednn = pytest.mark.skipif(not packing_applies(torch.zeros(1, 1, dtype=torch.bfloat16)),
                                       reason="this PyTorch build or CPU has no oneDNN bf16 matmul")


@needs_bf16_onednn
@pytest.mark.parametrize("rows", [1, 17, 64, 100])  # the hint is 64: fewer and more rows stay exact
@pytest.mark.parametrize("with_bias", [False, True])
def test_packed_bf16_equals_f_linear_bit_for_bit(rows, with_bias):
    gen = torch.Generator().manual_seed(rows)
    weight = torch.randn(96, 40, generator=gen).bfloat16()
    bias = torch.randn(96, generator=gen).bfloat16() if with_bias else None
    x = torch.randn(rows, 40, generator=gen).bfloat16()
    linear = PackedLinear(weight, bias, rows_hint=64)
    assert linear.packed is not None
    assert torch.equal(linear(x), F.linear(x, weight, bias))


def test_fp32_and_non_cpu_weights_are_not_packed():
    weight = torch.randn(8, 4)
    linear = PackedLinear(weight)
    assert linear.packed is None  # fp32: plain F.linear (packing gains little there and is not bit-exact)
    x = torch.randn(3, 4)
    assert torch.equal(linear(x), F.linear(x, weight))
    assert not packing_applies(torch.zeros(2, 2, dtype=torch.bfloat16, device="meta"))
