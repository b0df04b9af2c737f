"""r1lab.algos.logprobs: the tiled LM-head log-softmax (values, entropies and gradients against the full-logits
form), left-padding positions, and completion log-probs of a tiny model against a per-row, unpadded loop oracle."""

from __future__ import annotations

import math

import pytest
import torch

from r1lab.algos.logprobs import chunked_logprobs, completion_logprobs, position_ids_from_mask
from r1lab.models.tiny import tiny_model, tiny_tokenizer

torch.set_num_threads(1)


def _naive(hidden, weight, ids, temperature=1.0):
    """The obvious form (the oracle): full (N, V) logits, float64 log_softmax, gather; entropy from the same."""
    logits = (hidden @ weight.T).double() / temperature
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1), -(logp.exp() * logp).sum(dim=-1)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_logprobs_values_and_gradients_match_the_full_logits_oracle(temperature):
    # 11 tokens in tiles of 4 (the last tile partial): values, entropies and both gradients must equal autograd
    # through the full-logits form, for a random upstream gradient.
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(11, 8, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 8, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, 50, (11,), generator=g)
    upstream = torch.randn(11, generator=g, dtype=torch.float64)
    logp, entropy = chunked_logprobs(hidden, weight, ids, temperature, with_entropy=True, chunk=4)
    (logp.double() * upstream).sum().backward()
    got_h, got_w = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    want, want_entropy = _naive(hidden, weight, ids, temperature)
    (want * upstream).sum().backward()
    # the kernel's softmax is fp32: agreement to fp32 rounding of logits of size ~5
    torch.testing.assert_close(logp.double(), want, rtol=0, atol=1e-5)
    torch.testing.assert_close(entropy.double(), want_entropy.detach(), rtol=0, atol=2e-5)
    torch.testing.assert_close(got_h, hidden.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_w, weight.grad, rtol=1e-5, atol=1e-6)


