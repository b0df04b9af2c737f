"""PackedLinear: oneDNN pre-packed bf16 weights give exactly F.linear's output, MKL pre-packed fp32 weights give it
up to the order of the sums; elsewhere it is F.linear."""

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


needs_fp32_mkl = pytest.mark.skipif(not packing_applies(torch.zeros(1, 1)), reason="this PyTorch build has no MKL")


@needs_fp32_mkl
@pytest.mark.parametrize("rows", [1, 17, 64, 100])  # packed for 64: other row counts run unpacked, still right
@pytest.mark.parametrize("with_bias", [False, True])
def test_packed_fp32_equals_f_linear_up_to_summation_order(rows, with_bias):
    gen = torch.Generator().manual_seed(rows)
    weight = torch.randn(96, 1536, generator=gen)  # a long reduction, where MKL's blocking may reorder the sums
    bias = torch.randn(96, generator=gen) if with_bias else None
    x = torch.randn(rows, 1536, generator=gen)
    linear = PackedLinear(weight, bias, rows_hint=64)
    assert linear.packed is not None and linear.rows_exact
    torch.testing.assert_close(linear(x), F.linear(x, weight, bias), rtol=1e-6, atol=1e-5)


def test_half_precision_and_non_cpu_weights_are_not_packed():
    weight = torch.randn(8, 4, dtype=torch.float16)
    linear = PackedLinear(weight)
    assert linear.packed is None and not linear.rows_exact  # fp16: plain F.linear
    x = torch.randn(3, 4, dtype=torch.float16)
    assert torch.equal(linear(x), F.linear(x, weight))
    assert not packing_applies(torch.zeros(2, 2, dtype=torch.bfloat16, device="meta"))
    assert not packing_applies(torch.zeros(2, 2, device="meta"))
