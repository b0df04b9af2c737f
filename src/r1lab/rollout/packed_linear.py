"""``F.linear`` with the weight laid out once, ahead of time, for the CPU's matmul library (bf16 and fp32).

On CPU, ``F.linear`` re-lays the weight out for its kernel on every call: oneDNN reorders a bf16 weight into its
blocked (AMX/AVX-512) layout, MKL packs an fp32 one for its sgemm. In decode the weights are most of a step's
memory traffic (64 rows x 135M parameters), so that re-layout is paid per token:

- bf16: oneDNN's pre-packed weights made a SmolLM2-135M decode step's matmuls 1.35-2.17x faster on the reference
  Xeon (benchmarks/decode_kernels.py, two runs), with bit-identical outputs (the same oneDNN kernel computes
  both);
- fp32: MKL's packed sgemm made them 1.25x faster on an AVX-512 Xeon without AMX (87.4 against 69.8 ms per step,
  benchmarks/decode_kernels.py), equal to ``F.linear`` up to the order of the sums (and bit-equal at most shapes).
  MKL uses the packed weight only for inputs with exactly the ``rows_hint`` rows it was packed for (other row
  counts are computed unpacked, correctly), so the decoder re-packs when rows leave its batch.

These are the ops torch.compile's CPU backend emits for frozen linears; they are private to PyTorch, so
``PackedLinear`` falls back to plain ``F.linear`` (``packed`` is None) wherever they are missing or do not apply
(GPU, fp16, no oneDNN bf16 support, a build without MKL).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def packing_applies(weight: torch.Tensor) -> bool:
    """Whether ``weight`` can be pre-packed: a CPU tensor, bf16 on a build whose oneDNN runs bf16, or fp32 on a
    build with MKL."""
    if weight.device.type != "cpu":
        return False
    try:
        if weight.dtype == torch.bfloat16:
            return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        if weight.dtype == torch.float32:
            return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_reorder_linear_weight")
    except (AttributeError, RuntimeError):
        pass
    return False


class PackedLinear:
    """y = x W^T + b for (rows, in) inputs. ``rows_hint`` is the expected number of rows (oneDNN picks its
    blocking for it; other row counts stay correct)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, rows_hint: int = 64):
        self.weight, self.bias, self.rows_hint = weight.detach(), bias, rows_hint
        self.packed = None
        if packing_applies(weight):
            try:
                if weight.dtype == torch.float32:
                    self.packed = torch.ops.mkl._mkl_reorder_linear_weight(self.weight, rows_hint)
                else:
                    self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, rows_hint)
            except (AttributeError, RuntimeError):  # a PyTorch without the op: the plain matmul
                self.packed = None

    @property
    def rows_exact(self) -> bool:
        """Whether the packing serves only inputs of exactly ``rows_hint`` rows (MKL's fp32 packing)."""
        return self.packed is not None and self.weight.dtype == torch.float32

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None:
            return F.linear(x, self.weight, self.bias)
        if self.weight.dtype == torch.float32:  # MKL: packed for rows_hint rows, the original weight for others
            return torch.ops.mkl._mkl_linear(x, self.packed, self.weight, self.bias, self.rows_hint)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
