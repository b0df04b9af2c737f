"""r1lab.algos.advantages: hand-computed groups and a plain-Python loop oracle (docs/architecture.md principle 2)."""

from __future__ import annotations

import math

import pytest
import torch

from r1lab.algos.advantages import ADVANTAGES, dr_grpo_advantages, grpo_advantages, rloo_advantages

torch.set_num_threads(1)

EPS = 1e-4
NAMES = ("grpo", "dr_grpo", "rloo")
DIRECT = {"grpo": grpo_advantages, "dr_grpo": dr_grpo_advantages, "rloo": rloo_advantages}


# ---------------------------------------------------------------------------------------------------------------
# Loop oracle: one group at a time, one sample at a time, no vectorisation, no masks-as-tensors.
# ---------------------------------------------------------------------------------------------------------------
def oracle(name: str, rewards: list[list[float]], valid: list[list[bool]], eps: float = EPS) -> list[list[float]]:
    out = []
    for group_r, group_v in zip(rewards, valid):
        kept = [r for r, v in zip(group_r, group_v) if v]
        n = len(kept)
        row = []
        for r, v in zip(group_r, group_v):
            if not v or n < 2:
                # Invalid samples and groups with < 2 valid samples carry no relative signal.
                row.append(0.0)
                continue
            mean = sum(kept) / n
            if name == "grpo":
                std = math.sqrt(sum((x - mean) ** 2 for x in kept) / (n - 1))  # Bessel
                row.append((r - mean) / (std + eps))
            elif name == "dr_grpo":
                row.append(r - mean)
            elif name == "rloo":
                row.append(r - (sum(kept) - r) / (n - 1))
            else:
                raise ValueError(name)
        out.append(row)
    return out


def _t(x, dtype=torch.float64):
    return torch.tensor(x, dtype=dtype)


def test_registry_holds_the_three_estimators():
    # Trainers dispatch by name; the registry must map to the very functions tested directly below.
    for name in NAMES:
        assert ADVANTAGES.get(name) is DIRECT[name]
    with pytest.raises(KeyError):
        ADVANTAGES.get("gpro")


# ---------------------------------------------------------------------------------------------------------------
# Hand-computed values.
# ---------------------------------------------------------------------------------------------------------------
def test_grpo_hand_values_bessel_std():
    # rewards [1,0,0,1]: mean 0.5, Bessel var = 4 * 0.25 / 3 = 1/3, std = 0.57735...; A = +-0.5 / (std + eps).
    # With the population std (0.5) the answer would be +-1.0, so this pins Bessel's correction.
    rewards = _t([[1.0, 0.0, 0.0, 1.0]])
    valid = torch.ones_like(rewards, dtype=torch.bool)
    a = 0.5 / (math.sqrt(1.0 / 3.0) + EPS)  # 0.86588...
    expected = _t([[a, -a, -a, a]])
    torch.testing.assert_close(grpo_advantages(rewards, valid), expected, rtol=0, atol=1e-12)
    assert abs(a - 0.865875) < 1e-5


def test_grpo_hand_values_single_correct():
    # One correct out of four: mean 0.25, centred [0.75, -0.25 x3], Bessel var = (0.5625 + 3*0.0625)/3 = 0.25.
    rewards = _t([[1.0, 0.0, 0.0, 0.0]])
    valid = torch.ones_like(rewards, dtype=torch.bool)
    std = 0.5
    expected = _t([[0.75 / (std + EPS), -0.25 / (std + EPS), -0.25 / (std + EPS), -0.25 / (std + EPS)]])
    torch.testing.assert_close(ADVANTAGES.get("grpo")(rewards, valid), expected, rtol=0, atol=1e-12)


def test_dr_grpo_hand_values_no_std_division():
    # Dr. GRPO only centres: [1,0,0,0] -> [0.75, -0.25, -0.25, -0.25], whatever the spread.
    rewards = _t([[1.0, 0.0, 0.0, 0.0], [2.0, 4.0, 6.0, 8.0]])
    valid = torch.ones_like(rewards, dtype=torch.bool)
    expected = _t([[0.75, -0.25, -0.25, -0.25], [-3.0, -1.0, 1.0, 3.0]])
    torch.testing.assert_close(dr_grpo_advantages(rewards, valid), expected, rtol=0, atol=1e-12)


