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
    prompt_index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (B, C) of ``completion_ids`` given left-padded prompts, under ``model`` at ``temperature``.

    GRPO samples G completions of each prompt, so the prompt is run once per *distinct* prompt and its keys and
    values are shared: ``prompt_ids`` (U, P) holds the U distinct prompts and ``prompt_index`` (B,) says which
    one row b continues (None: U == B, row b continues prompt b). Gradients flow back through the shared keys and
    values exactly as in the unshared forward; the prompt forward costs U/B of it. Position ids come from the
    attention mask so left-padded rows see the positions generate() gave them; only completion positions go
    through the LM head.
    """
    B, C = completion_ids.shape
    if prompt_index is None:
        prompt_index = torch.arange(B, device=completion_ids.device)
    prompt_mask = prompt_mask.long()
    # 1. prompts once: keys/values of every layer, and the logits at the last prompt position (predicts token 0)
    prompt_out = model(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        position_ids=position_ids_from_mask(prompt_mask),
        logits_to_keep=1,
        use_cache=True,
    )
    cache = prompt_out.past_key_values
    cache.batch_select_indices(prompt_index)  # (U, ...) -> (B, ...), differentiable indexing
    logits = prompt_out.logits[prompt_index]  # (B, 1, V)
    # 2. completions on top of the shared cache: input token t predicts completion token t + 1
    if C > 1:
        full_mask = torch.cat([prompt_mask[prompt_index], completion_mask.long()], dim=1)  # (B, P + C)
        P = prompt_ids.shape[1]
        completion_out = model(
            input_ids=completion_ids[:, :-1],
            attention_mask=full_mask[:, :-1],
            position_ids=position_ids_from_mask(full_mask)[:, P:-1],
            past_key_values=cache,
            use_cache=True,
        )
        logits = torch.cat([logits, completion_out.logits], dim=1)  # (B, C, V)
    if temperature != 1.0:
        logits = logits / temperature
    logp = selective_log_softmax(logits, completion_ids)
    entropy = entropy_from_logits(logits.detach()) if with_entropy else None
    return logp, entropy