def test_chunked_logprobs_under_bf16_autocast_upcasts_before_the_softmax():
    # Under bf16 autocast the LM-head matmul is bf16 (as the model's own head would be) but the log-softmax must be
    # fp32 (bf16 logsumexp would be off by ~1e-2): compare with a float64 loop oracle on the same bf16 logits.
    g = torch.Generator().manual_seed(1)
    hidden, weight = torch.randn(6, 16, generator=g), torch.randn(30, 16, generator=g)
    ids = torch.randint(0, 30, (6,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = chunked_logprobs(hidden, weight, ids, chunk=4)
    assert got.dtype == torch.float32
    logits = (hidden.bfloat16() @ weight.bfloat16().T).double()  # (6, 30) bf16 values
    for n in range(6):
        row = logits[n].tolist()
        m = max(row)
        lse = m + math.log(sum(math.exp(x - m) for x in row))
        assert got[n].item() == pytest.approx(row[ids[n]] - lse, abs=1e-5)


@pytest.mark.parametrize("with_entropy", [False, True])
def test_chunked_logprobs_under_bf16_autocast_gradients_equal_autograd_through_full_bf16_logits(with_entropy):
    # The bf16 path reuses its tile buffers across 3 tiles (the last partial) and casts the logits' gradient to
    # bf16 before the two matmuls, as autograd does through ``(h_bf16 @ w_bf16.T).float()``: same values, same
    # gradients to bf16 rounding, entropy or not.
    g = torch.Generator().manual_seed(5)
    hidden = torch.randn(10, 16, generator=g, requires_grad=True)
    weight = torch.randn(8192, 16, generator=g, requires_grad=True)  # a vocabulary wide enough for summation error
    ids = torch.randint(0, 8192, (10,), generator=g)
    upstream = torch.randn(10, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, entropy = chunked_logprobs(hidden, weight, ids, temperature=0.8, with_entropy=with_entropy, chunk=4)
    (got * upstream).sum().backward()
    got_h, got_w = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    logits = (hidden.bfloat16() @ weight.bfloat16().T).float() / 0.8
    want = torch.log_softmax(logits, dim=-1)
    (want.gather(1, ids[:, None]).squeeze(1) * upstream).sum().backward()
    torch.testing.assert_close(got, want.gather(1, ids[:, None]).squeeze(1).detach(), rtol=0, atol=1e-5)
    if with_entropy:
        torch.testing.assert_close(entropy, -(want.exp() * want).sum(dim=-1).detach(), rtol=0, atol=1e-5)
    torch.testing.assert_close(got_h, hidden.grad, rtol=2e-2, atol=1e-2)
    torch.testing.assert_close(got_w, weight.grad, rtol=2e-2, atol=1e-2)


def test_chunked_logprobs_hand_values():
    # Identity head, so the hidden state is the logit row. [0, ln 3] -> softmax [1/4, 3/4]; uniform over V ->
    # entropy ln V (shift-invariant); very peaked -> entropy ~0.
    eye2 = torch.eye(2)
    logp, entropy = chunked_logprobs(torch.tensor([[0.0, math.log(3.0)]] * 2), eye2, torch.tensor([0, 1]),
                                     with_entropy=True)
    torch.testing.assert_close(logp, torch.tensor([math.log(0.25), math.log(0.75)]), rtol=0, atol=1e-6)
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    torch.testing.assert_close(entropy, torch.tensor([h, h]), rtol=0, atol=1e-6)
    V = 17
    _, uniform = chunked_logprobs(torch.full((3, V), 4.2), torch.eye(V), torch.zeros(3, dtype=torch.long), with_entropy=True)
    torch.testing.assert_close(uniform, torch.full((3,), math.log(V)), rtol=0, atol=1e-6)
    _, peaked = chunked_logprobs(torch.tensor([[100.0, 0.0, 0.0, 0.0]]), torch.eye(4), torch.tensor([0]), with_entropy=True)
    assert peaked.item() == pytest.approx(0.0, abs=1e-6)
    assert chunked_logprobs(torch.ones(2, 2), eye2, torch.tensor([0, 1]))[1] is None


def test_position_ids_left_padding():
    # Positions start at 0 on the first real token of each row (what generate() assigns), padding clamps to 0.
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 1, 1]])
    expected = torch.tensor([[0, 1, 2, 3], [0, 0, 1, 2], [0, 0, 0, 0], [0, 0, 0, 1]])
    assert torch.equal(position_ids_from_mask(mask), expected)
    # Right-padded completion after a left-padded prompt: positions stop advancing on padding (masked anyway).
    mask2 = torch.tensor([[0, 1, 1, 1, 1, 0, 0]])
    assert torch.equal(position_ids_from_mask(mask2), torch.tensor([[0, 0, 1, 2, 3, 3, 3]]))
    # Bool / float masks give the same result.
    assert torch.equal(position_ids_from_mask(mask.bool()), expected)
    assert torch.equal(position_ids_from_mask(mask.float()), expected)


# ---------------------------------------------------------------------------------------------------------------
# completion_logprobs on a tiny model vs a per-row unpadded oracle
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    m = tiny_model(tok, seed=0)
    m.eval()
    return m


def _left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    P = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (P - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (P - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def _right_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    C = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (C - len(r)) for r in rows])
    mask = torch.tensor([[1.0] * len(r) + [0.0] * (C - len(r)) for r in rows])
    return ids, mask


def oracle_logprobs(model, prompts, completions, temperature=1.0):
    """Run the model on each row alone, without any padding, and read the log-prob of each completion token."""
    out = []
    for p, c in zip(prompts, completions):
        ids = torch.tensor([p + c])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0].double() / temperature  # (L, V)
        row = []
        for j, token in enumerate(c):
            pos = len(p) + j - 1  # the logit at position pos predicts token pos + 1
            row.append(torch.log_softmax(logits[pos], dim=-1)[token].item())
        out.append(row)
    return out


