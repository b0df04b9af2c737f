"""LoRA through PEFT (r1lab.models.lora): the merged engine copy computes the unmerged adapter forward, the reference
with the adapter off is the base model, checkpoints hold the adapter only and restore it exactly."""

from __future__ import annotations

import copy

import pytest
import torch

from r1lab.algos.logprobs import completion_logprobs
from r1lab.config import GRPOConfig, load_config
from r1lab.models.lora import MergedCopy, adapter_disabled, default_targets, plain_copy, trainable_state_dict, wrap_lora
from r1lab.models.tiny import tiny_model
from r1lab.train import checkpoint as ckpt
from r1lab.train.optim import build_optimizer

pytest.importorskip("peft")


def lora_section(*overrides: str):
    return load_config(GRPOConfig, None, ["lora.rank=4", *overrides]).lora


def wrapped(dtype: torch.dtype, *overrides: str):
    """(base copy, plain replica, PEFT model with non-zero B), all in ``dtype``."""
    base = tiny_model(seed=0).to(dtype)
    original = copy.deepcopy(base)
    replica = plain_copy(base, dtype)
    model = wrap_lora(base, lora_section(*overrides))
    torch.manual_seed(1)
    with torch.no_grad():  # B starts at 0 (the adapter is a no-op); give it a real update to merge
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    return original, replica, model


def batch(vocab: int):
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(5, vocab, (2, 5), generator=g)
    mask = torch.ones(2, 5, dtype=torch.long)
    mask[1, :2] = 0  # left padding
    completion = torch.randint(5, vocab, (2, 6), generator=g)
    return prompt, mask, completion, torch.ones(2, 6)


def test_default_targets_are_the_decoder_linears():
    assert default_targets(tiny_model()) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


def test_only_adapters_train_and_checkpoints_hold_only_them():
    _, _, model = wrapped(torch.float32)
    trained = trainable_state_dict(model)
    assert trained and all("lora_A" in k or "lora_B" in k for k in trained)
    assert len(trained) == 2 * 7 * 2  # A and B, 7 layers per block, 2 blocks


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_merged_copy_equals_the_unmerged_adapter_forward(dtype):
    """W + scale * B A in the engine's plain copy gives the PEFT model's logits, to rounding of ``dtype``."""
    tol = 100 * torch.finfo(dtype).eps  # merging reorders the sums: x (W + s B A) vs x W + s (x A) B
    _, replica, model = wrapped(dtype)
    MergedCopy(replica, model).sync()
    ids = torch.randint(5, replica.config.vocab_size, (3, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        unmerged = model(input_ids=ids).logits
        merged = replica(input_ids=ids).logits
    assert not torch.equal(unmerged, tiny_model(seed=0).to(dtype)(input_ids=ids).logits)  # the adapter does act
    scale = unmerged.abs().max()
    assert (merged - unmerged).abs().max() <= tol * scale, float((merged - unmerged).abs().max() / scale)


def test_sync_leaves_the_trained_model_untouched():
    _, replica, model = wrapped(torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    MergedCopy(replica, model).sync()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_reference_with_the_adapter_off_is_the_base_model():
    original, _, model = wrapped(torch.float64)
    args = batch(original.config.vocab_size)
    with torch.no_grad():
        base, _ = completion_logprobs(original, *args)
        with adapter_disabled(model):
            ref, _ = completion_logprobs(model, *args)
        adapted, _ = completion_logprobs(model, *args)
    assert torch.equal(ref, base)  # the same operations on the same frozen weights: bit-identical
    assert not torch.allclose(adapted, base)


def test_modules_to_save_reach_the_merged_copy():
    _, replica, model = wrapped(torch.float64, "lora.modules_to_save=[embed_tokens]")
    with torch.no_grad():
        trained = model.get_base_model().model.embed_tokens.modules_to_save["default"].weight
        trained.add_(1.0)
    MergedCopy(replica, model).sync()
    assert torch.equal(replica.model.embed_tokens.weight, trained)


def test_checkpoint_round_trip_restores_adapter_and_optimizer(tmp_path):
    _, _, model = wrapped(torch.float32)
    opt, sched = build_optimizer(model, 1e-2, 0.0, (0.9, 0.99), 10, 0, "constant", 0.1)
    ids = torch.randint(5, 50, (2, 7))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    ckpt.save_checkpoint(tmp_path, 1, model, opt, sched, {})
    saved = (tmp_path / "step_1" / "model.safetensors")
    from safetensors.torch import load_file

    assert set(load_file(saved)) == set(trainable_state_dict(model))  # the adapter only
    _, _, fresh = wrapped(torch.float32)
    opt2, sched2 = build_optimizer(fresh, 1e-2, 0.0, (0.9, 0.99), 10, 0, "constant", 0.1)
    ckpt.load_checkpoint(tmp_path / "step_1", fresh, opt2, sched2)
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys() and all(torch.equal(s1[i]["exp_avg"], s2[i]["exp_avg"]) for i in s1)
