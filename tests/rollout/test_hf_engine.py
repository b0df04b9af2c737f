"""The hf engine (plain transformers generate) against the native engine, and the engine factory."""

import pytest
import torch

from r1lab.config import RolloutConfig
from r1lab.models.loading import prepare_tokenizer
from r1lab.models.tiny import tiny_model, tiny_tokenizer
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.engines import build_engine
from r1lab.rollout.hf_engine import HFEngine
from r1lab.rollout.native_engine import NativeEngine

PROMPTS = ["1+1=", "a much longer prompt: 22+33=", "x"]


def _policy():
    tok = tiny_tokenizer()
    prepare_tokenizer(tok)
    model = tiny_model(tok, seed=1)
    model.generation_config.eos_token_id = tok.eos_token_id
    return model, tok


def test_greedy_tokens_and_log_probs_equal_the_native_engine():
    model, tok = _policy()
    greedy = SamplingParams(temperature=0.0, max_new_tokens=10)
    ours = HFEngine(model, tok, batch_size=4).generate(PROMPTS, n=2, sampling=greedy)
    native = NativeEngine(model, tok, batch_size=4).generate(PROMPTS, n=2, sampling=greedy)
    assert ours.group_size == 2 and ours.completion_ids.shape[0] == 6
    assert torch.equal(ours.prompt_ids, native.prompt_ids) and torch.equal(ours.prompt_mask, native.prompt_mask)
    assert torch.equal(ours.completion_mask, native.completion_mask)
    m = ours.completion_mask.bool()
    assert torch.equal(ours.completion_ids[m], native.completion_ids[m])
    assert ours.texts == native.texts
    torch.testing.assert_close(ours.rollout_logprobs, native.rollout_logprobs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("sampling", [SamplingParams(temperature=0.7, top_k=20, max_new_tokens=12),
                                      SamplingParams(temperature=1.3, top_p=0.8, max_new_tokens=12),
                                      SamplingParams(temperature=0.0, max_new_tokens=12)],
                         ids=["temperature-top-k", "top-p", "greedy"])
def test_log_probs_are_those_of_the_sampling_distribution(sampling, sampling_logprobs):
    model, tok = _policy()
    engine = HFEngine(model, tok, batch_size=64, min_new_tokens=3)
    torch.manual_seed(0)
    batch = engine.generate(PROMPTS, n=4, sampling=sampling)
    expected = sampling_logprobs(model, batch, sampling, engine.eos_ids, min_new_tokens=3)
    torch.testing.assert_close(batch.rollout_logprobs, expected, rtol=0, atol=1e-5)
    assert (batch.lengths >= 4).all() | batch.truncated.all()  # EOS banned for the first 3 tokens
    if sampling.top_k:  # every sampled token is among the top 20
        assert (batch.rollout_logprobs[batch.completion_mask.bool()] > float("-inf")).all()


def test_seeds_make_each_prompt_reproducible():
    model, tok = _policy()
    engine = HFEngine(model, tok)
    hot = SamplingParams(temperature=1.0, max_new_tokens=8)
    first = engine.generate(PROMPTS, n=3, sampling=hot, seeds=[1, 2, 3])
    again = engine.generate(PROMPTS, n=3, sampling=hot, seeds=[1, 2, 3])
    other = engine.generate(PROMPTS, n=3, sampling=hot, seeds=[4, 5, 6])
    assert first.texts == again.texts and first.texts != other.texts
    assert len(set(first.texts[:3])) > 1  # the n samples of one prompt differ


def test_a_lower_precision_copy_follows_the_policy_after_sync():
    model, tok = _policy()
    engine = HFEngine(model, tok, dtype=torch.bfloat16)
    assert not engine.shares_policy
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    assert isinstance(engine.sync_weights(model), float)
    for dst, src in zip(engine.model.parameters(), model.parameters()):
        torch.testing.assert_close(dst, src.to(torch.bfloat16))


@pytest.mark.parametrize("name, cls", [("native", NativeEngine), ("hf", HFEngine)])
def test_build_engine_returns_the_configured_engine(name, cls):
    model, tok = _policy()
    engine = build_engine(RolloutConfig(engine=name, batch_size=5, min_new_tokens=2), model, tok)
    assert isinstance(engine, cls) and engine.batch_size == 5 and engine.min_new_tokens == 2


def test_the_vllm_engine_without_vllm_is_a_config_error_naming_the_key():
    import importlib.util

    from r1lab.config import ConfigError, GRPOConfig, validate

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    cfg = GRPOConfig()
    cfg.rollout.engine = "vllm"
    with pytest.raises(ConfigError, match="rollout.engine.*make test-vllm"):
        validate(cfg)