def test_rloo_hand_values_leave_one_out():
    # [1,0,0,0]: A_0 = 1 - 0 = 1; A_j = 0 - 1/3 for the others.
    # [2,4,6,8]: A_0 = 2 - 18/3 = -4, A_1 = 4 - 16/3, A_2 = 6 - 14/3, A_3 = 8 - 12/3 = 4.
    rewards = _t([[1.0, 0.0, 0.0, 0.0], [2.0, 4.0, 6.0, 8.0]])
    valid = torch.ones_like(rewards, dtype=torch.bool)
    expected = _t([[1.0, -1 / 3, -1 / 3, -1 / 3], [-4.0, 4 - 16 / 3, 6 - 14 / 3, 4.0]])
    torch.testing.assert_close(rloo_advantages(rewards, valid), expected, rtol=0, atol=1e-12)


def test_invalid_samples_get_zero_and_are_excluded_from_stats():
    # Group [1, 0, <invalid 100>, 0]: the invalid 100 must not move the mean/std (else a crashed verifier's
    # placeholder would push every other sample). Stats over [1, 0, 0]: mean 1/3, Bessel var = (4/9+1/9+1/9)/2 = 1/3.
    rewards = _t([[1.0, 0.0, 100.0, 0.0]])
    valid = torch.tensor([[True, True, False, True]])
    mean, std = 1 / 3, math.sqrt(1 / 3)
    expected = {
        "grpo": [(1 - mean) / (std + EPS), (0 - mean) / (std + EPS), 0.0, (0 - mean) / (std + EPS)],
        "dr_grpo": [1 - mean, -mean, 0.0, -mean],
        "rloo": [1 - 0.0, 0 - 0.5, 0.0, 0 - 0.5],
    }
    for name in NAMES:
        got = ADVANTAGES.get(name)(rewards, valid)
        torch.testing.assert_close(got, _t([expected[name]]), rtol=0, atol=1e-12, msg=name)


