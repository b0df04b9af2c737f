"""The vllm engine (colocated, in-process) against the native engine on the same weights, before and after a weight
sync; its sampling parameters and log-probs. Run by `make test-vllm` in .venv-vllm; skipped where vLLM is absent."""

import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed here; `make test-vllm` runs these tests in .venv-vllm")
pytestmark = pytest.mark.vllm

from r1lab.models.loading import prepare_tokenizer  # noqa: E402
from r1lab.models.tiny import save_tiny_model, tiny_model, tiny_tokenizer  # noqa: E402
from r1lab.rollout.base import SamplingParams  # noqa: E402
from r1lab.rollout.native_engine import NativeEngine  # noqa: E402
from r1lab.rollout.vllm_engine import VLLMEngine  # noqa: E402

PROMPTS = ["1+1=", "a much longer prompt: 22+33=", "x"]
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=12)


@pytest.fixture(scope="module")
def setup():
    """A tiny fp32 Llama (hidden 128: vLLM's CPU attention takes head sizes from 32) and one vLLM engine on it,
    shared by the module's tests: building one costs seconds."""
    tok = tiny_tokenizer()
    prepare_tokenizer(tok)
    policy = tiny_model(tok, seed=1, hidden=128)
    policy.generation_config.eos_token_id = tok.eos_token_id
    engine = VLLMEngine(policy, tok, kv_cache_gb=0.05)
    yield policy, tok, engine
    engine.close()


def _same_rollouts(ours, native):
    assert torch.equal(ours.prompt_ids, native.prompt_ids) and torch.equal(ours.prompt_mask, native.prompt_mask)
    assert torch.equal(ours.completion_mask, native.completion_mask)
    m = ours.completion_mask.bool()
    assert torch.equal(ours.completion_ids[m], native.completion_ids[m])
    assert ours.texts == native.texts
    torch.testing.assert_close(ours.rollout_logprobs, native.rollout_logprobs, rtol=0, atol=1e-4)


def test_greedy_rollouts_equal_the_native_engines_before_and_after_a_weight_sync(setup):
    policy, tok, engine = setup
    native = NativeEngine(policy, tok, batch_size=64)
    before = engine.generate(PROMPTS, n=2, sampling=GREEDY)
    assert before.group_size == 2 and before.completion_ids.shape[0] == 6
    _same_rollouts(before, native.generate(PROMPTS, n=2, sampling=GREEDY))

    # One real optimizer step moves the policy (a large rate, so greedy completions change)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=0.05)
    ids = tok(["the policy learns this line"], return_tensors="pt").input_ids
    policy(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    # the engine holds its own copy: without a sync it still generates from the old weights
    assert engine.generate(PROMPTS, n=2, sampling=GREEDY).texts == before.texts

    seconds = engine.sync_weights(policy)
    native.sync_weights(policy)
    after = engine.generate(PROMPTS, n=2, sampling=GREEDY)
    assert after.texts != before.texts  # the generations changed with the policy ...
    _same_rollouts(after, native.generate(PROMPTS, n=2, sampling=GREEDY))  # ... exactly as the policy did
    assert isinstance(seconds, float) and 0 < seconds < 30


@pytest.mark.parametrize("sampling", [SamplingParams(temperature=0.7, top_k=20, max_new_tokens=12),
                                      SamplingParams(temperature=1.3, top_p=0.8, max_new_tokens=12)],
                         ids=["temperature-top-k", "top-p"])
def test_log_probs_are_those_of_the_sampling_distribution(setup, sampling, sampling_logprobs):
    policy, _, engine = setup
    batch = engine.generate(PROMPTS, n=4, sampling=sampling)
    expected = sampling_logprobs(policy, batch, sampling, engine.eos_ids)
    torch.testing.assert_close(batch.rollout_logprobs, expected, rtol=0, atol=1e-4)


def test_seeds_n_and_min_new_tokens_map_to_vllm(setup):
    _, _, engine = setup
    hot = SamplingParams(temperature=1.0, max_new_tokens=8)
    first = engine.generate(PROMPTS, n=3, sampling=hot, seeds=[1, 2, 3])
    assert first.texts == engine.generate(PROMPTS, n=3, sampling=hot, seeds=[1, 2, 3]).texts
    assert first.texts != engine.generate(PROMPTS, n=3, sampling=hot, seeds=[4, 5, 6]).texts
    assert len(set(first.texts[:3])) > 1  # a prompt's n samples differ (vLLM seeds sample j with seed + j)
    torch.manual_seed(0)
    unseeded = engine.generate(PROMPTS, n=3, sampling=hot)
    torch.manual_seed(0)
    assert engine.generate(PROMPTS, n=3, sampling=hot).texts == unseeded.texts  # seeds drawn from torch's RNG

    engine.min_new_tokens = 8  # EOS banned to the end: every completion has max_new_tokens tokens
    try:
        full = engine.generate(PROMPTS, n=3, sampling=hot)
    finally:
        engine.min_new_tokens = 0
    assert (full.lengths == 8).all() and full.truncated.all()


def test_building_the_engine_leaves_the_trainers_process_as_it_was(setup):
    # vLLM seeds torch's RNG, drops torch to one thread and (CPU build) makes set_num_threads a no-op
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    policy, tok, _ = setup
    second = VLLMEngine(policy, tok, kv_cache_gb=0.05)
    try:
        assert torch.equal(torch.rand(3), expected)
        assert torch.get_num_threads() == threads
        torch.set_num_threads(threads + 1)
        assert torch.get_num_threads() == threads + 1
    finally:
        torch.set_num_threads(threads)
        second.close()


def test_grpo_trains_with_the_vllm_engine(tmp_path):
    model_dir, run = tmp_path / "tiny", tmp_path / "run"
    save_tiny_model(model_dir, seed=0, hidden=128)
    sets = ["task.params={min_terms: 2, max_terms: 2, min_digits: 1, max_digits: 1, operators: ['+'], "
            "allow_parentheses: false, allow_negation: false}",
            "task.train_size=50", "task.eval_size=4", "train.prompts_per_step=2", "rollout.group_size=4",
            "rollout.max_new_tokens=8", "eval.max_new_tokens=8", "train.micro_batch_size=4", "train.lr=1e-2",
            "log.progress=false", "log.tensorboard=false", "train.threads=1", "train.steps=2", "eval.every=2",
            "rewards.weights={accuracy: 1.0, tag_count: 1.0}", "model.rollout_dtype=float32",
            "rollout.engine=vllm", "rollout.vllm.kv_cache_gb=0.05", f"model.name={model_dir}",
            f"log.output_dir={run}"]
    proc = subprocess.run([sys.executable, "-m", "r1lab.cli", "grpo", "configs/zero_cpu.yaml",
                           *[a for s in sets for a in ("--set", s)]],
                          capture_output=True, text=True, env=dict(os.environ), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "reward/mean" in r] == [1, 2]
    assert all(r["time/weight_sync_s"] > 0 for r in records if "reward/mean" in r)
    assert "eval/greedy_accuracy" in records[-1]
