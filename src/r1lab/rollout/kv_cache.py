"""A key/value cache that is written in place during decoding instead of re-concatenated at every token.

HF's ``DynamicLayer.update`` does ``torch.cat([cache, new])`` per layer and per step, so decoding C tokens after
a P-token prompt copies the whole cache C times (O(C * (P + C)) memory traffic, the largest non-matmul cost of a
CPU decode step at batch 64). ``preallocate`` swaps each layer of a prefilled ``DynamicCache`` for a
``PreallocatedLayer`` that owns a buffer with room for the tokens still to come and hands attention a view of its
filled part. Same values, same shapes; only where they live changes.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys/values are views ``buffer[:, :, :length]`` of a larger (B, H, capacity, D)
    buffer; ``update`` writes the new tokens in place (and doubles the buffer if it is ever full)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, capacity: int):
        super().__init__()
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self.length = keys.shape[-2]
        self._key_buffer = self._buffer_for(keys, max(capacity, self.length))
        self._value_buffer = self._buffer_for(values, max(capacity, self.length))
        self._refresh_views()

    @staticmethod
    def _buffer_for(states: torch.Tensor, capacity: int) -> torch.Tensor:
        buffer = states.new_empty(*states.shape[:-2], capacity, states.shape[-1])
        buffer[..., : states.shape[-2], :] = states
        return buffer

    def _refresh_views(self) -> None:
        self.keys = self._key_buffer[..., : self.length, :]
        self.values = self._value_buffer[..., : self.length, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        new = key_states.shape[-2]
        if self.length + new > self._key_buffer.shape[-2]:  # not expected when capacity was given right
            grown = 2 * (self.length + new)
            self._key_buffer = self._buffer_for(self.keys, grown)
            self._value_buffer = self._buffer_for(self.values, grown)
        self._key_buffer[..., self.length : self.length + new, :] = key_states
        self._value_buffer[..., self.length : self.length + new, :] = value_states
        self.length += new
        self._refresh_views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        self.length = max(0, self.length + tokens_to_remove)
        self._refresh_views()

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._key_buffer = self._key_buffer.repeat_interleave(repeats, dim=0)
        self._value_buffer = self._value_buffer.repeat_interleave(repeats, dim=0)
        self._refresh_views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        # only the filled part is copied; the room left stays as it was
        capacity = self._key_buffer.shape[-2]
        self._key_buffer = self._buffer_for(self.keys[indices], capacity)
        self._value_buffer = self._buffer_for(self.values[indices], capacity)
        self._refresh_views()

    def reset(self) -> None:
        self.length = 0
        self._refresh_views()


def preallocate(cache, extra_tokens: int) -> None:
    """Give every plain dynamic layer of ``cache`` (a prefilled HF ``DynamicCache``) room for ``extra_tokens`` more
    tokens, written in place. Layers of other kinds (sliding-window, quantised, linear-attention) are left as they
    are: they keep HF's behaviour."""
    layers = getattr(cache, "layers", None)
    if layers is None:
        return
    for i, layer in enumerate(layers):
        if type(layer) is DynamicLayer and layer.is_initialized and layer.keys.numel():
            layers[i] = PreallocatedLayer(layer.keys, layer.values, layer.keys.shape[-2] + extra_tokens)
