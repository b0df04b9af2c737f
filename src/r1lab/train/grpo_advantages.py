"""The advantages of one GRPO step, by ``algo.advantage`` and ``algo.kl_in`` (the math is in r1lab.algos.advantages).

- kl_in=loss: one advantage per sequence from the registered estimator (grpo, dr_grpo, rloo: per group;
  reinforce_pp: over the global batch).
- kl_in=reward: k1 = log pi - log pi_ref of each sampled token becomes a reward -beta * k1 (InstructGPT eq. 2,
  REINFORCE++ eq. 7), so advantages are per token. reinforce_pp: the return-to-go R - beta * sum_{s>=t} k1_s,
  normalised over every real token of the global batch (REINFORCE++ eq. 9-10). grpo, dr_grpo, rloo: the sequence's
  group advantage minus beta * sum_{s>=t} k1_s (the KL is not group-normalised).
- gae: token rewards (R on the last token, -beta * k1 per token with kl_in=reward) and the critic's values give
  GAE advantages and the critic's return targets.
Samples whose reward could not be computed (``valid`` False) get advantage 0 on every token.
"""

from __future__ import annotations

import torch

from r1lab.algos.advantages import ADVANTAGES, gae, global_normalize, kl_to_go, token_rewards


def step_advantages(cfg, rewards: torch.Tensor, valid: torch.Tensor, completion_mask: torch.Tensor,
                    kl: torch.Tensor | None, values: torch.Tensor | None, sum_all
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """rewards, valid: (B,); completion_mask, kl, values: (B, C). Returns the advantages ((B,) or (B, C)) and, for
    gae, the (B, C) returns the critic regresses on (else None)."""
    algo, G = cfg.algo, cfg.rollout.group_size
    if algo.advantage == "reinforce_pp" or kl is not None or values is not None:
        # statistics over the whole batch (or many tokens): float64, so that the all-reduced sums of W ranks give
        # the single process's advantages to float64 rounding
        rewards = rewards.double()
    token_mask = completion_mask * valid.to(completion_mask.dtype).unsqueeze(1)  # (B, C)
    kl = kl.to(rewards.dtype) if kl is not None else None
    if algo.advantage == "gae":
        r_tok = token_rewards(torch.where(valid, rewards, torch.zeros_like(rewards)), kl, token_mask, algo.beta)
        adv, returns = gae(r_tok, values.to(rewards.dtype), token_mask, cfg.critic.gamma, cfg.critic.lam)
        return adv, returns
    if kl is None:
        estimator = ADVANTAGES.get(algo.advantage)
        return estimator(rewards.view(-1, G), valid.view(-1, G), sum_all=sum_all).view(-1), None
    kl_return = algo.beta * kl_to_go(kl, token_mask)  # (B, C)
    if algo.advantage == "reinforce_pp":
        returns = rewards.unsqueeze(1) - kl_return
        return global_normalize(returns, token_mask > 0, sum_all=sum_all), None
    seq = ADVANTAGES.get(algo.advantage)(rewards.view(-1, G), valid.view(-1, G), sum_all=sum_all).view(-1)
    return (seq.unsqueeze(1) - kl_return) * token_mask, None
