"""PPO's value model (r1lab.train.critic): the clipped value loss by hand, values read from the state before each
token (left padding changes nothing), and an update that fits the returns."""

from __future__ import annotations

import copy

import pytest
import torch

from r1lab.train.algo_config import CriticConfig
from r1lab.train.critic import Critic, value_loss_sum
from r1lab.types import RolloutBatch

torch.set_num_threads(1)


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_value_loss_hand_values():
    v, old, ret = _t([[1.0, 0.0, 0.5]]), _t([[0.5, 0.0, 0.4]]), _t([[0.0, 1.0, 0.45]])
    mask = _t([[1, 1, 1]])
    # plain: 0.5 * (1 + 1 + 0.0025)
    assert float(value_loss_sum(v, old, ret, mask, 0.0)) == pytest.approx(0.5 * 2.0025, abs=1e-12)
    # clip 0.2: token 0 clipped value 0.7 -> max(1, 0.49) = 1; token 1 unchanged; token 2: clipped 0.5 (inside)
    assert float(value_loss_sum(v, old, ret, mask, 0.2)) == pytest.approx(0.5 * 2.0025, abs=1e-12)
    # clipped branch larger: v moved away from old towards the return beyond the clip -> pessimistic max
    v2 = _t([[0.0, 0.0, 0.0]])
    old2 = _t([[1.0, 0.0, 0.0]])
    ret2 = _t([[0.0, 0.0, 0.0]])
    # token 0: (0-0)^2 = 0 unclipped; clipped value 0.8 -> 0.64
    assert float(value_loss_sum(v2, old2, ret2, mask, 0.2)) == pytest.approx(0.5 * 0.64, abs=1e-12)
    assert float(value_loss_sum(v2, old2, ret2, _t([[0, 1, 1]]), 0.2)) == 0.0


@pytest.fixture(scope="module")
def critic(tmp_path_factory):
    from r1lab.models.tiny import save_tiny_model

    folder = tmp_path_factory.mktemp("tiny-critic")
    save_tiny_model(folder, seed=0)
    return Critic(CriticConfig(lr=1e-2, value_clip=0.0), str(folder), torch.float64, "cpu", micro_batch_size=2)


def _batch(vocab: int = 20) -> RolloutBatch:
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, vocab, (2, 4), generator=g)
    prompt_mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    completion = torch.randint(3, vocab, (2, 3), generator=g)
    completion_mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    return RolloutBatch(prompt_ids=prompt, prompt_mask=prompt_mask, completion_ids=completion,
                        completion_mask=completion_mask, truncated=torch.zeros(2, dtype=torch.bool),
                        texts=["", ""], group_size=1)


def test_values_come_from_the_state_before_each_token_and_ignore_left_padding(critic):
    torch.nn.init.normal_(critic.model.head.weight, std=1.0, generator=torch.Generator().manual_seed(1))
    batch = _batch()
    values = critic.values(batch)  # (2, 3)
    assert values[1, 2] == 0  # padding
    # row 1 without its left padding: the same values
    alone = critic.model(batch.prompt_ids[1:, 2:], batch.prompt_mask[1:, 2:], batch.completion_ids[1:],
                         batch.completion_mask[1:])
    torch.testing.assert_close(values[1:], alone.detach(), rtol=1e-10, atol=1e-10)
    # the value of completion token t is read at the position that predicts it: prompt + completion[:t]
    ids = torch.cat([batch.prompt_ids[0], batch.completion_ids[0, :1]])[None]
    hidden = critic.model.backbone(input_ids=ids).last_hidden_state[0, -1]
    expected = critic.model.head(hidden)
    torch.testing.assert_close(values[0, 1], expected.detach()[0], rtol=1e-10, atol=1e-10)


def test_update_fits_the_returns_and_state_round_trips(critic):
    batch = _batch()
    returns = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    mask = batch.completion_mask.double()
    losses = []
    for _ in range(15):
        old = critic.values(batch)
        losses.append(critic.update(batch, old, returns, mask)["critic/loss"])
    assert losses[-1] < 0.25 * losses[0]
    state = copy.deepcopy(critic.state_dict())  # what a checkpoint holds
    before = critic.values(batch)
    after_one = critic.update(batch, before, returns * 0, mask)
    moved = critic.values(batch)
    assert not torch.equal(moved, before)
    critic.load_state_dict(state)  # resume: weights and AdamW moments restored, so the same step repeats exactly
    torch.testing.assert_close(critic.values(batch), before, rtol=0, atol=0)
    assert critic.update(batch, before, returns * 0, mask)["critic/loss"] == after_one["critic/loss"]
    torch.testing.assert_close(critic.values(batch), moved, rtol=0, atol=0)
