"""PPO's value model for ``algo.advantage=gae``: a backbone (``critic.model``, default the policy's model) with a
fresh one-output head, its own AdamW, and the clipped value loss (PPO as in Ouyang et al. 2022 / OpenRLHF).

The value of completion token t is read from the hidden state that predicts it (the state before the token), so
GAE's V_t is the value of the prefix the policy acted from. Rank-aware: value-loss denominators are the global
token count and gradients are summed over ranks, so every rank steps the same critic.
"""

from __future__ import annotations

import torch

from r1lab.models.loading import load_model
from r1lab.parallel import DistContext, all_reduce_gradients, all_reduce_sum
from r1lab.train.optim import adamw


class ValueModel(torch.nn.Module):
    def __init__(self, backbone: torch.nn.Module, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)  # V = bias = 0 at the start: GAE starts as the Monte-Carlo return
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, prompt_ids, prompt_mask, completion_ids, completion_mask) -> torch.Tensor:
        """(B, P) left-padded prompts and (B, C) completions -> (B, C) values, 0 on padding."""
        ids = torch.cat([prompt_ids, completion_ids], dim=1)
        mask = torch.cat([prompt_mask.long(), completion_mask.long()], dim=1)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # left padding: positions as generate() gave them
        hidden = self.backbone(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
        P, C = prompt_ids.shape[1], completion_ids.shape[1]
        values = self.head(hidden[:, P - 1 : P - 1 + C].to(self.head.weight.dtype)).squeeze(-1)  # (B, C)
        return values * completion_mask.to(values.dtype)


def value_loss_sum(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                   clip: float) -> torch.Tensor:
    """Sum over real tokens of 0.5 max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2); clip = 0: plain MSE."""
    loss = (values - returns).pow(2)
    if clip > 0:
        clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        loss = torch.maximum(loss, (clipped - returns).pow(2))
    return 0.5 * (loss * mask).sum()


class Critic:
    """The value model, its optimizer and its update; ``state_dict`` goes into the run's checkpoints."""

    def __init__(self, cfg, model_name: str, dtype: torch.dtype, device, dist: DistContext | None = None,
                 micro_batch_size: int = 16, low_precision_update: str = "stochastic_rounding", seed: int = 0):
        self.cfg, self.dist, self.micro = cfg, dist or DistContext(), micro_batch_size
        lm = load_model(model_name, dtype=dtype, device=device).model
        self.model = ValueModel(lm.get_decoder(), lm.config.hidden_size).to(device=device, dtype=dtype)
        self.model.backbone.config.use_cache = False
        # bf16 / fp16 weights: fp32 moments and low_precision_update's remedy, as the policy's (r1lab.train.optim)
        self.optimizer = adamw([{"params": list(self.model.parameters()), "weight_decay": 0.0}], cfg.lr, (0.9, 0.999),
                               low_precision_update, seed)

    def _chunks(self, B: int):
        return [torch.arange(i, min(i + self.micro, B)) for i in range(0, B, self.micro)]

    def _forward(self, batch, idx):
        return self.model(batch.prompt_ids[idx], batch.prompt_mask[idx], batch.completion_ids[idx],
                          batch.completion_mask[idx])

    def values(self, batch) -> torch.Tensor:
        """(B, C) values of the rollout batch, no gradient (the old values of value clipping, and GAE's V)."""
        self.model.eval()
        with torch.no_grad():
            return torch.cat([self._forward(batch, idx) for idx in self._chunks(batch.completion_ids.shape[0])])

    def update(self, batch, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> dict:
        """``critic.epochs`` AdamW steps on the clipped value loss, token mean over the global batch."""
        (num_tokens,) = all_reduce_sum(self.dist, [float(mask.sum())])
        self.model.train()
        total, explained = 0.0, 0.0
        for _ in range(self.cfg.epochs):
            self.optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for idx in self._chunks(batch.completion_ids.shape[0]):
                v = self._forward(batch, idx)
                loss = value_loss_sum(v, old_values[idx].to(v.dtype), returns[idx].to(v.dtype),
                                      mask[idx].to(v.dtype), self.cfg.value_clip) / max(num_tokens, 1.0)
                loss.backward()
                loss_sum += float(loss.detach())
            all_reduce_gradients(self.model, self.dist)
            if self.cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
            self.optimizer.step()
            total += loss_sum
        (total,) = all_reduce_sum(self.dist, [total])
        w = mask.to(returns.dtype)
        err, ret, ret2 = all_reduce_sum(self.dist, [float(((returns - old_values.to(returns.dtype)) ** 2 * w).sum()),
                                                    float((returns * w).sum()), float((returns ** 2 * w).sum())])
        var = ret2 / max(num_tokens, 1.0) - (ret / max(num_tokens, 1.0)) ** 2
        explained = 1.0 - (err / max(num_tokens, 1.0)) / var if var > 0 else float("nan")
        return {"critic/loss": total / self.cfg.epochs, "critic/explained_variance": explained,
                "critic/value_mean": float((old_values * mask).sum()) / max(float(mask.sum()), 1.0)}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
