"""build_optimizer: AdamW's fused kernel on CPU, the same update as the reference loop, no decay on biases and norms."""

import torch

from r1lab.train.optim import build_optimizer


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 3))


def test_fused_adamw_on_cpu_updates_as_the_reference_implementation():
    ours, reference = _model(0), _model(0)
    optimizer, _ = build_optimizer(ours, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.99), total_steps=10,
                                   warmup_steps=0, schedule="constant", min_lr_ratio=0.0)
    assert optimizer.defaults["fused"] is True
    decay = [p for p in reference.parameters() if p.ndim >= 2]
    no_decay = [p for p in reference.parameters() if p.ndim < 2]
    plain = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                              lr=1e-2, betas=(0.9, 0.99), foreach=False)  # the single-tensor for-loop form
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        for model, opt in ((ours, optimizer), (reference, plain)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    for got, want in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    # weight decay on the two weight matrices only: biases and the LayerNorm's parameters are not decayed
    groups = {g["weight_decay"]: len(g["params"]) for g in optimizer.param_groups}
    assert groups == {0.1: 2, 0.0: 4}
