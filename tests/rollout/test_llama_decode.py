"""LlamaDecoder: the same next-token logits as HF's forward (Llama and Qwen2 with q/k/v biases), rows leaving
the cache, fused weights following in-place weight updates, and the fallback for other architectures."""

import pytest
import torch

from r1lab.algos.logprobs import position_ids_from_mask
from r1lab.models.kv_cache import output_cache
from r1lab.models.loading import prepare_tokenizer
from r1lab.models.tiny import tiny_model, tiny_tokenizer
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.native_engine import NativeEngine
from r1lab.rollout.llama_decode import LlamaDecoder, unsupported_reason
from r1lab.rollout.packed_linear import packing_applies
from r1lab.train.optim import build_optimizer


def _qwen2(vocab: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(3)
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=False)
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():  # HF initialises biases to zero; make them matter
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_step_logits_equal_hf_forward(arch, decode_two_prompts):
    tok = tiny_tokenizer()
    model = tiny_model(tok, seed=2).eval() if arch == "llama" else _qwen2(len(tok))
    hf_logits, ours, _ = decode_two_prompts(model)
    for expected, got in zip(hf_logits, ours):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_qwen2_engine_greedy_equals_hf_generate():
    tok = tiny_tokenizer()
    prepare_tokenizer(tok)  # left padding, as every engine user loads it
    model = _qwen2(len(tok))
    model.generation_config.eos_token_id = tok.eos_token_id
    engine = NativeEngine(model, tok, batch_size=64)
    assert engine.decoder is not None
    prompts = ["7*6=", "a long question: 9+9="]
    batch = engine.generate(prompts, n=2, sampling=SamplingParams(temperature=0.0, max_new_tokens=8))
    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left")
    with torch.no_grad():
        plain = model.generate(input_ids=enc.input_ids.repeat_interleave(2, dim=0),
                               attention_mask=enc.attention_mask.repeat_interleave(2, dim=0), max_new_tokens=8,
                               do_sample=False, pad_token_id=tok.pad_token_id,
                               eos_token_id=engine.eos_ids)[:, enc.input_ids.shape[1]:]
    for row in range(4):
        k = int(batch.completion_mask[row].sum())
        assert batch.completion_ids[row, :k].tolist() == plain[row, :k].tolist()


def test_rows_leaving_the_cache_keep_their_logits():
    tok = tiny_tokenizer()
    model = tiny_model(tok, seed=4).eval()
    enc = tok(["1+1=", "22+33=", "x"], return_tensors="pt", padding=True, padding_side="left")
    P = enc.input_ids.shape[1]
    with torch.no_grad():
        prefill = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                        position_ids=position_ids_from_mask(enc.attention_mask), use_cache=True)
        decoder = LlamaDecoder(model)
        decoder.refresh_weights()
        decoder.prefill(output_cache(prefill), 1, P + 1)
        slots = torch.ones(3, P + 1, dtype=torch.bool)
        slots[:, :P] = enc.attention_mask.bool()
        position = enc.attention_mask.sum(dim=1, keepdim=True)
        token = torch.tensor([5, 6, 7])
        full = decoder.step(token, position, P, slots)
        decoder.prefill(output_cache(prefill), 1, P + 1)
        keep = torch.tensor([0, 2])
        decoder.select_rows(keep)
        if decoder.head.rows_exact:  # fp32 on MKL: re-packed for the rows that are left
            assert decoder.rows_hint == 2 and all(lin.rows_hint == 2 for lin in decoder.linears[0].values())
        part = decoder.step(token[keep], position[keep], P, slots[keep])
    torch.testing.assert_close(part, full[keep], rtol=0, atol=1e-6)


def test_fused_weights_follow_in_place_updates_only():
    model = tiny_model(tiny_tokenizer(), seed=5)
    decoder = LlamaDecoder(model)
    decoder.refresh_weights()
    built = decoder.layers[0]["qkv"]
    decoder.refresh_weights()
    assert decoder.layers[0]["qkv"] is built  # unchanged weights: no rebuild
    with torch.no_grad():
        model.model.layers[0].self_attn.k_proj.weight.add_(1.0)  # as optimizer.step / sync_weights do, in place
    decoder.refresh_weights()
    q_rows = model.model.layers[0].self_attn.q_proj.weight.shape[0]
    k_rows = model.model.layers[0].self_attn.k_proj.weight.shape[0]
    assert torch.equal(decoder.layers[0]["qkv"][q_rows : q_rows + k_rows], model.model.layers[0].self_attn.k_proj.weight)


def test_other_architectures_fall_back_to_hf_step():
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_tokenizer()
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=64))
    gpt2.generation_config.eos_token_id = tok.eos_token_id
    assert "gpt2" in unsupported_reason(gpt2)
    with pytest.raises(ValueError, match="gpt2"):
        LlamaDecoder(gpt2)
    engine = NativeEngine(gpt2, tok, batch_size=8)
    assert engine.decoder is None
    batch = engine.generate(["1+1="], n=2, sampling=SamplingParams(temperature=0.0, max_new_tokens=4))
    assert batch.completion_ids.shape[0] == 2


