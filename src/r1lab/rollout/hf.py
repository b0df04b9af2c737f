"""Batched rollouts with HF ``generate`` on a (possibly lower-precision) copy of the policy."""

from __future__ import annotations

import copy

import torch

from r1lab.rollout.base import SamplingParams, completion_mask_from_eos
from r1lab.types import RolloutBatch


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every id that ends a completion: the generation config's EOS ids plus the tokenizer's."""
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ValueError("the model has no EOS token id; set generation_config.eos_token_id")
    return ids


class HFGenerateEngine:
    """Generates with ``model.generate`` in ``dtype`` (e.g. bf16 rollouts from fp32 training weights).

    When ``dtype`` matches the policy's, the policy itself is used and ``sync_weights`` is free; otherwise the
    engine keeps its own copy, refreshed by ``sync_weights`` after each optimizer step.
    """

    def __init__(self, policy: torch.nn.Module, tokenizer, dtype: torch.dtype | None = None, batch_size: int = 64):
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        policy_dtype = next(policy.parameters()).dtype
        self.shares_policy = dtype is None or dtype == policy_dtype
        self.model = policy if self.shares_policy else copy.deepcopy(policy).to(dtype).eval()
        self.eos_ids = eos_token_ids(policy, tokenizer)

    @torch.no_grad()
    def sync_weights(self, policy: torch.nn.Module) -> None:
        if self.shares_policy:
            return
        for dst, src in zip(self.model.parameters(), policy.parameters()):
            dst.copy_(src)

    @torch.no_grad()
    def generate(self, prompts: list[str], n: int, sampling: SamplingParams) -> RolloutBatch:
        device = next(self.model.parameters()).device
        tok = self.tokenizer
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        prompt_ids = enc.input_ids.repeat_interleave(n, dim=0).to(device)  # (B, P), rows grouped by prompt
        prompt_mask = enc.attention_mask.repeat_interleave(n, dim=0).to(device)
        greedy = sampling.temperature <= 0
        gen_kwargs = dict(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=not greedy,
            eos_token_id=self.eos_ids,
            pad_token_id=tok.pad_token_id,
        )
        if not greedy:
            gen_kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k or None)
        else:  # the model's generation_config may carry sampling defaults; override them explicitly
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        was_training = self.model.training
        self.model.eval()
        chunks = []
        for start in range(0, prompt_ids.shape[0], self.batch_size):
            ids, mask = prompt_ids[start : start + self.batch_size], prompt_mask[start : start + self.batch_size]
            out = self.model.generate(input_ids=ids, attention_mask=mask, **gen_kwargs)
            chunks.append(out[:, ids.shape[1] :])
        if was_training:
            self.model.train()
        width = max(c.shape[1] for c in chunks)
        completion_ids = torch.cat(
            [torch.nn.functional.pad(c, (0, width - c.shape[1]), value=tok.pad_token_id) for c in chunks]
        )  # (B, C)
        completion_mask, truncated = completion_mask_from_eos(completion_ids, self.eos_ids)
        lengths = completion_mask.sum(dim=1).long().tolist()
        texts = tok.batch_decode([row[:k] for row, k in zip(completion_ids.tolist(), lengths)], skip_special_tokens=True)
        return RolloutBatch(
            prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids,
            completion_mask=completion_mask, truncated=truncated, texts=texts, group_size=n,
        )