@pytest.mark.parametrize("name", NAMES)
def test_nan_rewards_of_invalid_samples_do_not_leak(name):
    # score_completion gives a failed sample total=NaN; that NaN must not poison its group (NaN * 0 is NaN).
    rewards = _t([[1.0, float("nan"), 0.0, 0.0], [float("nan")] * 4])
    valid = torch.tensor([[True, False, True, True], [False] * 4])
    got = ADVANTAGES.get(name)(rewards, valid)
    assert torch.isfinite(got).all()
    expected = oracle(name, [[1.0, 0.0, 0.0, 0.0], [0.0] * 4], valid.tolist())
    torch.testing.assert_close(got, _t(expected), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_single_valid_sample_gives_zero(name):
    # One valid sample has nothing to be relative to: its advantage must be 0, not r - r or r / eps.
    rewards = _t([[5.0, 1.0, 2.0, 3.0]])
    valid = torch.tensor([[False, True, False, False]])
    assert torch.equal(ADVANTAGES.get(name)(rewards, valid), torch.zeros_like(rewards))


@pytest.mark.parametrize("name", NAMES)
def test_group_size_one_gives_zero(name):
    # G = 1 (no group at all) is the same case: every advantage is 0.
    rewards = _t([[1.0], [0.0]])
    valid = torch.ones_like(rewards, dtype=torch.bool)
    assert torch.equal(ADVANTAGES.get(name)(rewards, valid), torch.zeros_like(rewards))


@pytest.mark.parametrize("name", NAMES)
def test_no_valid_sample_gives_zero(name):
    # All verifiers failed: zeros and no division by zero.
    rewards = _t([[1.0, 2.0, 3.0]])
    valid = torch.zeros_like(rewards, dtype=torch.bool)
    got = ADVANTAGES.get(name)(rewards, valid)
    assert torch.equal(got, torch.zeros_like(rewards))


@pytest.mark.parametrize("name", NAMES)
def test_all_equal_group_gives_zero(name):
    # All right or all wrong: no learning signal. For GRPO, std = 0 and eps keeps it 0 / eps = 0 (not NaN).
    rewards = _t([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.3, 0.3, 0.3, 0.3]])
    valid = torch.ones_like(rewards, dtype=torch.bool)
    got = ADVANTAGES.get(name)(rewards, valid)
    torch.testing.assert_close(got, torch.zeros_like(rewards), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_advantages_sum_to_zero_over_valid(name):
    # Centred estimators: per group the valid advantages sum to 0 (RLOO too, since sum_i (r_i - loo_i) = 0).
    g = torch.Generator().manual_seed(1)
    rewards = torch.rand(6, 5, generator=g, dtype=torch.float64)
    valid = torch.rand(6, 5, generator=g) > 0.3
    got = ADVANTAGES.get(name)(rewards, valid)
    torch.testing.assert_close(got.sum(dim=1), torch.zeros(6, dtype=torch.float64), rtol=0, atol=1e-10)


def test_rloo_identity_all_valid():
    # With every sample valid, A_i = r_i - (S - r_i)/(G-1) = G/(G-1) * (r_i - mean): RLOO is a rescaled Dr. GRPO.
    g = torch.Generator().manual_seed(2)
    for G in (2, 3, 4, 8):
        rewards = torch.randn(5, G, generator=g, dtype=torch.float64)
        valid = torch.ones_like(rewards, dtype=torch.bool)
        mean = rewards.mean(dim=1, keepdim=True)
        expected = G / (G - 1) * (rewards - mean)
        torch.testing.assert_close(rloo_advantages(rewards, valid), expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(
            rloo_advantages(rewards, valid), G / (G - 1) * dr_grpo_advantages(rewards, valid), rtol=1e-12, atol=1e-12
        )


def test_grpo_matches_torch_std_when_all_valid():
    # Independent check of Bessel's correction against torch.std (unbiased by default).
    g = torch.Generator().manual_seed(3)
    rewards = torch.randn(4, 6, generator=g, dtype=torch.float64)
    valid = torch.ones_like(rewards, dtype=torch.bool)
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=True)
    torch.testing.assert_close(grpo_advantages(rewards, valid), (rewards - mean) / (std + EPS), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", range(5))
def test_matches_loop_oracle_random(name, seed):
    # Random groups with random validity (including groups with 0 or 1 valid sample), binary and continuous rewards.
    g = torch.Generator().manual_seed(seed)
    N, G = 7, 1 + seed % 4 * 2  # G in {1, 3, 5, 7, 1}
    for rewards in (
        torch.randint(0, 2, (N, G), generator=g).double(),
        torch.randn(N, G, generator=g, dtype=torch.float64),
    ):
        valid = torch.rand(N, G, generator=g) > 0.35
        valid[0] = False  # an all-invalid group
        if G > 1:
            valid[1] = False
            valid[1, 0] = True  # a group with exactly one valid sample
        got = ADVANTAGES.get(name)(rewards, valid)
        expected = _t(oracle(name, rewards.tolist(), valid.tolist()))
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_float32_and_no_input_mutation(name):
    # The trainer uses float32 rewards; results follow the oracle within float32 tolerance and inputs stay intact.
    g = torch.Generator().manual_seed(11)
    rewards = torch.rand(8, 4, generator=g)
    valid = torch.rand(8, 4, generator=g) > 0.2
    before_r, before_v = rewards.clone(), valid.clone()
    got = ADVANTAGES.get(name)(rewards, valid)
    assert got.dtype == torch.float32 and got.shape == rewards.shape
    torch.testing.assert_close(got, _t(oracle(name, rewards.tolist(), valid.tolist()), torch.float32), rtol=1e-4, atol=1e-5)
    assert torch.equal(rewards, before_r) and torch.equal(valid, before_v)