def test_owned_weights_are_views_of_the_fused_buffers_and_follow_syncs():
    # The engine's private bf16 copy: its q/k/v and gate/up weights live inside the decoder's fused buffers (no
    # second copy), and sync_weights writes the policy's new values straight into them.
    tok = tiny_tokenizer()
    prepare_tokenizer(tok)
    policy = tiny_model(tok, seed=7)
    policy.generation_config.eos_token_id = tok.eos_token_id
    engine = NativeEngine(policy, tok, dtype=torch.bfloat16, batch_size=64)
    assert engine.decoder.own_weights
    greedy = SamplingParams(temperature=0.0, max_new_tokens=6)
    prompts = ["1+1=", "a longer one: 40+2="]
    before = engine.generate(prompts, n=1, sampling=greedy)
    fused = engine.decoder.layers[0]["qkv"]
    attn = engine.model.model.layers[0].self_attn
    assert attn.q_proj.weight.data_ptr() == fused.data_ptr()
    assert attn.k_proj.weight.data_ptr() == fused[attn.q_proj.weight.shape[0]:].data_ptr()
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in policy.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    engine.sync_weights(policy)
    after = engine.generate(prompts, n=1, sampling=greedy)
    fresh = NativeEngine(policy, tok, dtype=torch.bfloat16, batch_size=64).generate(prompts, n=1, sampling=greedy)
    assert engine.decoder.layers[0]["qkv"] is fused  # no rebuild
    assert torch.equal(after.completion_ids, fresh.completion_ids)
    assert not torch.equal(after.completion_ids, before.completion_ids)  # the update changed what it generates


@pytest.mark.parametrize("dtype", [None, torch.bfloat16], ids=["shared-fp32", "owned-bf16"])
def test_a_synced_engine_decodes_with_the_weights_of_a_fused_adamw_step(dtype):
    # Fused AdamW (r1lab's optimizer) updates parameters without moving their version counters: an engine sharing
    # the fp32 policy kept decoding with its fused copies of the old weights until sync_weights told it.
    tok = tiny_tokenizer()
    prepare_tokenizer(tok)
    policy = tiny_model(tok, seed=7)
    policy.generation_config.eos_token_id = tok.eos_token_id
    engine = NativeEngine(policy, tok, dtype=dtype, batch_size=64)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=6)
    prompts = ["1+1=", "a longer one: 40+2="]
    before = engine.generate(prompts, n=1, sampling=greedy)
    optimizer = build_optimizer(policy, 0.5, 0.0, (0.9, 0.999), 10, 0, "constant", 0.0)[0]
    versions = [p._version for p in policy.parameters()]
    for p in policy.parameters():
        p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()))
    optimizer.step()
    if optimizer.defaults.get("fused"):
        assert [p._version for p in policy.parameters()] == versions  # the counters did not move
    engine.sync_weights(policy)
    after = engine.generate(prompts, n=1, sampling=greedy)
    fresh = NativeEngine(policy, tok, dtype=dtype, batch_size=64).generate(prompts, n=1, sampling=greedy)
    assert torch.equal(after.completion_ids, fresh.completion_ids)
    assert not torch.equal(after.completion_ids, before.completion_ids)  # the step changed what it generates


@pytest.mark.parametrize("arch", ["llama", "qwen2"])  # qwen2: the packed q/k/v matmul carries a bias
def test_bf16_packed_step_equals_the_unpacked_step(monkeypatch, arch, decode_two_prompts):
    # Pre-packed oneDNN weights change how the matmuls read the weights, not what they compute: a bf16 decode with
    # packing gives the logits of the same decode on plain F.linear, bit for bit.
    tok = tiny_tokenizer()
    model = (tiny_model(tok, seed=8) if arch == "llama" else _qwen2(len(tok))).to(torch.bfloat16).eval()
    if not packing_applies(model.lm_head.weight):
        pytest.skip("this PyTorch build or CPU has no oneDNN bf16 matmul")
    decoder = LlamaDecoder(model)
    decoder.refresh_weights()
    assert decoder.head.packed is not None
    assert all(linear.packed is not None for layer in decoder.linears for linear in layer.values())
    _, packed, _ = decode_two_prompts(model)
    monkeypatch.setattr("r1lab.rollout.packed_linear.packing_applies", lambda weight: False)
    _, plain, _ = decode_two_prompts(model)
    for a, b in zip(packed, plain):
        assert torch.equal(a, b)


def test_release_frees_the_packed_weights_and_the_next_refresh_repacks():
    model = tiny_model(tiny_tokenizer(), seed=9)
    decoder = LlamaDecoder(model)
    decoder.refresh_weights()
    assert len(decoder.linears) == len(model.model.layers) and decoder.head is not None
    decoder.release()
    assert decoder.linears == [] and decoder.head is None and decoder.k == []
    decoder.refresh_weights()
    assert len(decoder.linears) == len(model.model.layers)
