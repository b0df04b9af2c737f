"""FSDP2 (``torch.distributed.fsdp.fully_shard``): each decoder layer's parameters, gradients and optimizer state
are split over the ranks; a layer's full weights exist only while it runs (gathered before its forward and its
backward, re-sharded after).

Only the decoder layers are sharded; the embeddings, the final norm and the (often tied) LM head stay whole on every
rank, with their gradients summed like ddp's (``all_reduce_gradients``). Why: FSDP gathers a group's parameters in
that module's own forward, and r1lab's losses use the LM head's weight directly (tiled log-probs, never the full
logits) and run the backbone twice per micro-batch, so those parameters are never inside one forward call of
their module. In a Llama-style model the layers hold nearly all parameters (SmolLM2-135M: 106M of 135M; an 8B model
about 7B of 8B).

Collectives happen inside every sharded forward and backward, so every rank must run the same number of them: the
trainer pads a rank's micro-batches with zero-weight ones up to the largest count over ranks.
"""

from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor

from r1lab.parallel.context import DistContext, all_reduce_sum


def shard_layers(model: torch.nn.Module) -> None:
    """fully_shard each decoder layer in place, summing (not averaging) gradients over ranks: r1lab's losses are
    already normalised by the global token count."""
    from torch.distributed.fsdp import fully_shard

    for layer in model.get_decoder().layers:
        # reshard_after_forward=True, not FSDP's default: each layer is its own root here, and a root left to the
        # default keeps its whole weights after forward (waiting for a backward), so a forward-only pass (held-out
        # loss, a reference or teacher model) would end holding every layer whole on every rank
        fully_shard(layer, reshard_after_forward=True)
        layer.set_gradient_divide_factor(1.0)
        # plain sums on the wire: gloo (CPU) has no pre-multiplied sum, which FSDP would otherwise use
        layer.set_force_sum_reduction_for_comms(True)


def is_sharded(model: torch.nn.Module) -> bool:
    return any(isinstance(p, DTensor) for p in model.parameters())


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer whole, on every rank (a collective: all ranks call it together)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if not is_sharded(model):
        return model.state_dict()
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))


def clip_grad_norm(model: torch.nn.Module, max_norm: float, ctx: DistContext) -> float:
    """torch.nn.utils.clip_grad_norm_ for a model with sharded and whole parameters: the global L2 norm of all
    gradients (sharded ones' squares summed over ranks, whole ones counted once), and every gradient scaled by
    min(1, max_norm / (norm + 1e-6)) as torch does. Returns the norm before clipping."""
    sharded = whole = 0.0
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    for g in grads:
        if isinstance(g, DTensor):
            sharded += float(g.to_local().double().pow(2).sum())
        else:
            whole += float(g.double().pow(2).sum())
    total = (all_reduce_sum(ctx, [sharded])[0] + whole) ** 0.5
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g.mul_(coef)
    return total
