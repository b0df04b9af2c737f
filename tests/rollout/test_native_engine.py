"""The native engine's rollouts: masks from EOS positions (never from the pad id), truncation flags, grouping,
greedy determinism."""

import pytest
import torch

from r1lab.models.tiny import tiny_model, tiny_tokenizer
from r1lab.rollout.base import SamplingParams, completion_mask_from_eos
from r1lab.rollout.native_engine import NativeEngine
from r1lab.models.loading import prepare_tokenizer

EOS = 2  # also the pad id, as in SmolLM2: a pad-based mask would drop the real EOS token


def test_mask_keeps_first_eos_and_flags_truncation():
    ids = torch.tensor([
        [5, 6, EOS, EOS, EOS],  # stopped at position 2; the trailing EOS are padding
        [5, 6, 7, 8, 9],  # never stopped: truncated, every token counts
        [EOS, EOS, EOS, EOS, EOS],  # stopped immediately: only the EOS token counts
        [5, 9, 9, 9, 4],  # a second EOS id (4) also ends the completion
    ])
    mask, truncated = completion_mask_from_eos(ids, [EOS, 4])
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert truncated.tolist() == [False, True, False, False]


def _engine(dtype=None, fast_decode=True):
    tok = tiny_tokenizer()
    prepare_tokenizer(tok)
    model = tiny_model(tok, seed=1)
    model.generation_config.eos_token_id = tok.eos_token_id
    return NativeEngine(model, tok, dtype=dtype, batch_size=3, fast_decode=fast_decode), tok


def test_groups_are_contiguous_and_greedy_is_deterministic():
    engine, tok = _engine()
    prompts = ["1+1=", "a much longer prompt: 22+33="]  # different lengths exercise left padding
    greedy = SamplingParams(temperature=0.0, max_new_tokens=6)
    batch = engine.generate(prompts, n=3, sampling=greedy)
    assert batch.completion_ids.shape[0] == 6 and batch.group_size == 3
    # Greedy: every member of a group is identical, and the first prompt's rows come first.
    assert batch.texts[0] == batch.texts[1] == batch.texts[2]
    assert batch.texts[3] == batch.texts[4] == batch.texts[5]
    assert torch.equal(batch.prompt_ids[0], batch.prompt_ids[2])
    # Left padding: the short prompt is padded on the left and its mask says so.
    assert batch.prompt_mask[0, 0] == 0 and batch.prompt_mask[3].all()
    # The mask length matches the decoded text: a completion is its tokens up to the first EOS.
    for row in range(6):
        k = int(batch.completion_mask[row].sum())
        ids = batch.completion_ids[row, :k].tolist()
        assert tok.decode(ids, skip_special_tokens=True) == batch.texts[row]
        assert bool(batch.truncated[row]) == (EOS not in ids)
    again = engine.generate(prompts, n=3, sampling=greedy)
    assert again.texts == batch.texts


def test_lower_precision_copy_follows_the_policy_after_sync():
    engine, _ = _engine(dtype=torch.bfloat16)
    policy = tiny_model(tiny_tokenizer(), seed=1)
    assert not engine.shares_policy
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.5)
    engine.sync_weights(policy)
    for src, dst in zip(policy.parameters(), engine.model.parameters()):
        assert dst.dtype == torch.bfloat16
        assert torch.equal(dst, src.to(torch.bfloat16))


@pytest.mark.parametrize("fast_decode", [True, False], ids=["llama-decoder", "hf-step"])
def test_shared_prefix_generation_equals_plain_generate(fast_decode):
    # The group's prompt prefix is prefilled once and its cache repeated; greedy tokens must equal HF generate run
    # on every row separately (the oracle), for prompts of different lengths (left padding) and groups of 2.
    engine, tok = _engine(fast_decode=fast_decode)
    assert (engine.decoder is not None) == fast_decode
    engine.batch_size = 64  # all three prompts in one generate call, so rows are left-padded by different amounts
    prompts = ["12+3=", "a longer one: 40+2=", "x"]
    batch = engine.generate(prompts, n=2, sampling=SamplingParams(temperature=0.0, max_new_tokens=7))
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        plain = engine.model.generate(
            input_ids=enc.input_ids.repeat_interleave(2, dim=0), attention_mask=enc.attention_mask.repeat_interleave(2, dim=0),
            max_new_tokens=7, do_sample=False, eos_token_id=engine.eos_ids, pad_token_id=tok.pad_token_id,
            temperature=None, top_p=None, top_k=None,
        )[:, enc.input_ids.shape[1]:]
    plain_mask, _ = completion_mask_from_eos(plain, engine.eos_ids)
    for row in range(6):
        k = int(plain_mask[row].sum())
        assert batch.completion_ids[row, :k].tolist() == plain[row, :k].tolist()
        assert int(batch.completion_mask[row].sum()) == k


def test_sampled_groups_differ_within_a_group():
    # Sharing the prefix must not share the randomness: the n samples of one prompt are drawn independently.
    engine, _ = _engine()
    torch.manual_seed(0)
    batch = engine.generate(["1+1="], n=8, sampling=SamplingParams(temperature=1.0, max_new_tokens=8))
    assert len(set(batch.texts)) > 1


@pytest.mark.parametrize("fast_decode", [True, False], ids=["llama-decoder", "hf-step"])
def test_engine_log_probs_match_the_training_forward(fast_decode):
    # The engine's decode loop (prompt shared across the group, finished rows leaving the batch) must score its
    # sampled tokens as the training forward (completion_logprobs) does: same positions, masks and cache.
    from r1lab.algos.logprobs import completion_logprobs

    engine, tok = _engine(fast_decode=fast_decode)
    engine.batch_size = 64
    torch.manual_seed(0)
    batch = engine.generate(["12+3=", "a longer one: 40+2=", "x"], n=8,
                            sampling=SamplingParams(temperature=1.0, max_new_tokens=60))
    # a quarter of the 24 rows finished before the longest: the batch shrank (finished rows left it) mid-decode
    assert int((batch.lengths < batch.lengths.max()).sum()) >= 6
    with torch.no_grad():
        logp, _ = completion_logprobs(engine.model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                      batch.completion_mask)
    m = batch.completion_mask.bool()
    assert batch.rollout_logprobs.shape == batch.completion_ids.shape
    torch.testing.assert_close(batch.rollout_logprobs[m], logp[m], rtol=0, atol=1e-5)
    assert (batch.rollout_logprobs[~m] == 0).all()


def test_min_new_tokens_suppresses_eos():
    # min_new_tokens = max: every completion runs to max_new_tokens without an EOS (equal work per row).
    engine, _ = _engine()
    engine.min_new_tokens = 9
    torch.manual_seed(0)
    batch = engine.generate(["1+1=", "22+33="], n=3, sampling=SamplingParams(temperature=1.0, max_new_tokens=9))
    assert batch.lengths.tolist() == [9.0] * 6 and batch.truncated.all()
    assert EOS not in batch.completion_ids.tolist()
