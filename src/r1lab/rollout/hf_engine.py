"""The ``hf`` engine: plain ``transformers`` ``model.generate``, the slow reference the other engines are checked
against (no shared prefill, no rows leaving the batch, no static cache)."""

from __future__ import annotations

import copy
import time

import torch

from r1lab.rollout.base import SamplingParams, completion_mask_from_eos, copy_weights
from r1lab.rollout.native_engine import eos_token_ids
from r1lab.types import RolloutBatch


class HFEngine:
    """``generate`` on the policy itself, or on a copy in ``dtype`` refreshed by ``sync_weights``."""

    def __init__(self, policy: torch.nn.Module, tokenizer, dtype: torch.dtype | None = None, batch_size: int = 64,
                 min_new_tokens: int = 0):
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.min_new_tokens = min_new_tokens
        self.shares_policy = dtype is None or dtype == next(policy.parameters()).dtype
        self.model = policy if self.shares_policy else copy.deepcopy(policy).to(dtype).eval()
        self.eos_ids = eos_token_ids(policy, tokenizer)

    @torch.no_grad()
    def sync_weights(self, policy: torch.nn.Module) -> float:
        start = time.perf_counter()
        if not self.shares_policy:
            copy_weights(self.model, policy)
        return time.perf_counter() - start

    @torch.no_grad()
    def generate(self, prompts: list[str], n: int, sampling: SamplingParams,
                 seeds: list[int] | None = None) -> RolloutBatch:
        """``seeds``: one per prompt; each prompt's n samples are then drawn from the global RNG seeded with it
        (``generate`` takes no generator), one prompt per call."""
        from transformers import GenerationConfig

        device = next(self.model.parameters()).device
        tok = self.tokenizer
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        # each prompt repeated for its n samples (generate refuses num_return_sequences > 1 when greedy)
        ids = enc.input_ids.to(device).repeat_interleave(n, dim=0)  # (B, P), left-padded, grouped by prompt
        mask = enc.attention_mask.to(device).repeat_interleave(n, dim=0)
        greedy = sampling.temperature <= 0
        # A fresh config: the model's own generation_config may carry sampling defaults (top_k=50, a repetition
        # penalty) that the other engines do not apply. Every logits processor is then one r1lab asked for.
        config = GenerationConfig(
            do_sample=not greedy, max_new_tokens=sampling.max_new_tokens, min_new_tokens=self.min_new_tokens,
            eos_token_id=self.eos_ids, pad_token_id=tok.pad_token_id, use_cache=True,
            output_scores=True, return_dict_in_generate=True,
            **({} if greedy else {"temperature": sampling.temperature, "top_p": sampling.top_p,
                                  "top_k": sampling.top_k}),
        )
        per_call = 1 if seeds is not None and not greedy else max(1, self.batch_size // n)  # prompts per call
        spans = [(i, min(i + per_call, len(prompts))) for i in range(0, len(prompts), per_call)]
        was_training = self.model.training
        self.model.eval()
        chunks = []
        for start, end in spans:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                if seeds is not None and not greedy:
                    torch.manual_seed(seeds[start])
                out = self.model.generate(input_ids=ids[start * n : end * n], attention_mask=mask[start * n : end * n],
                                          generation_config=config)
            completion = out.sequences[:, ids.shape[1]:]  # (rows, C)
            # scores are the processed logits each token was drawn from (after min_new_tokens, temperature, top-k,
            # top-p; greedy: the model's own), so their log-softmax is the sampling distribution
            scores = torch.stack(out.scores, dim=1).float()  # (rows, C, V)
            logp = scores.log_softmax(dim=-1).gather(2, completion.unsqueeze(2)).squeeze(2)  # (rows, C)
            chunks.append((completion, logp))
        if was_training:
            self.model.train()
        width = max(c.shape[1] for c, _ in chunks)
        completion_ids = torch.cat(
            [torch.nn.functional.pad(c, (0, width - c.shape[1]), value=tok.pad_token_id) for c, _ in chunks])
        completion_mask, truncated = completion_mask_from_eos(completion_ids, self.eos_ids)  # (B, C), (B,)
        logprobs = torch.cat([torch.nn.functional.pad(lp, (0, width - lp.shape[1])) for _, lp in chunks])
        logprobs = torch.where(completion_mask.bool(), logprobs, torch.zeros_like(logprobs))  # pads after EOS: 0
        lengths = completion_mask.sum(dim=1).long().tolist()
        texts = tok.batch_decode([row[:k] for row, k in zip(completion_ids.tolist(), lengths)], skip_special_tokens=True)
        return RolloutBatch(
            prompt_ids=ids, prompt_mask=mask,
            completion_ids=completion_ids, completion_mask=completion_mask, truncated=truncated, texts=texts,
            group_size=n, rollout_logprobs=logprobs,
        )
