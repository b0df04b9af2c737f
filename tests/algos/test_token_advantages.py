"""REINFORCE++ (global normalisation), KL as a per-token reward, GAE: hand values and loop oracles; and the step's
advantages by algo.advantage / algo.kl_in (r1lab.train.grpo_advantages)."""

from __future__ import annotations

import pytest
import torch

from r1lab.algos.advantages import ADVANTAGES, gae, global_normalize, kl_to_go, token_rewards
from r1lab.config import GRPOConfig
from r1lab.train.grpo_advantages import step_advantages

torch.set_num_threads(1)


def _t(x, dtype=torch.float64):
    return torch.tensor(x, dtype=dtype)


def test_reinforce_pp_normalises_over_the_whole_batch():
    # rewards of two groups: [1, 1] and [0, 1]. Batch mean 0.75, Bessel std sqrt(0.25) = 0.5
    rewards = _t([[1.0, 1.0], [0.0, 1.0]])
    valid = torch.ones(2, 2, dtype=torch.bool)
    adv = ADVANTAGES.get("reinforce_pp")(rewards, valid, eps=0.0)
    torch.testing.assert_close(adv, _t([[0.5, 0.5], [-1.5, 0.5]]), rtol=0, atol=1e-12)
    # a group whose rewards are all equal still gets a signal (unlike grpo)
    assert ADVANTAGES.get("grpo")(rewards, valid)[0].abs().sum() == 0


def test_reinforce_pp_leaves_invalid_samples_out():
    rewards = _t([[1.0, 5.0], [0.0, 1.0]])
    valid = torch.tensor([[True, False], [True, True]])
    adv = ADVANTAGES.get("reinforce_pp")(rewards, valid, eps=0.0)
    mean, std = 2 / 3, ((1 / 9 + 4 / 9 + 1 / 9) / 2) ** 0.5
    torch.testing.assert_close(adv, _t([[(1 - mean) / std, 0.0], [(0 - mean) / std, (1 - mean) / std]]),
                               rtol=0, atol=1e-12)


def test_global_normalize_over_two_ranks_equals_one_process():
    # two "ranks" in threads; sum_all is an all-reduce: each rank posts its list, both get the element-wise sum
    import threading

    g = torch.Generator().manual_seed(0)
    values = torch.randn(4, 5, generator=g, dtype=torch.float64)
    mask = torch.rand(4, 5, generator=g) > 0.3
    whole = global_normalize(values, mask)
    barrier, posted, out = threading.Barrier(2), [None, None], [None, None]

    def all_reduce(rank, xs):
        posted[rank] = xs
        barrier.wait()
        total = [a + b for a, b in zip(*posted)]
        barrier.wait()
        return total

    def rank_main(rank):
        rows = slice(2 * rank, 2 * rank + 2)
        out[rank] = global_normalize(values[rows], mask[rows], sum_all=lambda xs: all_reduce(rank, xs))

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    torch.testing.assert_close(torch.cat(out), whole, rtol=1e-12, atol=1e-12)


def test_kl_to_go_and_token_rewards_hand_values():
    kl = _t([[0.1, 0.2, 0.3], [0.5, -0.1, 9.0]])
    mask = _t([[1, 1, 1], [1, 1, 0]])
    torch.testing.assert_close(kl_to_go(kl, mask), _t([[0.6, 0.5, 0.3], [0.4, -0.1, 0.0]]), rtol=0, atol=1e-12)
    r = token_rewards(_t([1.0, 2.0]), kl, mask, beta=0.5)
    torch.testing.assert_close(r, _t([[-0.05, -0.1, 1.0 - 0.15], [-0.25, 2.0 + 0.05, 0.0]]), rtol=0, atol=1e-12)


