"""Training attention for grouped-query models on CPU: HF's eager attention without its copies.

HF's eager attention (``eager_attention_forward``) repeats every key/value head for its query heads
(``repeat_kv``, a copy of K and V, and a reduction of their gradients in backward), scales the (B, H, L, S)
scores, adds a float mask and runs the softmax in fp32 before casting back. This function computes the same
attention with

- the query heads of each key/value head stacked as one matrix (B, KV, group * L, D): one matmul per key/value
  head reads K and V once, nothing is repeated;
- the scale folded into the (smaller) queries;
- the boolean mask applied in place to the scores, and the softmax run on them in their own dtype (PyTorch's CPU
  softmax accumulates in fp32 for bf16 and rounds once, as HF's fp32 softmax followed by the cast does).

On SmolLM2-135M's GRPO shapes (16 sequences, 127 queries, 167 keys, 9 query / 3 key-value heads, bf16) one
layer's attention forward + backward took 18.0 ms against eager's 27.0 ms on the reference Xeon
(benchmarks/train_kernels.py). Registered with transformers' AttentionInterface (and its mask interface, boolean
masks) under ``GQA_EAGER``; the training forward selects it through ``training_attention`` (algos/logprobs.py)
for the model types in ``GQA_EAGER_MODELS``, whose eager attention is exactly this computation (no soft-capping,
no attention sinks).
"""

from __future__ import annotations

import torch

GQA_EAGER = "r1lab_gqa_eager"
GQA_EAGER_MODELS = ("llama", "qwen2", "qwen3", "mistral")


def gqa_eager_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0,
                        **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, L, D) queries over (B, KV, S, D) keys/values; ``attention_mask`` (B, 1, L, >=S) is True where a query
    may attend. Returns the (B, L, H, D) output and the (B, H, L, S) attention weights, as HF's eager does."""
    B, H, L, D = query.shape
    KV, S = key.shape[1], key.shape[2]
    group = H // KV
    if attention_mask is None and L > 1 and getattr(module, "is_causal", True):  # no mask given: causal, the
        # queries being the last L of the S positions (the mask builder registered below always gives one)
        attention_mask = torch.ones(L, S, dtype=torch.bool, device=query.device).tril(S - L).view(1, 1, L, S)
    q = (query * scaling).reshape(B, KV, group * L, D)  # head kv * group + j is row block j of kv's matrix
    scores = torch.matmul(q, key.transpose(2, 3)).view(B, KV, group, L, S)
    if attention_mask is not None:
        blocked = ~attention_mask[:, :, :, :S].unsqueeze(2)  # (B or 1, 1, 1, L, S)
        scores.masked_fill_(blocked, torch.finfo(scores.dtype).min)  # finite: a fully masked row stays uniform
    weights = torch.softmax(scores, dim=-1)
    if dropout and module.training:
        weights = torch.nn.functional.dropout(weights, p=dropout)
    out = torch.matmul(weights.view(B, KV, group * L, S), value)  # (B, KV, group * L, D)
    return out.view(B, H, L, D).transpose(1, 2).contiguous(), weights.view(B, H, L, S)


def _boolean_mask(*args, **kwargs):
    """HF's SDPA mask builder, but never skipped for plain causal attention (this function needs the mask)."""
    from transformers.masking_utils import sdpa_mask

    kwargs["allow_is_causal_skip"] = False
    return sdpa_mask(*args, **kwargs)


def register() -> None:
    """Makes ``GQA_EAGER`` a valid ``config._attn_implementation`` (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(GQA_EAGER, gqa_eager_attention)
    AttentionMaskInterface.register(GQA_EAGER, _boolean_mask)
