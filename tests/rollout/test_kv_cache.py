"""PreallocatedLayer holds exactly what HF's DynamicLayer holds after the same operations, without re-concatenating."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from r1lab.rollout.kv_cache import PreallocatedLayer, preallocate


def states(batch: int, length: int, start: float) -> torch.Tensor:
    # (B, H=2, L, D=3) with distinct values, so a wrong row or position shows up
    return torch.arange(batch * 2 * length * 3, dtype=torch.float32).reshape(batch, 2, length, 3) + start


def test_same_contents_as_dynamic_layer_through_decode_select_and_repeat():
    prompt_k, prompt_v = states(2, 4, 0.0), states(2, 4, 1000.0)
    reference = DynamicLayer()
    reference.update(prompt_k, prompt_v)
    layer = PreallocatedLayer(prompt_k, prompt_v, capacity=6)
    ops = [("repeat", 3), ("update", 1), ("update", 1), ("select", torch.tensor([0, 2, 5])), ("update", 1),
           ("update", 2)]  # the last update needs 9 slots of a 6-slot buffer: it grows
    for i, (op, arg) in enumerate(ops):
        if op == "repeat":
            reference.batch_repeat_interleave(arg)
            layer.batch_repeat_interleave(arg)
        elif op == "select":
            reference.batch_select_indices(arg)
            layer.batch_select_indices(arg)
        else:
            batch = reference.keys.shape[0]
            k, v = states(batch, arg, 100.0 * (i + 1)), states(batch, arg, -100.0 * (i + 1))
            ref_out, out = reference.update(k, v), layer.update(k, v)
            assert torch.equal(out[0], ref_out[0]) and torch.equal(out[1], ref_out[1])
        assert torch.equal(layer.keys, reference.keys) and torch.equal(layer.values, reference.values)
        assert layer.get_seq_length() == reference.get_seq_length()
    assert layer.keys.shape == (3, 2, 9, 3)
    # row 1 of the selected batch was original row 2 -> after repeat_interleave(3), row 2 is prompt row 0
    assert torch.equal(layer.keys[1, :, :4], prompt_k[0])
    layer.crop(-2)
    assert layer.get_seq_length() == 7 and torch.equal(layer.keys, reference.keys[:, :, :7])


def test_in_place_writes_into_the_buffer_no_new_storage_per_token():
    layer = PreallocatedLayer(states(1, 2, 0.0), states(1, 2, 0.0), capacity=10)
    storage = layer.keys.untyped_storage().data_ptr()
    for _ in range(8):
        layer.update(states(1, 1, 7.0), states(1, 1, 7.0))
    assert layer.get_seq_length() == 10 and layer.keys.untyped_storage().data_ptr() == storage


def test_preallocate_swaps_only_initialised_plain_dynamic_layers():
    cache = DynamicCache()
    cache.update(states(1, 3, 0.0), states(1, 3, 0.0), layer_idx=0)
    cache.update(states(1, 3, 5.0), states(1, 3, 5.0), layer_idx=1)
    before = [layer.keys.clone() for layer in cache.layers]
    preallocate(cache, extra_tokens=4)
    assert all(type(layer) is PreallocatedLayer for layer in cache.layers)
    assert all(torch.equal(layer.keys, b) for layer, b in zip(cache.layers, before))
    assert cache.get_seq_length() == 3
    cache.update(states(1, 1, 9.0), states(1, 1, 9.0), layer_idx=0)
    assert cache.layers[0].get_seq_length() == 4