def _gae_loop(rewards, values, lengths, gamma, lam):
    B, T = rewards.shape
    adv = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        n = lengths[b]
        for t in range(n):
            total, coef = 0.0, 1.0
            for k in range(t, n):
                next_v = values[b, k + 1].item() if k + 1 < n else 0.0
                delta = rewards[b, k].item() + gamma * next_v - values[b, k].item()
                total += coef * delta
                coef *= gamma * lam
            adv[b, t] = total
    return adv


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5), (1.0, 1.0), (0.99, 0.0)])
def test_gae_matches_the_loop_oracle(gamma, lam):
    g = torch.Generator().manual_seed(1)
    B, T = 4, 6
    lengths = [6, 3, 1, 4]
    mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).to(torch.float64)
    rewards = token_rewards(torch.randn(B, generator=g, dtype=torch.float64),
                            torch.randn(B, T, generator=g, dtype=torch.float64), mask, beta=0.1)
    values = torch.randn(B, T, generator=g, dtype=torch.float64)
    adv, returns = gae(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(adv, _gae_loop(rewards, values, lengths, gamma, lam), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(returns, (adv + values) * mask, rtol=1e-12, atol=1e-12)


def test_gae_with_lambda_one_is_the_return_minus_the_value():
    # gamma = lam = 1, reward R only at the last token: A_t = R - V_t
    mask = _t([[1, 1, 1, 0]])
    values = _t([[0.2, 0.4, 0.6, 5.0]])
    adv, returns = gae(token_rewards(_t([1.0]), None, mask, 0.0), values, mask, 1.0, 1.0)
    torch.testing.assert_close(adv, _t([[0.8, 0.6, 0.4, 0.0]]), rtol=0, atol=1e-12)
    torch.testing.assert_close(returns, _t([[1.0, 1.0, 1.0, 0.0]]), rtol=0, atol=1e-12)


def _cfg(**algo):
    cfg = GRPOConfig()
    cfg.rollout.group_size = 2
    for k, v in algo.items():
        setattr(cfg.algo, k, v)
    return cfg


def test_step_advantages_kl_in_reward():
    rewards, valid = _t([1.0, 0.0]), torch.tensor([True, True])
    mask = _t([[1, 1], [1, 0]])
    kl = _t([[0.2, 0.4], [1.0, 3.0]])
    # grpo: group advantage (+-0.7071 with eps) minus beta * KL-to-go
    adv, returns = step_advantages(_cfg(kl_in="reward", beta=0.5), rewards, valid, mask, kl, None, None)
    seq = ADVANTAGES.get("grpo")(rewards.view(-1, 2), valid.view(-1, 2)).view(-1)
    torch.testing.assert_close(adv, _t([[seq[0] - 0.3, seq[0] - 0.2], [seq[1] - 0.5, 0.0]]), rtol=0, atol=1e-12)
    assert returns is None
    # reinforce_pp: returns R - beta * KL-to-go = [0.7, 0.8] and [-0.5], normalised over the 3 real tokens
    adv, _ = step_advantages(_cfg(kl_in="reward", beta=0.5, advantage="reinforce_pp"), rewards, valid, mask, kl,
                             None, None)
    ret = _t([0.7, 0.8, -0.5])
    expected = (ret - ret.mean()) / (ret.std() + 1e-4)
    torch.testing.assert_close(adv[mask > 0], expected, rtol=0, atol=1e-12)
    assert adv[1, 1] == 0


def test_step_advantages_gae_uses_the_values_and_drops_invalid_samples():
    cfg = _cfg(advantage="gae")
    cfg.critic.gamma, cfg.critic.lam = 1.0, 1.0
    mask = _t([[1, 1], [1, 1]])
    adv, returns = step_advantages(cfg, _t([1.0, 1.0]), torch.tensor([True, False]), mask, None,
                                   _t([[0.25, 0.5], [0.1, 0.1]]), None)
    torch.testing.assert_close(adv, _t([[0.75, 0.5], [0.0, 0.0]]), rtol=0, atol=1e-12)
    torch.testing.assert_close(returns, _t([[1.0, 1.0], [0.0, 0.0]]), rtol=0, atol=1e-12)
