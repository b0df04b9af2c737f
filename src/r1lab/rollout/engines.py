"""The rollout engine a job generates with, chosen by ``rollout.engine`` (native | hf | vllm); every engine keeps the
``RolloutEngine`` contract of ``rollout.base``. Each engine's module is imported only when it is chosen."""

from __future__ import annotations

import torch

from r1lab.config import ENGINES, RolloutConfig
from r1lab.rollout.base import RolloutEngine


def build_engine(rollout: RolloutConfig, policy: torch.nn.Module, tokenizer, dtype: torch.dtype | None = None,
                 seed: int = 0, max_new_tokens: int = 0) -> RolloutEngine:
    """The engine ``rollout.engine`` names, generating from ``policy`` in ``dtype`` (None: the policy's own).

    ``seed``: the vLLM engine's own seed (the other engines draw from torch's RNG or per-row generators).
    ``max_new_tokens``: the longest completion any caller will ask for (0: ``rollout.max_new_tokens``); with
    ``rollout.max_prompt_tokens`` it bounds vLLM's sequence length.
    """
    if rollout.engine == "native":
        from r1lab.rollout.native_engine import NativeEngine

        return NativeEngine(policy, tokenizer, dtype=dtype, batch_size=rollout.batch_size,
                            min_new_tokens=rollout.min_new_tokens, fast_decode=rollout.fast_decode,
                            native_kernels=rollout.native_kernels)
    if rollout.engine == "hf":
        from r1lab.rollout.hf_engine import HFEngine

        return HFEngine(policy, tokenizer, dtype=dtype, batch_size=rollout.batch_size,
                        min_new_tokens=rollout.min_new_tokens)
    if rollout.engine == "vllm":
        from r1lab.rollout.vllm_engine import VLLMEngine

        longest = max(max_new_tokens, rollout.max_new_tokens)
        v = rollout.vllm
        return VLLMEngine(policy, tokenizer, dtype=dtype, min_new_tokens=rollout.min_new_tokens,
                          max_model_len=rollout.max_prompt_tokens + longest if rollout.max_prompt_tokens else 0,
                          gpu_memory_utilization=v.gpu_memory_utilization, kv_cache_gb=v.kv_cache_gb, sleep=v.sleep,
                          enforce_eager=v.enforce_eager, seed=seed)
    raise ValueError(f"unknown rollout engine {rollout.engine!r}; known: {', '.join(ENGINES)}")
