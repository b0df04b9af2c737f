"""The memory planner (r1lab.train.memory_plan) against bytes computed by hand for the tiny Llama, and the
`--dry-run` of the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from r1lab.models.tiny import tiny_model, tiny_tokenizer
from r1lab.train.memory_plan import Settings, model_shape, options_that_fit, plan

# tiny_model(): hidden 32, MLP 64, 2 layers, 4 heads of 8, 2 key/value heads, tied embeddings
H, I, L, KV = 32, 64, 2, 16


def vocab() -> int:
    return len(tiny_tokenizer())


def hand_params() -> int:
    per_layer = H * H + H * KV + H * KV + H * H + 3 * H * I + 2 * H  # q k v o, gate up down, two norms
    return vocab() * H + L * per_layer + H  # embeddings (tied with the head), layers, final norm


def test_shape_from_the_meta_device_matches_the_real_model():
    shape = model_shape(tiny_model().config)
    real = tiny_model()
    assert shape.params == hand_params() == sum(p.numel() for p in real.parameters())  # tied head counted once
    assert (shape.layers, shape.hidden, shape.intermediate, shape.heads, shape.kv_heads, shape.head_dim) == \
        (L, H, I, 4, 2, 8)
    # LoRA rank 4: r x (in + out) per adapted linear, q k v o gate up down, 2 layers
    per_layer = 4 * ((H + H) + (H + KV) + (H + KV) + (H + H) + 3 * (H + I))
    assert shape.lora_params(4) == 2 * per_layer == 4096


def test_lora_parameter_count_is_pefts():
    pytest.importorskip("peft")
    from r1lab.config import GRPOConfig, load_config
    from r1lab.models.lora import count_parameters, wrap_lora

    model = wrap_lora(tiny_model(), load_config(GRPOConfig, None, ["lora.rank=4"]).lora)
    assert count_parameters(model)[0] == model_shape(tiny_model().config).lora_params(4)


BASE = Settings(train_dtype="float32", rollout_dtype="float32", reference=True, kv_sequences=8, kv_tokens=20,
                micro_sequences=4, prompt_tokens=6, completion_tokens=10, group_size=2, eager_attention=True,
                logit_rows=1024)


def test_full_fine_tuning_bytes_by_hand():
    shape, N, V = model_shape(tiny_model().config), hand_params(), vocab()
    p = plan(shape, BASE)
    assert p.parts["parameters"] == 4 * N and p.parts["gradients"] == 4 * N
    assert p.parts["optimizer (AdamW, 2 moments)"] == 8 * N and p.parts["reference model"] == 4 * N
    assert p.parts["rollout copy"] == 0
    assert p.parts["KV cache (rollout batch)"] == 2 * L * 2 * 8 * 8 * 20 * 4  # k and v, layers, kv heads, dim, seqs
    # 2 distinct prompts of 6 tokens + 4 completions of 10: 52 tokens; attention 2 x 6^2 + 4 x 10 x 16 = 712 per head
    per_layer = 52 * (10 * H + 3 * KV + 4 * I) * 4 + 4 * 712 * 4
    assert p.parts["activations (one micro-batch)"] == L * per_layer + 40 * V * 4 * 2  # + the fp32 logits tile
    assert p.peak == 20 * N + max(p.parts["KV cache (rollout batch)"], p.parts["activations (one micro-batch)"])


def test_lora_and_checkpointing_bytes_by_hand():
    shape, N, V = model_shape(tiny_model().config), hand_params(), vocab()
    import dataclasses

    p = plan(shape, dataclasses.replace(BASE, lora_rank=4, rollout_copy=True, gradient_checkpointing=True))
    assert p.parts["parameters"] == 4 * (N + 4096) and p.parts["gradients"] == 4 * 4096
    assert p.parts["optimizer (AdamW, 2 moments)"] == 8 * 4096
    assert p.parts["reference model"] == 0 and p.parts["rollout copy"] == 4 * N  # adapter off; the merged copy
    # checkpointing: every row runs prompt + completion (4 x 16 tokens); one hidden state per layer is kept, and
    # one layer's activations exist while it is replayed
    one_layer = 64 * (10 * H + 3 * KV + 4 * I) * 4 + 4 * (4 * 16 * 16) * 4
    assert p.parts["activations (one micro-batch)"] == L * 64 * H * 4 + one_layer + 40 * V * 4 * 2


def test_options_that_fit_name_the_fix():
    shape = model_shape(tiny_model().config)
    full = plan(shape, BASE)
    tight = plan(shape, BASE, free=full.peak - 1)
    assert not tight.fits
    fixes = options_that_fit(shape, tight)
    assert any("lora.rank=16" in f for f in fixes) and any("train.parallel=fsdp" in f for f in fixes)
    assert options_that_fit(shape, plan(shape, BASE, free=full.peak)) == []


def test_dry_run_prints_the_plan_and_trains_nothing(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "r1lab.cli", "grpo", "configs/zero_cpu.yaml", "--dry-run",
                           "--set", f"model.name={tiny_model_dir}", "--set", f"log.output_dir={run}",
                           "--set", "lora.rank=8"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("memory plan: peak") and "LoRA rank 8" in proc.stdout
    for part in ("parameters", "gradients", "optimizer", "reference model", "rollout copy", "KV cache",
                 "activations (one micro-batch)", "with train.gradient_checkpointing=true"):
        assert part in proc.stdout
    assert not run.exists()


def test_bf16_master_weights_bytes_by_hand():
    """bf16 weights: 2 bytes of weight + 2 of gradient + 8 of fp32 AdamW moments per parameter (torch's AdamW
    would keep bf16 moments: r1lab's LowPrecisionAdamW keeps fp32 ones), Kahan adds a compensation buffer: 2 bytes
    in bf16, 4 (fp32) over fp16 weights. The reference copy and the activations are in bf16 too."""
    import dataclasses

    shape, N, V = model_shape(tiny_model().config), hand_params(), vocab()
    fp32 = plan(shape, BASE)
    for update, dtype, comp in (("stochastic_rounding", "bfloat16", 0), ("kahan", "bfloat16", 2),
                                ("kahan", "float16", 4)):
        p = plan(shape, dataclasses.replace(BASE, train_dtype=dtype, rollout_dtype=dtype, low_precision_update=update))
        assert p.parts["parameters"] == 2 * N and p.parts["gradients"] == 2 * N
        assert p.parts["optimizer (AdamW, 2 moments)"] == 8 * N
        assert p.parts.get("Kahan compensation", 0) == comp * N
        assert p.parts["reference model"] == 2 * N
        assert p.parts["activations (one micro-batch)"] == (fp32.parts["activations (one micro-batch)"]
                                                            - 40 * V * 4 * 2) // 2 + 40 * V * 4 * 2  # logits: fp32
        assert p.resident == (14 + comp) * N  # against fp32's 20 N (4 + 4 + 8, and a 4-byte reference)
    assert fp32.resident == 20 * N and "Kahan compensation" not in fp32.parts


def test_options_that_fit_offer_bf16_master_weights():
    import dataclasses

    shape, N = model_shape(tiny_model().config), hand_params()
    st = dataclasses.replace(BASE, rollout_dtype="bfloat16")  # generation in bf16 (a GPU's auto)
    bf16 = plan(shape, dataclasses.replace(st, train_dtype="bfloat16", low_precision_update="stochastic_rounding"))
    tight = plan(shape, st, free=bf16.peak)  # fp32 weights with their bf16 rollout copy do not fit there
    assert not tight.fits
    fixes = options_that_fit(shape, tight)
    assert f"--set model.train_dtype=bfloat16 (bf16 weights with fp32 AdamW moments and stochastic rounding; peak " \
           f"{bf16.peak / 2**30:.1f} GB)" in fixes
    # already bf16: nothing more to offer of that kind
    assert not any("train_dtype" in f for f in options_that_fit(shape, plan(shape, bf16.settings, free=bf16.peak - 1)))


def test_job_settings_take_the_resolved_remedy():
    from r1lab.config import SFTConfig, load_config
    from r1lab.train.memory_plan import sft_settings

    base = ["data.train_path=x.jsonl", "model.train_dtype=bfloat16"]
    cpu = torch.device("cpu")
    assert sft_settings(load_config(SFTConfig, None, base), cpu).low_precision_update == "stochastic_rounding"
    kahan = load_config(SFTConfig, None, base + ["model.low_precision_update=kahan"])
    assert sft_settings(kahan, cpu).low_precision_update == "kahan"
    assert sft_settings(load_config(SFTConfig, None, ["data.train_path=x.jsonl"]), cpu).low_precision_update == "none"


def test_native_decoder_counts_its_packed_weights_and_fused_buffers_unless_it_owns_a_copy():
    shape = model_shape(tiny_model().config)
    packed = hand_params() * 4  # every matmul weight packed once per rollout (fp32)
    fused = L * (H * H + 2 * H * KV + 2 * H * I) * 4  # q/k/v and gate/up fused beside the weights
    base = dict(train_dtype="float32", rollout_dtype="float32", autocast="none", decode_weights=True,
                kv_sequences=8, kv_tokens=16)
    shared = plan(shape, Settings(**base)).parts["engine decode weights (rollout)"]
    assert shared == packed + fused
    # full FT with another rollout dtype: the engine's own copy, whose projections view the fused buffers
    own = plan(shape, Settings(**{**base, "rollout_dtype": "bfloat16", "rollout_copy": True}))
    assert own.parts["engine decode weights (rollout)"] == hand_params() * 2
    # LoRA: the merged copy is written through its parameters, so the decoder fuses beside it
    lora = plan(shape, Settings(**{**base, "rollout_copy": True, "lora_rank": 4}))
    assert lora.parts["engine decode weights (rollout)"] == packed + fused