@pytest.fixture(scope="module")
def batch(tok):
    # Prompts of different lengths (so rows are left-padded by different amounts) and completions of different
    # lengths (right-padded). The pad id equals eos for this tokenizer, so masks come from lengths, not pad ids.
    prompts = [tok.encode(s) for s in ("What is 2+3?", "Hi", "A much longer prompt, with more tokens.")]
    completions = [tok.encode(s) for s in ("<think>5</think><answer>5</answer>", "ok", "x y")]
    completions[1].append(tok.eos_token_id)  # an EOS inside the completion mask must be scored too
    assert tok.pad_token_id == tok.eos_token_id
    return prompts, completions


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_completion_logprobs_left_padding_matches_unpadded_oracle(model, tok, batch, temperature):
    prompts, completions = batch
    prompt_ids, prompt_mask = _left_pad(prompts, tok.pad_token_id)
    completion_ids, completion_mask = _right_pad(completions, tok.pad_token_id)
    with torch.no_grad():
        logp, entropy = completion_logprobs(
            model, prompt_ids, prompt_mask, completion_ids, completion_mask, with_entropy=True, temperature=temperature
        )
    assert logp.shape == completion_ids.shape and entropy.shape == completion_ids.shape
    assert logp.dtype == torch.float32
    expected = oracle_logprobs(model, prompts, completions, temperature)
    for b, row in enumerate(expected):
        # Only real completion tokens are compared; padded positions are masked out of every loss.
        torch.testing.assert_close(logp[b, : len(row)].double(), torch.tensor(row, dtype=torch.float64), rtol=0, atol=1e-5)
        assert torch.isfinite(logp[b]).all()
    assert torch.isfinite(entropy).all()
    assert (entropy >= 0).all() and (entropy <= math.log(len(tok)) + 1e-4).all()


def test_completion_logprobs_without_entropy_and_grad_flows(model, tok, batch):
    # Training path: no entropy requested -> None; log-probs carry gradient to the model parameters.
    prompts, completions = batch
    prompt_ids, prompt_mask = _left_pad(prompts, tok.pad_token_id)
    completion_ids, completion_mask = _right_pad(completions, tok.pad_token_id)
    logp, entropy = completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask)
    assert entropy is None
    assert logp.requires_grad
    (logp * completion_mask).sum().backward()
    grad = model.get_input_embeddings().weight.grad
    assert grad is not None and grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_completion_logprobs_padding_invariance(model, tok, batch):
    # Adding extra left padding to every prompt must not change any completion log-prob.
    prompts, completions = batch
    prompt_ids, prompt_mask = _left_pad(prompts, tok.pad_token_id)
    extra = 5
    pad_ids = torch.cat([torch.full((len(prompts), extra), tok.pad_token_id), prompt_ids], dim=1)
    pad_mask = torch.cat([torch.zeros(len(prompts), extra, dtype=prompt_mask.dtype), prompt_mask], dim=1)
    completion_ids, completion_mask = _right_pad(completions, tok.pad_token_id)
    with torch.no_grad():
        a, _ = completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask)
        b, _ = completion_logprobs(model, pad_ids, pad_mask, completion_ids, completion_mask)
    m = completion_mask.bool()
    torch.testing.assert_close(a[m], b[m], rtol=0, atol=1e-5)


