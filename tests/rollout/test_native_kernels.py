"""r1lab's C decode kernels against the PyTorch/HF arithmetic they replace: attention against an exact reference,
the elementwise kernels bit for bit against HF's bf16 ops (RMSNorm up to its sum's order) and within fp32 rounding
of its fp32 ops, the whole bf16 and fp32 decode steps against the PyTorch step, and the fallbacks (disabled, no
compiler, a failing build)."""

import pytest
import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import LlamaRMSNorm, apply_rotary_pos_emb

from r1lab.models.loading import prepare_tokenizer
from r1lab.models.tiny import tiny_model, tiny_tokenizer
from r1lab.rollout import native_kernels
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.native_engine import NativeEngine

BF16_ULP = 2.0 ** -7  # bf16 keeps 8 significant bits: one unit in the last place of a number in [1, 2)


@pytest.fixture
def kernels() -> native_kernels.DecodeKernels:
    # `make test` installs a C compiler, so the kernels must build here: a missing one is a failure, not a skip.
    # Unspecialised: every head shape goes through the run-time-sized attention (the specialised copy is the same
    # code with constants; test_bf16_native_step_* and the engine test below run it).
    loaded = native_kernels.load()
    assert loaded is not None, native_kernels.unavailable_reason()
    return loaded


@pytest.fixture
def specialised() -> native_kernels.DecodeKernels:
    loaded = native_kernels.load(3, 64)  # SmolLM2-135M's head shape, compiled with constants
    assert loaded is not None, native_kernels.unavailable_reason(3, 64)
    return loaded


