"""Log-probabilities and entropies of completion tokens, without materialising full-vocabulary fp32 logits for
the prompt (only the completion positions are projected through the LM head)."""

from __future__ import annotations

import torch


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) positions that start at 0 on the first real token, as generate() assigns them for left padding."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def selective_log_softmax(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[ids] per position, computed in fp32. logits: (B, T, V), ids: (B, T) -> (B, T)."""
    logits = logits.float()
    picked = logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of softmax(logits) per position, fp32. (B, T, V) -> (B, T)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def completion_logprobs(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    with_entropy: bool = False,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (B, C) of ``completion_ids`` given left-padded prompts, under ``model`` at ``temperature``.

    Position ids are derived from the attention mask so left-padded rows see the same positions as in
    generation. Only the last C + 1 positions go through the LM head (``logits_to_keep``).
    """
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # (B, P + C)
    attention_mask = torch.cat([prompt_mask.long(), completion_mask.long()], dim=1)
    C = completion_ids.shape[1]
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        logits_to_keep=C + 1,
        use_cache=False,
    )
    logits = out.logits[:, :-1, :]  # (B, C, V): position t predicts completion token t
    if temperature != 1.0:
        logits = logits / temperature
    logp = selective_log_softmax(logits, completion_ids)
    entropy = entropy_from_logits(logits.detach()) if with_entropy else None
    return logp, entropy
