"""One GRPO policy update: old/reference log-probs, the clipped loss over micro-batches, the optimizer step(s).

Loss denominators are those of the whole step over all ranks, so the result does not depend on the micro-batch
size or the world size (r1lab.parallel).
"""

from __future__ import annotations

import contextlib
import math

import torch

from r1lab.algos import KL_ESTIMATORS, aggregate
from r1lab.algos.policy_losses import POLICY_LOSSES
from r1lab.algos.logprobs import attention_implementation, completion_logprobs, shared_weight_casts, training_attention
from r1lab.algos.rollout_correction import ROLLOUT_CORRECTIONS, mismatch_sums
from r1lab.config import GRPOConfig
from r1lab.models.checkpointing import replays_layers
from r1lab.models.lora import adapter_disabled
from r1lab.parallel import DistContext, all_reduce_gradients, all_reduce_max, all_reduce_sum
from r1lab.parallel.sharding import clip_grad_norm, is_sharded
from r1lab.train.run_setup import DTYPE


def batch_forward(cfg: GRPOConfig, model, batch, idx: torch.Tensor, with_entropy: bool = False, per_row: bool = False):
    """Log-probs (and entropies) of rows ``idx`` of the rollout batch under ``model``, each distinct prompt run once."""
    # rows i*G .. i*G+G-1 share prompt i: run each distinct prompt of the micro-batch once
    groups, prompt_index = torch.unique(idx // batch.group_size, return_inverse=True)
    first_rows = (groups * batch.group_size).to(batch.prompt_ids.device)
    device_type = batch.completion_ids.device.type
    with torch.autocast(device_type, dtype=DTYPE.get(cfg.model.autocast, torch.bfloat16),
                        enabled=cfg.model.autocast != "none"):
        # at the rollout temperature: the distribution the tokens were sampled from (and the engine scored)
        return completion_logprobs(model, batch.prompt_ids[first_rows], batch.prompt_mask[first_rows],
                                   batch.completion_ids[idx], batch.completion_mask[idx], with_entropy=with_entropy,
                                   temperature=cfg.rollout.temperature, per_row=per_row,
                                   prompt_index=prompt_index.to(batch.prompt_ids.device))


def rollout_kl(cfg: GRPOConfig, policy, reference, batch) -> torch.Tensor:
    """k1 = log pi - log pi_ref (B, C) of every sampled token under the policy that sampled it (algo.kl_in=reward:
    the KL becomes a per-token reward before the advantages); no gradient."""
    B, size = batch.completion_ids.shape[0], cfg.train.micro_batch_size
    out = torch.zeros(batch.completion_ids.shape, dtype=torch.float64, device=batch.completion_ids.device)
    per_row = is_sharded(policy) or cfg.train.gradient_checkpointing  # as in optimize_policy
    with torch.no_grad():
        for i in range(0, B, size):
            idx = torch.arange(i, min(i + size, B))
            logp = batch_forward(cfg, policy, batch, idx, per_row=per_row)[0]
            with adapter_disabled(reference):  # LoRA: the reference is the policy, adapter off
                ref = batch_forward(cfg, reference, batch, idx, per_row=per_row)[0]
            out[idx] = (logp - ref).double()
    return out


def optimize_policy(cfg: GRPOConfig, policy, reference, optimizer, batch, adv: torch.Tensor, loss_mask: torch.Tensor,
              dist: DistContext, update: bool = True) -> dict:
    """``num_iterations`` optimizer passes over the batch, each accumulating gradients over micro-batches.

    Loss denominators (tokens, sequences) are those of the whole step over all ranks, so accumulated gradients,
    summed over ranks, equal the full-batch gradient whatever the micro-batch size and the world size.
    ``adv``: (B,) or (B, C) per token. ``update=False`` (critic warm-up): nothing is computed or stepped.
    """
    if not update:
        return {"loss/policy": None, "loss/kl": None, "policy/clip_fraction": None, "policy/entropy": None,
                "policy/grad_norm": None, "policy/trained_sequences": 0, "tokens/trained": 0.0, "skipped": False}
    algo, B = cfg.algo, batch.completion_ids.shape[0]
    num_tokens, num_seqs = all_reduce_sum(dist, [float(loss_mask.sum()), float(B)])
    norm_constant = float(cfg.rollout.max_new_tokens)
    rows = torch.arange(B)
    if algo.skip_zero_advantage and algo.beta == 0:
        nonzero = adv != 0 if adv.dim() == 1 else (adv * loss_mask != 0).any(dim=1)
        rows = rows[nonzero.cpu() & (loss_mask.sum(dim=1) > 0).cpu()]
    # Micro-batches of similar lengths: each runs only up to its longest completion, so little compute goes to
    # padding (the gradient is a sum over rows, so the grouping does not change it)
    rows = rows[torch.argsort(batch.lengths.cpu()[rows], stable=True)]
    micro = [rows[i : i + cfg.train.micro_batch_size] for i in range(0, len(rows), cfg.train.micro_batch_size)]
    trained_seqs, trained_tokens = all_reduce_sum(dist, [float(len(rows)), float(loss_mask[rows].sum())])
    sharded, real = is_sharded(policy), len(micro)
    if sharded:  # sharded layers communicate in every forward and backward: each rank runs as many micro-batches
        # as the busiest, the extra ones on one row with zero weight
        micro += [torch.arange(1)] * (all_reduce_max(dist, len(micro)) - len(micro))

    device_type = batch.completion_ids.device.type

    # rows run whole (prompt + completion) when sharded or replaying layers, for the reference and old log-probs
    # too: log pi - log pi_ref then comes from one set of numerics (exactly 0 at equal weights)
    per_row = sharded or cfg.train.gradient_checkpointing

    def forward(model, idx, with_entropy=False):
        return batch_forward(cfg, model, batch, idx, with_entropy=with_entropy, per_row=per_row)

    # Old-policy log-probs: with one pass the ratio is exactly 1 at the only update, so the current log-probs
    # (detached) serve; with several passes they are frozen before the first update.
    old_logps = None
    if algo.num_iterations > 1:
        with torch.no_grad():
            old_logps = [forward(policy, idx)[0] for idx in micro]
    ref_logps = None
    if reference is not None and algo.kl_in == "loss":  # kl_in=reward: the KL is already in the advantages
        with torch.no_grad(), adapter_disabled(reference):  # LoRA: the reference is the policy, adapter off
            ref_logps = [forward(reference, idx)[0] for idx in micro]

    sums = {"loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "entropy": 0.0, "abs_log_ratio": 0.0, "capped": 0.0,
            "rollout_kl": 0.0}
    correct = ROLLOUT_CORRECTIONS.get(algo.rollout_correction)
    policy_loss = POLICY_LOSSES.get(algo.loss)
    rollout_logps = batch.rollout_logprobs  # (B, C) the engine's own; None when an engine records none
    skipped, grad_norm = False, float("nan")
    policy.train()
    # With activation checkpointing the layers run again in backward, with the attention they ran forward: one
    # choice for the whole pass, sized by the batch's full width (completion_logprobs switches per call otherwise)
    width = batch.prompt_ids.shape[1] + batch.completion_ids.shape[1]
    replay = replays_layers(policy)

    def attention():  # a fresh context each pass (num_iterations > 1)
        return attention_implementation(policy, training_attention(policy, width)) if replay else contextlib.nullcontext()

    for iteration in range(algo.num_iterations):
        optimizer.zero_grad(set_to_none=True)
        with attention(), shared_weight_casts(device_type):  # one bf16 copy of the weights for the pass's micro-batches
            for j, idx in enumerate(micro):
                logp, entropy = forward(policy, idx, with_entropy=iteration == 0)
                old = old_logps[j] if old_logps is not None else logp.detach()
                mask = loss_mask[idx] if j < real else torch.zeros_like(loss_mask[idx])  # padding counts nothing
                per_token, clipped = policy_loss(logp, old, adv[idx], mask, algo.clip_low, algo.clip_high,
                                                 algo.sapo_tau_pos, algo.sapo_tau_neg)
                if rollout_logps is not None:  # the sampler's numerics are not the trainer's: importance weights
                    weights, capped = correct(old, rollout_logps[idx], algo.rollout_correction_cap)
                    per_token = per_token * weights
                    if iteration == 0:
                        gap = mismatch_sums(old, rollout_logps[idx], capped, mask)
                        sums["abs_log_ratio"] += gap["abs_log_ratio"]
                        sums["capped"] += gap["capped"]
                        sums["rollout_kl"] += gap["kl"]
                if ref_logps is not None:
                    kl = KL_ESTIMATORS.get(algo.kl_estimator)(logp, ref_logps[j])
                    per_token = per_token + algo.beta * kl
                    sums["kl"] += float((kl.detach() * mask).sum()) / max(num_tokens, 1)
                loss = aggregate(algo.loss_aggregation, per_token, mask, num_tokens, num_seqs, norm_constant)
                if j >= real:
                    loss = loss * 0.0
                loss.backward()
                sums["loss"] += float(loss.detach())
                sums["clip_frac"] += float((clipped * mask).sum()) / max(num_tokens, 1)
                if entropy is not None:
                    sums["entropy"] += float((entropy * mask).sum()) / max(trained_tokens, 1)
        if not trained_seqs:  # every group of every rank had identical rewards: nothing to learn from this batch
            break
        all_reduce_gradients(policy, dist)  # every rank now holds the global gradient, and steps identically
        max_norm = cfg.train.max_grad_norm or float("inf")
        grad_norm = (clip_grad_norm(policy, max_norm, dist) if sharded
                     else float(torch.nn.utils.clip_grad_norm_(policy.parameters(), max_norm)))
        if not math.isfinite(grad_norm):
            optimizer.zero_grad(set_to_none=True)  # non-finite gradient guard: skip the step, count it
            skipped = True
            break
        optimizer.step()
    n_iter = max(algo.num_iterations, 1)
    sums = dict(zip(sums, all_reduce_sum(dist, list(sums.values()))))
    return {"loss/policy": sums["loss"] / n_iter, "loss/kl": sums["kl"] / n_iter if ref_logps is not None else None,
            "policy/clip_fraction": sums["clip_frac"] / n_iter,
            "policy/entropy": sums["entropy"] if trained_seqs else None,
            "policy/grad_norm": grad_norm, "policy/trained_sequences": int(trained_seqs),
            # engine vs trainer on the trained tokens: mean |log ratio|, share capped (tis) or dropped (icepop), KL
            **({"rollout/abs_log_ratio": sums["abs_log_ratio"] / max(trained_tokens, 1),
                "rollout/capped_fraction": sums["capped"] / max(trained_tokens, 1),
                "rollout/kl": sums["rollout_kl"] / max(trained_tokens, 1)} if rollout_logps is not None else {}),
            "tokens/trained": trained_tokens, "skipped": skipped}