def _reference_attention(q, k, v, mask, scale):
    """fp64 softmax attention of one query per row, GQA heads in HF's order (head h reads kv head h // group)."""
    rows, heads, dim = q.shape
    kv_heads, n = k.shape[1], mask.shape[1]
    qq = q.double().view(rows, kv_heads, heads // kv_heads, dim)
    scores = qq @ k[:, :, :n].double().transpose(-1, -2) * scale
    scores = scores.masked_fill(~mask.view(rows, 1, 1, n), float("-inf"))
    return (scores.softmax(-1) @ v[:, :, :n].double()).reshape(rows, heads * dim)


@pytest.mark.parametrize("kv_heads,group,dim,n_slots", [
    (3, 3, 64, 163),  # SmolLM2-135M at the end of a 128-token completion; 163 is not a multiple of the 8-slot block
    (2, 4, 128, 37),  # Llama-3 / Qwen2.5 head shapes
    (2, 2, 8, 20),    # the tiny test model: a head shape outside the specialised cases (the generic path)
    (1, 1, 64, 5),    # multi-head attention, fewer slots than one block
])
@pytest.mark.parametrize("shape_constants", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_attention_matches_an_exact_reference(kernels, specialised, shape_constants, dtype, kv_heads, group, dim,
                                              n_slots):
    if shape_constants:  # the library built for SmolLM2's shape runs other shapes through the run-time-sized copy
        kernels = specialised
    gen = torch.Generator().manual_seed(0)
    rows, heads, slots = 6, kv_heads * group, n_slots + 7  # a cache longer than the slots read
    q = torch.randn(rows, heads, dim, generator=gen).to(dtype)
    k = (2 * torch.randn(rows, kv_heads, slots, dim, generator=gen)).to(dtype)
    v = torch.randn(rows, kv_heads, slots, dim, generator=gen).to(dtype)
    full = torch.ones(rows, slots, dtype=torch.bool)
    full[1, :3] = False  # left padding of a shorter prompt
    full[4, 1::2] = False  # a scattered mask
    mask = full[:, :n_slots]  # a column slice, as the decode loop passes it
    scratch = torch.empty(rows * heads * n_slots)
    out = kernels.attention(q, k, v, mask, dim ** -0.5, scratch)
    exact = _reference_attention(q, k, v, mask, dim ** -0.5)
    # fp32 arithmetic, then for bf16 one rounding: within one bf16 ulp of the exact value (|values| < 4 here); in
    # fp32, within the error of fp32 sums over a few hundred terms and the exp polynomial (~2e-7 relative)
    assert out.dtype == dtype and out.shape == (rows, heads * dim)
    assert (out.double() - exact).abs().max().item() <= (2 * BF16_ULP if dtype == torch.bfloat16 else 1e-5)


def test_attention_ignores_masked_slots_entirely(kernels):
    # a masked slot holding huge keys must not change the output: it gets weight 0, not exp(-large)
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(2, 3, 64, generator=gen).bfloat16()
    k = torch.randn(2, 1, 16, 64, generator=gen).bfloat16()
    v = torch.randn(2, 1, 16, 64, generator=gen).bfloat16()
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[:, 5] = False
    scratch = torch.empty(2 * 3 * 16)
    before = kernels.attention(q, k, v, mask, 0.125, scratch)
    k[:, :, 5], v[:, :, 5] = 1e30, float("nan")
    assert torch.equal(kernels.attention(q, k, v, mask, 0.125, scratch), before)


def test_attention_row_with_nothing_to_attend_is_zero(kernels):
    q, k, v = torch.ones(1, 2, 64).bfloat16(), torch.ones(1, 1, 4, 64).bfloat16(), torch.ones(1, 1, 4, 64).bfloat16()
    out = kernels.attention(q, k, v, torch.zeros(1, 4, dtype=torch.bool), 0.125, torch.empty(8))
    assert torch.equal(out, torch.zeros(1, 128, dtype=torch.bfloat16))


def test_attention_rejects_a_small_scratch_buffer(kernels):
    q, k = torch.ones(2, 2, 64).bfloat16(), torch.ones(2, 1, 4, 64).bfloat16()
    with pytest.raises(ValueError, match="scratch"):
        kernels.attention(q, k, k, torch.ones(2, 4, dtype=torch.bool), 0.125, torch.empty(15))


def test_add_rms_norm_equals_hf_rmsnorm_after_the_residual_add(kernels):
    gen = torch.Generator().manual_seed(2)
    norm = LlamaRMSNorm(576, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.1 * torch.randn(576, generator=gen))
    norm = norm.bfloat16()
    x = (3 * torch.randn(64, 576, generator=gen)).bfloat16()
    delta = torch.randn(64, 576, generator=gen).bfloat16()
    expected_x = x + delta  # PyTorch's bf16 add
    expected = norm(expected_x)
    got = kernels.add_rms_norm(x, delta, norm.weight, norm.variance_epsilon)
    assert torch.equal(x, expected_x)  # the residual stream updated in place, rounded as PyTorch rounds
    # The sum of squares runs in another order than PyTorch's reduction, which can move a result by one ulp at a
    # rounding boundary: all but a handful of the 36,864 values are equal (all were, when written), none is more
    # than one ulp off.
    assert int((got != expected).sum()) <= 8
    assert ((got.float() - expected.float()).abs() <= expected.float().abs() * BF16_ULP).all()
    # without a delta it is the plain norm, and x is left alone
    kept = x.clone()
    assert (kernels.add_rms_norm(x, None, norm.weight, norm.variance_epsilon) != norm(x)).sum() <= 8
    assert torch.equal(x, kept)


def test_rotary_to_cache_equals_hf_rotary_and_cache_writes_bit_for_bit(kernels):
    gen = torch.Generator().manual_seed(3)
    rows, heads, kv_heads, dim, slot = 5, 9, 3, 64, 7
    qkv = torch.randn(rows, (heads + 2 * kv_heads) * dim, generator=gen).bfloat16()
    angle = torch.rand(rows, dim // 2, generator=gen) * 40
    emb = torch.cat([angle, angle], dim=-1)
    cos, sin = emb.cos().bfloat16(), emb.sin().bfloat16()
    k_cache = torch.zeros(rows, kv_heads, 12, dim, dtype=torch.bfloat16)
    v_cache = torch.zeros(rows, kv_heads, 12, dim, dtype=torch.bfloat16)
    q = kernels.rotary_to_cache(qkv, cos, sin, k_cache, v_cache, slot, heads)
    q_ref = qkv[:, : heads * dim].view(rows, heads, 1, dim)  # HF's (batch, heads, tokens, dim)
    k_ref = qkv[:, heads * dim : (heads + kv_heads) * dim].view(rows, kv_heads, 1, dim)
    q_hf, k_hf = apply_rotary_pos_emb(q_ref, k_ref, cos.view(rows, 1, dim), sin.view(rows, 1, dim))
    assert torch.equal(q, q_hf.view(rows, heads, dim))
    assert torch.equal(k_cache[:, :, slot], k_hf.view(rows, kv_heads, dim))
    assert torch.equal(v_cache[:, :, slot], qkv[:, (heads + kv_heads) * dim :].view(rows, kv_heads, dim))
    untouched = torch.ones(12, dtype=torch.bool)
    untouched[slot] = False
    assert not k_cache[:, :, untouched].any() and not v_cache[:, :, untouched].any()


def test_swiglu_equals_silu_gate_times_up(kernels):
    gen = torch.Generator().manual_seed(4)
    gate_up = (4 * torch.randn(64, 2 * 1536, generator=gen)).bfloat16()
    gate, up = gate_up.chunk(2, dim=-1)
    expected = F.silu(gate) * up
    got = kernels.swiglu(gate_up)
    # PyTorch's exp and r1lab's may differ in the last fp32 bit, which after rounding to bf16 rarely shows: a
    # handful of the 98,304 values at most (none did, when written)
    assert int((got != expected).sum()) <= 16
    assert ((got.float() - expected.float()).abs() <= expected.float().abs() * 2 * BF16_ULP + 1e-30).all()


def test_fp32_elementwise_kernels_equal_pytorchs_fp32_ops_within_rounding(kernels):
    # Nothing rounds to a narrower type in fp32: the kernels differ from PyTorch's ops only in the order of the
    # RMSNorm's sum, fused multiply-adds and the exp polynomial, each a few fp32 ulps (~1e-7 relative).
    gen = torch.Generator().manual_seed(5)
    norm = LlamaRMSNorm(576, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.1 * torch.randn(576, generator=gen))
    x, delta = 3 * torch.randn(64, 576, generator=gen), torch.randn(64, 576, generator=gen)
    expected_x = x + delta
    got = kernels.add_rms_norm(x, delta, norm.weight, norm.variance_epsilon)
    assert got.dtype == torch.float32 and torch.equal(x, expected_x)  # the add itself is exact to fp32 rounding
    torch.testing.assert_close(got, norm(expected_x), rtol=2e-6, atol=1e-6)

    rows, heads, kv_heads, dim, slot = 5, 9, 3, 64, 7
    qkv = torch.randn(rows, (heads + 2 * kv_heads) * dim, generator=gen)
    emb = torch.cat([torch.rand(rows, dim // 2, generator=gen) * 40] * 2, dim=-1)
    cos, sin = emb.cos(), emb.sin()
    k_cache, v_cache = torch.zeros(rows, kv_heads, 12, dim), torch.zeros(rows, kv_heads, 12, dim)
    q = kernels.rotary_to_cache(qkv, cos, sin, k_cache, v_cache, slot, heads)
    q_hf, k_hf = apply_rotary_pos_emb(qkv[:, : heads * dim].view(rows, heads, 1, dim),
                                      qkv[:, heads * dim : (heads + kv_heads) * dim].view(rows, kv_heads, 1, dim),
                                      cos.view(rows, 1, dim), sin.view(rows, 1, dim))
    torch.testing.assert_close(q, q_hf.view(rows, heads, dim), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(k_cache[:, :, slot], k_hf.view(rows, kv_heads, dim), rtol=1e-6, atol=1e-6)
    assert torch.equal(v_cache[:, :, slot], qkv[:, (heads + kv_heads) * dim :].view(rows, kv_heads, dim))

    gate_up = 4 * torch.randn(64, 2 * 1536, generator=gen)
    gate, up = gate_up.chunk(2, dim=-1)
    torch.testing.assert_close(kernels.swiglu(gate_up), F.silu(gate) * up, rtol=2e-6, atol=1e-6)


def test_kernels_refuse_other_dtypes(kernels):
    with pytest.raises(TypeError, match="float16"):
        kernels.swiglu(torch.zeros(2, 8, dtype=torch.float16))


@pytest.mark.parametrize("hidden", [32, 128])
def test_fp32_native_step_is_the_pytorch_step_within_fp32_rounding(hidden, decode_two_prompts):
    model = tiny_model(tiny_tokenizer(), seed=6, hidden=hidden).eval()
    (_, native, native_decoder), (hf, plain, plain_decoder) = (decode_two_prompts(model, 6, native_kernels=flag)
                                                               for flag in (True, False))
    assert native_decoder.kernels is not None and plain_decoder.kernels is None
    for got, expected, reference in zip(native, plain, hf):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-5)  # and HF's own forward
        assert torch.equal(got.argmax(dim=-1), expected.argmax(dim=-1))


@pytest.mark.parametrize("hidden", [32, 128])  # head dim 8 (the generic kernel) and 32
def test_bf16_native_step_is_the_pytorch_step_up_to_rounding(hidden, decode_two_prompts):
    # both decoders are fed the same tokens (HF's greedy choices), whatever their own logits say
    model = tiny_model(tiny_tokenizer(), seed=6, hidden=hidden).to(torch.bfloat16).eval()
    (_, native, native_decoder), (_, plain, plain_decoder) = (decode_two_prompts(model, 6, native_kernels=flag)
                                                               for flag in (True, False))
    assert native_decoder.kernels is not None and plain_decoder.kernels is None
    for got, expected in zip(native, plain):
        # the paths differ in the attention's rounding (fp32 throughout here, SDPA rounds on the way): the logits
        # by an ulp or two of the largest (0.002 at 0.6 and 0.004 at 1.4, when written)
        assert (got.float() - expected.float()).abs().max().item() <= 4 * BF16_ULP * expected.abs().max().item()
        assert torch.equal(got.argmax(dim=-1), expected.argmax(dim=-1))


def test_bf16_engine_greedy_equals_hf_generate_on_native_kernels():
    tok = tiny_tokenizer()
    prepare_tokenizer(tok)
    model = tiny_model(tok, seed=7, hidden=64).to(torch.bfloat16).eval()
    model.generation_config.eos_token_id = tok.eos_token_id
    engine = NativeEngine(model, tok, batch_size=64)
    prompts = ["7*6=", "a long question: 9+9="]
    batch = engine.generate(prompts, n=1, sampling=SamplingParams(temperature=0.0, max_new_tokens=12))
    assert engine.decoder is not None and native_kernels.unavailable_reason(2, 16) is None
    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left")
    with torch.no_grad():
        plain = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id,
                               eos_token_id=engine.eos_ids)[:, enc.input_ids.shape[1]:]
    for row in range(2):
        k = int(batch.completion_mask[row].sum())
        assert k > 0 and batch.completion_ids[row, :k].tolist() == plain[row, :k].tolist()


def test_disabled_or_unbuildable_kernels_fall_back_to_the_pytorch_step(monkeypatch, tmp_path, decode_two_prompts):
    model = tiny_model(tiny_tokenizer(), seed=8).to(torch.bfloat16).eval()
    _, expected, _ = decode_two_prompts(model, 6, native_kernels=False)
    monkeypatch.setenv("R1LAB_CACHE", str(tmp_path))  # nothing built here yet
    try:
        monkeypatch.setenv("R1LAB_NATIVE_KERNELS", "0")
        native_kernels.load.cache_clear()
        assert native_kernels.unavailable_reason() == "disabled by R1LAB_NATIVE_KERNELS=0"
        _, logits, decoder = decode_two_prompts(model, 6)
        assert decoder.kernels is None and all(torch.equal(a, b) for a, b in zip(logits, expected))
        monkeypatch.delenv("R1LAB_NATIVE_KERNELS")
        monkeypatch.setenv("CC", "no-such-compiler-r1lab")
        native_kernels.load.cache_clear()
        assert "no C compiler" in native_kernels.unavailable_reason()
        monkeypatch.setenv("CC", "false")  # a compiler that fails: a warning, then the PyTorch step
        native_kernels.load.cache_clear()
        with pytest.warns(UserWarning, match="building the native decode kernels failed"):
            assert native_kernels.load() is None
        with pytest.warns(UserWarning, match="decoding on PyTorch's ops instead"):
            _, logits, decoder = decode_two_prompts(model, 6)
        assert decoder.kernels is None and all(torch.equal(a, b) for a, b in zip(logits, expected))
    finally:
        monkeypatch.undo()
        native_kernels.load.cache_clear()
