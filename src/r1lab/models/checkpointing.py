"""Activation (gradient) checkpointing: a memory option for training.

Each decoder layer keeps only its input in the forward pass and is run again in the backward pass to rebuild the
activations its gradient needs: activation memory falls from every intermediate of every layer to one hidden state
per layer, for about one more forward pass of compute. transformers' layers do the replay
(``activation_checkpointing_enable``, non-reentrant ``torch.utils.checkpoint``); r1lab switches it on and, since a
replayed layer must not write a KV cache a second time, runs each row's prompt together with its completion in
one cache-free forward while it is on (``r1lab.algos.logprobs.completion_logprobs``).
"""

from __future__ import annotations

import torch


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Replay every decoder layer in the backward pass (transformers' API under either of its names)."""
    kwargs = {"use_reentrant": False}  # non-reentrant: correct with inputs that need no grad and with autocast
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x; the older name warns there
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def replays_layers(model: torch.nn.Module) -> bool:
    """Whether a forward of ``model`` now would checkpoint its layers (on, training mode, gradients enabled)."""
    return (model.training and torch.is_grad_enabled()
            and any(getattr(m, "gradient_checkpointing", False) for m in model.modules()))
