"""The ``vllm`` engine: vLLM colocated in the training process (``LLM`` with its engine core in this process), for
GPUs: continuous batching, paged KV cache, prefix caching, CUDA graphs. vLLM is imported here only.

Weight sync is vLLM's own in-place reload (``Worker.reload_weights`` with a weights iterator, reached through
``LLM.collective_rpc``): each layer is restored to its checkpoint layout, the policy's tensors go through the layer's
own weight loaders (q/k/v and gate/up fused as at load time), the backend's process-weights-after-loading step runs
again (on vLLM's CPU build: every linear layer repacked into its ``cpu_linear`` kernel) and the result is copied
into the tensors the engine already holds, so CUDA graphs keep their pointers. No file is written. Both simpler
routes fail on the CPU build: after loading, a linear layer's ``weight`` is emptied (shape [0]) and its values live
packed in ``cpu_linear``, so copying into ``model.parameters()`` changes nothing, and ``model.load_weights`` alone
raises (the parameters no longer have a ``weight_loader``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time

import torch

from r1lab.rollout.base import SamplingParams, completion_mask_from_eos
from r1lab.rollout.native_engine import eos_token_ids
from r1lab.types import RolloutBatch

CPU_KV_CACHE_GB = 2.0  # vLLM's CPU default reserves most of the machine's RAM for the KV cache


@contextlib.contextmanager
def _process_state_kept():
    """Undo what building an in-process vLLM engine does to the trainer's process: it seeds torch's global RNG,
    drops torch to one thread for serving, and (CPU build) replaces ``torch.set_num_threads`` with a no-op."""
    rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    threads, set_num_threads = torch.get_num_threads(), torch.set_num_threads
    try:
        yield
    finally:
        torch.set_num_threads = set_num_threads
        torch.set_num_threads(threads)
        torch.random.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


class VLLMEngine:
    """vLLM generating from a copy of ``policy`` in ``dtype``, built once from the policy saved to a temporary
    folder (deleted once loaded) and refreshed in place by ``sync_weights`` after every optimizer step.

    ``max_model_len``: longest prompt + completion (0: the model's context length). ``kv_cache_gb``: KV cache size
    (0: ``CPU_KV_CACHE_GB`` on CPU, ``gpu_memory_utilization`` on GPU). ``sleep`` (GPU): between rollouts the engine
    sleeps (level 1: weights offloaded to CPU memory, KV cache freed), so the training step has the device.
    """

    def __init__(self, policy: torch.nn.Module, tokenizer, dtype: torch.dtype | None = None, min_new_tokens: int = 0,
                 max_model_len: int = 0, gpu_memory_utilization: float = 0.3, kv_cache_gb: float = 0.0,
                 sleep: bool = True, enforce_eager: bool = False, seed: int = 0):
        if torch.distributed.is_available() and torch.distributed.is_initialized() and (
                torch.distributed.get_world_size() > 1):
            # vLLM would take the trainer's process group for its own world; one engine per rank needs vLLM's
            # external-launcher mode, which this engine does not set up
            raise ValueError("rollout.engine=vllm runs in a single process; under torchrun use rollout.engine=native")
        # The engine core in this process, not a child: weights then sync by reference, with no copy through a pipe
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        from vllm import LLM
        from vllm.platforms import current_platform

        self.tokenizer = tokenizer
        self.min_new_tokens = min_new_tokens
        self.eos_ids = eos_token_ids(policy, tokenizer)
        on_cpu = current_platform.is_cpu()
        self.sleeps = sleep and not on_cpu
        dtype = dtype or next(policy.parameters()).dtype
        kv_cache_gb = kv_cache_gb or (CPU_KV_CACHE_GB if on_cpu else 0.0)
        options = dict(
            dtype=str(dtype).removeprefix("torch."), seed=seed, enforce_eager=enforce_eager or on_cpu,
            max_model_len=max_model_len or None, enable_prefix_caching=True,
            # log-probs of the distribution each token was drawn from (after temperature, top-k, top-p), as the
            # native engine records them; the default (raw) would be the untempered model's
            logprobs_mode="processed_logprobs",
            generation_config="vllm",  # no sampling defaults from the model's generation_config.json
        )
        if kv_cache_gb:
            options["kv_cache_memory_bytes"] = int(kv_cache_gb * 2**30)
        if not on_cpu:
            options.update(gpu_memory_utilization=gpu_memory_utilization, enable_sleep_mode=self.sleeps)
        with tempfile.TemporaryDirectory(prefix="r1lab-vllm-") as folder, _process_state_kept():
            policy.save_pretrained(folder, safe_serialization=True)
            tokenizer.save_pretrained(folder)
            self.llm = LLM(model=folder, tokenizer=folder, **options)
        self.asleep = False
        self._sleep()

    def _sleep(self) -> None:
        if self.sleeps and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def _wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    @torch.no_grad()
    def sync_weights(self, policy: torch.nn.Module) -> float:
        """Load ``policy``'s current weights into the engine, in place; returns the seconds it took."""
        start = time.perf_counter()
        self._wake()
        policy = getattr(policy, "module", policy)  # DDP's wrapper holds the model as .module
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(policy.state_dict().items()),
                                                          "is_checkpoint_format": True})
        # cached prompt key/values were computed with the old weights
        self.llm.reset_prefix_cache()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def generate(self, prompts: list[str], n: int, sampling: SamplingParams,
                 seeds: list[int] | None = None) -> RolloutBatch:
        """One vLLM request per prompt with ``n`` samples (greedy: ``n`` requests of one, vLLM refuses ``n`` > 1
        there; the prefix cache still computes the prompt once). ``seeds``: one per prompt (vLLM seeds sample j
        with seed + j); None: drawn from torch's global RNG, so a seeded run is reproducible."""
        from vllm import SamplingParams as VLLMSamplingParams

        tok = self.tokenizer
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)  # (U, P), left-padded
        token_ids = [row[keep.bool()].tolist() for row, keep in zip(enc.input_ids, enc.attention_mask)]  # unpadded
        greedy = sampling.temperature <= 0
        if seeds is None and not greedy:
            seeds = torch.randint(0, 2**62, (len(prompts),)).tolist()
        per_request = 1 if greedy else n
        params = [
            VLLMSamplingParams(
                n=per_request, temperature=max(sampling.temperature, 0.0), top_p=sampling.top_p,
                top_k=sampling.top_k, max_tokens=sampling.max_new_tokens, min_tokens=self.min_new_tokens,
                seed=None if greedy else int(seeds[i]), logprobs=0,  # 0: the sampled token's log-prob only
                stop_token_ids=self.eos_ids, detokenize=False,  # texts are decoded below, as the native engine does
            )
            for i in range(len(prompts)) for _ in range(n // per_request)
        ]
        requests = [{"prompt_token_ids": ids} for ids in token_ids for _ in range(n // per_request)]
        self._wake()
        outputs = self.llm.generate(requests, params, use_tqdm=False)  # in request order
        self._sleep()
        rows = [c for out in outputs for c in sorted(out.outputs, key=lambda c: c.index)]  # grouped by prompt
        width = max(len(c.token_ids) for c in rows)
        completion_ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)  # (B, C)
        logprobs = torch.zeros(len(rows), width)  # (B, C)
        for r, c in enumerate(rows):
            completion_ids[r, : len(c.token_ids)] = torch.tensor(c.token_ids, dtype=torch.long)
            logprobs[r, : len(c.token_ids)] = torch.tensor(
                [step[token].logprob for token, step in zip(c.token_ids, c.logprobs)])
        completion_mask, truncated = completion_mask_from_eos(completion_ids, self.eos_ids)
        lengths = completion_mask.sum(dim=1).long().tolist()
        texts = tok.batch_decode([row[:k] for row, k in zip(completion_ids.tolist(), lengths)],
                                 skip_special_tokens=True)
        return RolloutBatch(
            prompt_ids=enc.input_ids.repeat_interleave(n, dim=0),
            prompt_mask=enc.attention_mask.repeat_interleave(n, dim=0),
            completion_ids=completion_ids, completion_mask=completion_mask, truncated=truncated, texts=texts,
            group_size=n, rollout_logprobs=logprobs,
        )

    def close(self) -> None:
        """Free the engine (its KV cache and weight copy); the trainer's policy is untouched."""
        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
