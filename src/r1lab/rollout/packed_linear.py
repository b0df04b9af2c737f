"""``F.linear`` with the weight laid out once, ahead of time, in oneDNN's blocked format (CPU, bf16).

A bf16 ``F.linear`` on CPU runs through oneDNN, which reorders the weight into its blocked (AMX/AVX-512) layout on
every call. In decode the weights are most of a step's memory traffic (64 rows x 135M parameters), so that
reorder is paid per token: packing once per rollout made a SmolLM2-135M decode step's matmuls 1.35-2.17x faster
on the reference Xeon (benchmarks/decode_kernels.py, two runs), with bit-identical outputs, because the same
oneDNN kernel computes both. These are the ops torch.compile's CPU backend emits for frozen linears; they are
private to PyTorch, so ``PackedLinear`` falls back to plain ``F.linear`` (``packed`` is None) wherever they are
missing or do not apply (GPU, fp32, no oneDNN bf16 support).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def packing_applies(weight: torch.Tensor) -> bool:
    """Whether ``weight`` can be pre-packed: a bf16 CPU tensor on a build whose oneDNN runs bf16."""
    if weight.device.type != "cpu" or weight.dtype != torch.bfloat16 or not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class PackedLinear:
    """y = x W^T + b for (rows, in) inputs. ``rows_hint`` is the expected number of rows (oneDNN picks its
    blocking for it; other row counts stay correct)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, rows_hint: int = 64):
        self.weight, self.bias = weight, bias
        self.packed = None
        if packing_applies(weight):
            try:
                self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows_hint)
            except (AttributeError, RuntimeError):  # a PyTorch without the op: the plain matmul
                self.packed = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None:
            return F.linear(x, self.weight, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