def test_shared_prompts_match_the_unshared_forward_values_and_gradients(tok):
    # GRPO rows continue a few distinct prompts. Running each prompt once and sharing its keys/values must give the
    # same log-probs and the same parameter gradients as running every row's prompt separately (the oracle).
    model = tiny_model(tok, seed=3)
    model.train()  # dropout is 0 in the tiny config; train mode is what the trainer uses
    prompts = [tok.encode(s) for s in ("What is 2+3?", "A longer prompt here")]
    completions = [tok.encode(s) for s in ("5", "<answer>5</answer>", "x", "wxyz 12")]
    completions[0].append(tok.eos_token_id)
    prompt_index = torch.tensor([0, 0, 1, 1])  # rows 0,1 continue prompt 0; rows 2,3 prompt 1
    unique_ids, unique_mask = _left_pad(prompts, tok.pad_token_id)
    completion_ids, completion_mask = _right_pad(completions, tok.pad_token_id)
    weights = torch.randn(completion_ids.shape, generator=torch.Generator().manual_seed(0))

    def loss_and_grads(logp):
        loss = (logp * weights * completion_mask).sum()
        model.zero_grad(set_to_none=True)
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    shared, _ = completion_logprobs(model, unique_ids, unique_mask, completion_ids, completion_mask,
                                    prompt_index=prompt_index)
    shared_grads = loss_and_grads(shared)
    per_row, _ = completion_logprobs(model, unique_ids[prompt_index], unique_mask[prompt_index], completion_ids,
                                     completion_mask)
    per_row_grads = loss_and_grads(per_row)
    m = completion_mask.bool()
    torch.testing.assert_close(shared[m], per_row[m], rtol=0, atol=1e-5)
    expected = oracle_logprobs(model, [prompts[i] for i in prompt_index.tolist()], completions)
    for b, row in enumerate(expected):
        torch.testing.assert_close(shared[b, : len(row)].double(), torch.tensor(row, dtype=torch.float64), rtol=0, atol=1e-5)
    assert shared_grads.keys() == per_row_grads.keys() and len(shared_grads) > 0
    for name in shared_grads:
        torch.testing.assert_close(shared_grads[name], per_row_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_single_token_completions_use_only_the_prompt_forward(model, tok):
    # C == 1: the only completion token is predicted by the last prompt position; no second forward is needed.
    prompts = [tok.encode("Hi"), tok.encode("Hello there")]
    prompt_ids, prompt_mask = _left_pad(prompts, tok.pad_token_id)
    completion_ids = torch.tensor([[tok.encode("a")[0]], [tok.eos_token_id]])
    with torch.no_grad():
        logp, _ = completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, torch.ones(2, 1))
    expected = oracle_logprobs(model, prompts, completion_ids.tolist())
    torch.testing.assert_close(logp.double(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-5)


def test_training_attention_eager_for_short_cpu_sequences_and_same_values_and_gradients(tok, batch, monkeypatch):
    # Short sequences on CPU train with an eager attention (faster backward than SDPA's CPU flash kernel): r1lab's
    # grouped-query one for the Llama family; long ones keep SDPA. Both must give the same log-probs and parameter
    # gradients, and the model's setting is restored.
    import r1lab.algos.logprobs as lp
    from r1lab.algos.gqa_attention import GQA_EAGER

    model = tiny_model(tok, seed=6)
    assert lp.training_attention(model, lp.EAGER_MAX_LENGTH) == GQA_EAGER
    assert lp.training_attention(model, lp.EAGER_MAX_LENGTH + 1) == "sdpa"
    prompts, completions = batch
    prompt_ids, prompt_mask = _left_pad(prompts, tok.pad_token_id)
    completion_ids, completion_mask = _right_pad(completions, tok.pad_token_id)

    def run():
        logp, _ = completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask)
        model.zero_grad(set_to_none=True)
        (logp * completion_mask).sum().backward()
        return logp.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    seen = []
    original = lp._hidden_states
    monkeypatch.setattr(lp, "_hidden_states", lambda backbone, *a: seen.append(backbone.config._attn_implementation)
                        or original(backbone, *a))
    eager_logp, eager_grads = run()
    monkeypatch.setattr(lp, "EAGER_MAX_LENGTH", 0)
    sdpa_logp, sdpa_grads = run()
    assert seen == [GQA_EAGER, "sdpa"] and model.config._attn_implementation == "sdpa"
    torch.testing.assert_close(eager_logp, sdpa_logp, rtol=0, atol=1e-5)
    assert eager_grads.keys() == sdpa_grads.keys() and len(eager_grads) > 0
    for name in eager_grads:
        torch.testing.assert_close(eager_grads[name], sdpa_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_training_attention_outside_the_llama_family_is_hf_eager():
    from transformers import GPT2Config, GPT2LMHeadModel

    import r1lab.algos.logprobs as lp

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    gpt2.config._attn_implementation = "sdpa"
    assert lp.training_attention(gpt2, 10) == "eager"


def test_shared_weight_casts_same_gradients_and_no_stale_copy_after_the_block(tok):
    # Two micro-batches under bf16 autocast, each in its own autocast region: inside shared_weight_casts they reuse
    # one bf16 copy of the weights, and the accumulated gradients equal those of separate regions bit for bit.
    # After the block an in-place weight update (an optimizer step) must reach the next forward: no stale copy.
    from r1lab.algos.logprobs import shared_weight_casts

    model = tiny_model(tok, seed=12)
    prompt_ids = torch.tensor([[5, 6, 7]])
    completion = torch.tensor([[8, 9, 10, 11]] * 2)
    mask = torch.ones(2, 4)

    def micro_batches():
        for rows in (slice(0, 1), slice(1, 2)):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logp, _ = completion_logprobs(model, prompt_ids, torch.ones(1, 3), completion[rows], mask[rows],
                                              prompt_index=torch.zeros(1, dtype=torch.long))
            logp.sum().backward()

    micro_batches()
    separate = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    with shared_weight_casts("cpu"):
        micro_batches()
    shared = [p.grad.clone() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(separate, shared))

    def logp_now():
        with torch.autocast("cpu", dtype=torch.bfloat16):  # grad enabled: autocast caches its weight casts
            return completion_logprobs(model, prompt_ids, torch.ones(1, 3), completion[:1], mask[:1])[0].detach()

    # inside a caller's own outer region, where leaving shared_weight_casts alone would not clear autocast's cache
    with torch.autocast("cpu", enabled=False):
        with shared_weight_casts("cpu"):
            before = logp_now()
        with torch.no_grad():  # as an optimizer step does, in place, after the block; a projection run by autocast
            model.model.layers[0].mlp.down_proj.weight.mul_(5.0)
        with shared_weight_casts("cpu"):
            after = logp_now()
    assert not torch.equal(before, after)


def test_checkpointed_policy_runs_rows_whole_with_the_same_values_and_gradients(tok):
    # With activation checkpointing the shared prompt cache gives way to one cache-free forward per row (a replayed
    # layer must not append to a cache twice); log-probs, entropies and gradients must not change.
    from r1lab.models.checkpointing import enable_activation_checkpointing

    shared, replayed = tiny_model(tok, seed=4).train(), tiny_model(tok, seed=4).train()
    enable_activation_checkpointing(replayed)
    prompts = [tok.encode(s) for s in ("What is 2+3?", "Hi")]
    completions = [tok.encode(s) for s in ("5", "<answer>5</answer>", "x", "wxyz 12")]
    completions[0].append(tok.eos_token_id)
    prompt_index = torch.tensor([0, 0, 1, 1])
    prompt_ids, prompt_mask = _left_pad(prompts, tok.pad_token_id)
    completion_ids, completion_mask = _right_pad(completions, tok.pad_token_id)
    weights = torch.randn(completion_ids.shape, generator=torch.Generator().manual_seed(1))
    results = {}
    for name, model in (("shared", shared), ("replayed", replayed)):
        logp, entropy = completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                                            with_entropy=True, prompt_index=prompt_index)
        (logp * weights * completion_mask).sum().backward()
        results[name] = logp.detach(), entropy, {n: p.grad.clone() for n, p in model.named_parameters()}
    m = completion_mask.bool()
    torch.testing.assert_close(results["replayed"][0][m], results["shared"][0][m], rtol=0, atol=1e-5)
    torch.testing.assert_close(results["replayed"][1][m], results["shared"][1][m], rtol=0, atol=1e-5)
    for name, grad in results["shared"][2].items():
        torch.testing.assert_close(results["replayed"][2][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    expected = oracle_logprobs(shared, [prompts[i] for i in prompt_index.tolist()], completions)
    for b, row in enumerate(expected):
        torch.testing.assert_close(results["replayed"][0][b, : len(row)].double(), torch.tensor(row, dtype=torch.float64),
                                   rtol=0, atol=1e-5)
