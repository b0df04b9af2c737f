"""Activation checkpointing: when a forward replays its layers, and that replay keeps values and gradients while
saving fewer bytes for the backward pass."""

from __future__ import annotations

import torch

from r1lab.models.checkpointing import enable_activation_checkpointing, replays_layers
from r1lab.models.tiny import tiny_model, tiny_tokenizer


def test_replays_only_when_on_training_and_recording_gradients():
    model = tiny_model(tiny_tokenizer(), seed=0)
    model.train()
    assert not replays_layers(model)  # off by default
    enable_activation_checkpointing(model)
    assert replays_layers(model)
    with torch.no_grad():  # nothing to replay without a backward pass
        assert not replays_layers(model)
    model.eval()
    assert not replays_layers(model)


def _saved_bytes_and_grads(model, ids):
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(input_ids=ids, use_cache=False).logits.float().logsumexp(-1).mean()
    loss.backward()
    return sum(saved), float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_checkpointed_layers_keep_loss_and_gradients_and_save_less_for_backward():
    tok = tiny_tokenizer()
    ids = torch.randint(5, len(tok), (4, 48), generator=torch.Generator().manual_seed(0))
    plain, checkpointed = tiny_model(tok, seed=2).train(), tiny_model(tok, seed=2).train()
    enable_activation_checkpointing(checkpointed)
    bytes_plain, loss_plain, grads_plain = _saved_bytes_and_grads(plain, ids)
    bytes_ckpt, loss_ckpt, grads_ckpt = _saved_bytes_and_grads(checkpointed, ids)
    assert loss_ckpt == loss_plain
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    # The layers' intermediates (attention, MLP) are not kept between forward and backward; the LM head's are.
    assert bytes_ckpt < 0.6 * bytes_plain, (bytes_ckpt, bytes_plain)
