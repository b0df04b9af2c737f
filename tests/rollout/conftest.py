"""Fixtures shared by the rollout tests."""

from __future__ import annotations

import pytest
import torch

from r1lab.algos.logprobs import position_ids_from_mask
from r1lab.models.kv_cache import cache_argument_name, output_cache
from r1lab.models.tiny import tiny_tokenizer
from r1lab.rollout.llama_decode import LlamaDecoder


def _decode_two_prompts(model, steps: int = 5, native_kernels: bool = True):
    """Feeds the same tokens through HF's cached forward and through a LlamaDecoder (two left-padded prompts of
    different lengths; each next token is HF's argmax). Returns HF's logits, the decoder's, and the decoder."""
    tok = tiny_tokenizer()
    enc = tok(["12+3=", "a longer prompt: 40+2="], return_tensors="pt", padding=True, padding_side="left")
    ids, mask = enc.input_ids, enc.attention_mask
    P = ids.shape[1]
    with torch.no_grad():
        prefill = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask), use_cache=True)
        hf_cache = output_cache(prefill)
        decoder = LlamaDecoder(model, native_kernels=native_kernels)
        decoder.refresh_weights()
        decoder.prefill(hf_cache, 1, P + steps)
        slots = torch.zeros(2, P + steps, dtype=torch.bool)
        slots[:, :P] = mask.bool()
        attn, position = mask.clone(), mask.sum(dim=1, keepdim=True) - 1
        hf_logits, ours = [], []
        token = prefill.logits[:, -1].argmax(dim=-1)
        for t in range(steps):
            attn = torch.cat([attn, attn.new_ones(2, 1)], dim=1)
            position = position + 1
            slots[:, P + t] = True
            ours.append(decoder.step(token, position, P + t, slots[:, : P + t + 1]))
            hf_logits.append(model(input_ids=token[:, None], attention_mask=attn, position_ids=position,
                                   use_cache=True, **{cache_argument_name(model): hf_cache}).logits[:, -1])
            token = hf_logits[-1].argmax(dim=-1)
    return hf_logits, ours, decoder


@pytest.fixture
def decode_two_prompts():
    """``_decode_two_prompts`` (model, steps=5, native_kernels=True) -> (HF logits, decoder logits, decoder)."""
    return _decode_two_prompts


def _sampling_logprobs(model, batch, sampling, eos_ids=(), min_new_tokens: int = 0) -> torch.Tensor:
    """(B, C) log-prob of each sampled token under the distribution it was drawn from, from one full forward pass
    of prompt + completion: EOS banned before ``min_new_tokens``, then temperature, top-k, top-p (greedy: the
    model's own distribution); 0 past each EOS. The oracle for every engine's ``rollout_logprobs``."""
    from r1lab.rollout.sampling import warp_logits

    ids = torch.cat([batch.prompt_ids, batch.completion_ids], dim=1)  # (B, P + C)
    mask = torch.cat([batch.prompt_mask, torch.ones_like(batch.completion_ids)], dim=1)
    P, C = batch.prompt_ids.shape[1], batch.completion_ids.shape[1]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits.float()
    out = []
    for t in range(C):
        x = logits[:, P + t - 1].clone()  # (B, V): the logits token t was drawn from
        if t < min_new_tokens:
            x[:, list(eos_ids)] = float("-inf")
        if sampling.temperature > 0:
            x = warp_logits(x, sampling)
        out.append(x.log_softmax(dim=-1).gather(1, batch.completion_ids[:, t : t + 1]).squeeze(1))
    logp = torch.stack(out, dim=1)  # (B, C); pads past EOS may be tokens top-k or top-p excluded (-inf)
    return torch.where(batch.completion_mask.bool(), logp, torch.zeros_like(logp))


@pytest.fixture
def sampling_logprobs():
    """``_sampling_logprobs`` (model, batch, sampling, eos_ids=(), min_new_tokens=0) -> (B, C) oracle log-probs."""
    return _sampling_logprobs
