"""Batched rollouts with HF ``generate`` on a (possibly lower-precision) copy of the policy."""

from __future__ import annotations

import copy

import torch

from r1lab.algos.logprobs import position_ids_from_mask
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
        unique_ids, unique_mask = enc.input_ids.to(device), enc.attention_mask.to(device)  # (U, P)
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
        prompts_per_chunk = max(1, self.batch_size // n)  # whole groups per generate call
        for start in range(0, unique_ids.shape[0], prompts_per_chunk):
            ids, mask = unique_ids[start : start + prompts_per_chunk], unique_mask[start : start + prompts_per_chunk]
            chunks.append(self._generate_groups(ids, mask, n, gen_kwargs))
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
            prompt_ids=unique_ids.repeat_interleave(n, dim=0), prompt_mask=unique_mask.repeat_interleave(n, dim=0),
            completion_ids=completion_ids, completion_mask=completion_mask, truncated=truncated, texts=texts,
            group_size=n,
        )

    def _generate_groups(self, ids: torch.Tensor, mask: torch.Tensor, n: int, gen_kwargs: dict) -> torch.Tensor:
        """(U, P) prompts -> (U * n, C) completions, rows grouped by prompt.

        The n samples of a prompt share its prefix: all but the last prompt token are run once per prompt and the
        key/value cache is repeated n times, so the prefill costs 1/n of running every row (the last token is
        left to generate(), which needs at least one uncached input).
        """
        rows_ids, rows_mask = ids.repeat_interleave(n, dim=0), mask.repeat_interleave(n, dim=0)  # (U * n, P)
        if n == 1 or ids.shape[1] < 2:
            out = self.model.generate(input_ids=rows_ids, attention_mask=rows_mask, **gen_kwargs)
            return out[:, ids.shape[1] :]
        prefix_mask = mask[:, :-1]
        prefill = self.model(
            input_ids=ids[:, :-1], attention_mask=prefix_mask, position_ids=position_ids_from_mask(prefix_mask),
            use_cache=True, logits_to_keep=1,
        )
        cache = prefill.past_key_values
        cache.batch_repeat_interleave(n)
        out = self.model.generate(input_ids=rows_ids, attention_mask=rows_mask, past_key_values=cache, **gen_kwargs)
        return out[:, ids.shape[1] :]
