"""The ``native`` engine: r1lab's own decode loop, batched rollouts on a (possibly lower-precision) copy of the
policy. HF ``generate``'s loop with shared prompt prefill and finished sequences leaving the batch; Llama-family
models decode on ``LlamaDecoder``'s static cache (and r1lab's C kernels), others on HF's own forward."""

from __future__ import annotations

import copy
import time

import torch

from r1lab.algos.logprobs import position_ids_from_mask
from r1lab.models.kv_cache import cache_argument_name, output_cache
from r1lab.rollout.base import SamplingParams, completion_mask_from_eos, copy_weights
from r1lab.rollout.llama_decode import LlamaDecoder, unsupported_reason
from r1lab.rollout.sampling import next_tokens, row_generators, row_uniforms
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


class NativeEngine:
    """Generates in ``dtype`` (e.g. bf16 rollouts from fp32 training weights).

    When ``dtype`` matches the policy's, the policy itself is used and ``sync_weights`` copies nothing; otherwise
    the engine keeps its own copy, refreshed by ``sync_weights``. Call it after every change to the policy's
    weights (each optimizer step, a checkpoint load) in both cases: the decoder's fused copies follow it.
    ``fast_decode``: decode Llama-family models with ``LlamaDecoder`` (same tokens as HF's step, see
    tests/rollout); False, or a model outside the family, uses HF's forward for every token. ``native_kernels``:
    ``LlamaDecoder``'s step on r1lab's C kernels where they apply (CPU, bf16 or fp32; see
    ``rollout.native_kernels``), otherwise on PyTorch's ops.
    """

    def __init__(self, policy: torch.nn.Module, tokenizer, dtype: torch.dtype | None = None, batch_size: int = 64,
                 min_new_tokens: int = 0, fast_decode: bool = True, native_kernels: bool = True):
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.min_new_tokens = min_new_tokens  # EOS is banned before this many tokens (HF's min_new_tokens)
        policy_dtype = next(policy.parameters()).dtype
        self.shares_policy = dtype is None or dtype == policy_dtype
        self.model = policy if self.shares_policy else copy.deepcopy(policy).to(dtype).eval()
        self.eos_ids = eos_token_ids(policy, tokenizer)
        self.decoder = None
        if fast_decode and unsupported_reason(self.model) is None:  # a private copy: its weights may be re-laid out
            self.decoder = LlamaDecoder(self.model, own_weights=not self.shares_policy,
                                        native_kernels=native_kernels)

    @torch.no_grad()
    def sync_weights(self, policy: torch.nn.Module) -> float:
        """Follows ``policy``'s current weights; returns the seconds it took."""
        start = time.perf_counter()
        if not self.shares_policy:
            copy_weights(self.model, policy)
        if self.decoder is not None:
            # Told, not detected: fused optimizers (AdamW fused=True, r1lab's default) update parameters in place
            # without moving their version counters, so over shared weights the decoder would keep decoding with
            # its fused copies of the weights from before the step.
            self.decoder.weights_changed()
        return time.perf_counter() - start

    @torch.no_grad()
    def generate(self, prompts: list[str], n: int, sampling: SamplingParams,
                 seeds: list[int] | None = None) -> RolloutBatch:
        """``seeds``: one per prompt; sample j of prompt i then draws from its own generator
        (``rollout.sampling.row_generators``), so its tokens depend on nothing else in the batch. None: the global
        RNG."""
        device = next(self.model.parameters()).device
        tok = self.tokenizer
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        unique_ids, unique_mask = enc.input_ids.to(device), enc.attention_mask.to(device)  # (U, P)
        was_training = self.model.training
        self.model.eval()
        chunks = []
        prompts_per_chunk = max(1, self.batch_size // n)  # whole groups per decode batch
        for start in range(0, unique_ids.shape[0], prompts_per_chunk):
            ids, mask = unique_ids[start : start + prompts_per_chunk], unique_mask[start : start + prompts_per_chunk]
            generators = None
            if seeds is not None and sampling.temperature > 0:
                generators = row_generators(seeds[start : start + prompts_per_chunk], n)
            chunks.append(self._generate_groups(ids, mask, n, sampling, generators))
        if was_training:
            self.model.train()
        width = max(c.shape[1] for c, _ in chunks)
        completion_ids = torch.cat(
            [torch.nn.functional.pad(c, (0, width - c.shape[1]), value=tok.pad_token_id) for c, _ in chunks]
        )  # (B, C)
        logprobs = torch.cat([torch.nn.functional.pad(lp, (0, width - lp.shape[1])) for _, lp in chunks])  # (B, C)
        completion_mask, truncated = completion_mask_from_eos(completion_ids, self.eos_ids)
        lengths = completion_mask.sum(dim=1).long().tolist()
        texts = tok.batch_decode([row[:k] for row, k in zip(completion_ids.tolist(), lengths)], skip_special_tokens=True)
        return RolloutBatch(
            prompt_ids=unique_ids.repeat_interleave(n, dim=0), prompt_mask=unique_mask.repeat_interleave(n, dim=0),
            completion_ids=completion_ids, completion_mask=completion_mask, truncated=truncated, texts=texts,
            group_size=n, rollout_logprobs=logprobs,
        )

    @torch.no_grad()
    def generate_ids(self, sequences: list[list[int]], sampling: SamplingParams, seeds: list[int] | None = None,
                     stop=None) -> tuple[list[list[int]], list[list[float]]]:
        """One continuation of each token sequence (the multi-turn rollouts' entry, r1lab.rollout.tools): its tokens,
        through the first EOS, and their log-probs. ``seeds``: one per sequence (its generator is that of sample 0
        of a prompt with that seed). ``stop(i, token) -> bool``: called for each token sequence i samples while it
        decodes; True ends that row's continuation after the token (a tool call), and the row leaves the batch."""
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id
        was_training = self.model.training
        self.model.eval()
        tokens, logps = [], []
        for start in range(0, len(sequences), self.batch_size):
            chunk = sequences[start : start + self.batch_size]
            width = max(len(s) for s in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            for i, seq in enumerate(chunk):  # left-padded, as the prompts of generate()
                ids[i, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
                mask[i, width - len(seq):] = 1
            generators = None
            if seeds is not None and sampling.temperature > 0:
                generators = row_generators(seeds[start : start + len(chunk)], 1)
            stopped: dict[int, int] = {}
            row_stop = None
            if stop is not None:
                def row_stop(row: int, token: int, step: int, start=start) -> bool:
                    if stop(start + row, token):
                        stopped[row] = step
                        return True
                    return False
            out, out_logp = self._generate_groups(ids.to(device), mask.to(device), 1, sampling, generators, row_stop)
            for i, (row, row_logp) in enumerate(zip(out.tolist(), out_logp.tolist())):
                end = len(row)
                eos = [t for t, tok in enumerate(row) if tok in self.eos_ids]
                if eos:
                    end = eos[0] + 1
                if i in stopped:
                    end = min(end, stopped[i] + 1)
                tokens.append(row[:end])
                logps.append(row_logp[:end])
        if was_training:
            self.model.train()
        return tokens, logps

    def _generate_groups(self, ids: torch.Tensor, mask: torch.Tensor, n: int, sampling: SamplingParams,
                         generators: list[torch.Generator] | None = None,
                         stop=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(U, P) left-padded prompts -> (U * n, C) completions, rows grouped by prompt, padded after EOS, and the
        (U * n, C) log-probs of those tokens under the distribution they were sampled from (0 after EOS).

        The decode loop of HF ``generate`` (same positions, masks, cache and sampling), with two savings:
        each prompt is prefilled once and its key/value cache repeated for its n samples, and finished rows
        leave the batch (their cache rows are dropped once a quarter of the batch has finished, so the copy of
        the cache is paid a few times, not once per finished row). Positions are laid out as in the cache: prompt
        slots 0..P-1, completion token t in slot P + t; ``slots`` (rows, P + max_new_tokens) says which a row may
        attend to, and its first P + t + 1 columns are the attention mask of step t on either decode path (with
        ``self.decoder`` the keys and values live in its static cache, otherwise in HF's). ``stop(row, token, t)``
        (optional): True ends output row ``row`` after its token t, as an EOS would.
        """
        U, P = ids.shape
        B, device = U * n, ids.device
        eos = torch.tensor(self.eos_ids, device=device)
        out = torch.full((B, sampling.max_new_tokens), self.tokenizer.pad_token_id, dtype=torch.long, device=device)
        out_logp = torch.zeros(B, sampling.max_new_tokens, device=device)
        prefill = self.model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                             use_cache=True, logits_to_keep=1)
        cache = output_cache(prefill)
        if self.decoder is not None:
            self.decoder.refresh_weights(B)
            self.decoder.prefill(cache, n, P + sampling.max_new_tokens)
        else:
            cache.batch_repeat_interleave(n)
        logits = prefill.logits[:, -1].repeat_interleave(n, dim=0)  # (B, V)
        # (rows, slots): which positions each row still in the batch attends to
        slots = torch.zeros(B, P + sampling.max_new_tokens, dtype=torch.bool, device=device)
        slots[:, :P] = mask.bool().repeat_interleave(n, dim=0)
        position = slots.sum(dim=1, keepdim=True) - 1  # (rows, 1) position of the last token
        rows = torch.arange(B, device=device)  # batch row -> output row
        done = torch.zeros(B, dtype=torch.bool, device=device)  # per batch row
        scratch = torch.empty(logits.shape, dtype=torch.float32, device=device)  # the sampler's, for the whole loop
        cache_name = cache_argument_name(self.model)  # HF's step only: `cache` or `past_key_values`
        for t in range(sampling.max_new_tokens):
            uniforms = row_uniforms(generators, rows.tolist()) if generators is not None else None
            token, logp = next_tokens(logits, sampling, banned=eos if t < self.min_new_tokens else None,
                                      scratch=scratch, uniforms=uniforms)  # (rows,)
            live = ~done
            written = rows[live]
            out[written, t], out_logp[written, t] = token[live], logp[live]
            done = done | torch.isin(token, eos)
            if stop is not None:  # e.g. the end of a tool call: the row's turn is over, it leaves the batch
                hits = [i for i, (row, tok) in enumerate(zip(rows.tolist(), token.tolist()))
                        if bool(live[i]) and stop(row, tok, t)]
                if hits:
                    done[hits] = True
            if t == sampling.max_new_tokens - 1 or bool(done.all()):
                break
            if int(done.sum()) * 4 >= len(rows):  # drop finished rows from the batch and the cache
                keep = (~done).nonzero().squeeze(1)
                rows, token, slots, position, done = rows[keep], token[keep], slots[keep], position[keep], done[keep]
                if self.decoder is not None:
                    self.decoder.select_rows(keep)
                else:
                    cache.batch_select_indices(keep)
            position = position + 1
            slots[:, P + t] = True
            if self.decoder is not None:
                logits = self.decoder.step(token, position, P + t, slots[:, : P + t + 1])
            else:
                logits = self.model(input_ids=token.unsqueeze(1), attention_mask=slots[:, : P + t + 1],
                                    position_ids=position, use_cache=True, **{cache_name: cache}).logits[:, -1]
        if self.decoder is not None:
            self.decoder.release()  # the cache is not held while the policy trains
        return out[:, : t + 1], out_logp[:, : t + 1]  # as wide as the longest completion, like generate()
