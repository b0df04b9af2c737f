"""The cache argument and output field across transformers' `past_key_values` -> `cache` rename."""

from __future__ import annotations

import inspect
import warnings

import torch

from r1lab.algos.logprobs import completion_logprobs
from r1lab.models.kv_cache import cache_argument_name, output_cache
from r1lab.models.tiny import tiny_model, tiny_tokenizer
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.native_engine import NativeEngine


class _OldForward(torch.nn.Module):
    def forward(self, input_ids, past_key_values=None, use_cache=False):
        return input_ids


class _NewForward(torch.nn.Module):
    def forward(self, input_ids, cache=None, use_cache=False):
        return input_ids


class _Wrapper(torch.nn.Module):  # like DDP or a PEFT model: the forward's signature says nothing
    def forward(self, *args, **kwargs):
        return None


def test_the_argument_name_follows_the_forward_signature():
    assert cache_argument_name(_OldForward()) == "past_key_values"
    assert cache_argument_name(_NewForward()) == "cache"
    assert cache_argument_name(_Wrapper()) == "past_key_values"  # every version until 5.40 takes the old name


def test_the_installed_transformers_model_gets_the_name_its_forward_declares():
    model = tiny_model(tiny_tokenizer())
    name = cache_argument_name(model)
    assert name in inspect.signature(model.forward).parameters


def test_output_cache_reads_either_field():
    cache = object()
    assert output_cache({"past_key_values": cache}) is cache
    assert output_cache({"cache": cache}) is cache
    assert output_cache({"logits": 1}) is None


def test_output_cache_of_a_real_forward_holds_the_prompt_keys():
    tok = tiny_tokenizer()
    model = tiny_model(tok).eval()
    ids = tok(["12+3="], return_tensors="pt").input_ids
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
    cache = output_cache(out)
    assert len(cache.layers) == model.config.num_hidden_layers
    assert cache.layers[0].keys.shape[-2] == ids.shape[1]  # (B, KV heads, positions, head dim)


def test_generation_and_training_forward_raise_no_deprecation_warning():
    """r1lab's own calls use the name the installed transformers wants, so users see no FutureWarning."""
    tok = tiny_tokenizer()
    model = tiny_model(tok).eval()
    enc = tok(["1+1=", "22+3="], return_tensors="pt", padding=True, padding_side="left")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        for fast_decode in (True, False):  # the Llama decoder and HF's own step
            engine = NativeEngine(model, tok, batch_size=2, fast_decode=fast_decode)
            engine.generate(["1+1=", "22+3="], 2, SamplingParams(max_new_tokens=4, temperature=1.0))
        completions = torch.tensor([[5, 6, 7], [8, 9, 10]])
        completion_logprobs(model, enc.input_ids, enc.attention_mask, completions, torch.ones_like(completions))
