"""LowPrecisionAdamW (r1lab.train.low_precision_adamw): bf16 / fp16 weights with fp32 moments keep updates that
rounding to nearest loses, follow float64 AdamW up to the weight's rounding, and resume bit for bit."""

from __future__ import annotations

import io

import pytest
import torch

from r1lab.train import low_precision_adamw as lp
from r1lab.train.low_precision_adamw import LowPrecisionAdamW
from r1lab.train.optim import build_optimizer

LR, STEPS = 1e-4, 100


def ulp(x: torch.Tensor) -> torch.Tensor:
    """The gap from |x| to the next value of x's dtype, as float64."""
    up = torch.nextafter(x.abs(), torch.full_like(x, torch.inf))
    return (up.double() - x.abs().double())


def run_constant_gradient(dtype: torch.dtype, update: str | None,
                          n: int = 1) -> tuple[torch.Tensor, torch.optim.Optimizer]:
    """``n`` weights of 1.0, gradient -1 for STEPS steps at lr 1e-4: Adam's step is lr x m_hat / (sqrt(v_hat) + eps)
    = 1e-4 / (1 + 1e-8) each time, so the exact weight ends at 1 + STEPS x 1e-4 = 1.01. ``update`` None: torch's
    AdamW on the weight's own dtype (what r1lab ran before)."""
    p = torch.nn.Parameter(torch.ones(n, dtype=dtype))
    opt = (torch.optim.AdamW([p], lr=LR, weight_decay=0.0, foreach=False) if update is None
           else LowPrecisionAdamW([p], lr=LR, weight_decay=0.0, update=update, seed=3))
    for _ in range(STEPS):
        p.grad = -torch.ones_like(p)
        opt.step()
    return p.detach(), opt


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_rounding_to_nearest_loses_every_update_below_half_an_ulp(dtype):
    # bf16 at 1.0: ulp 2^-7, half-ulp 0.0039; fp16: 2^-10, half-ulp 0.00049; both far above 1e-4
    assert float(ulp(torch.ones(1, dtype=dtype))) / 2 > 4 * LR
    p, opt = run_constant_gradient(dtype, None)
    assert float(p) == 1.0  # 100 updates, none kept
    assert opt.state[opt.param_groups[0]["params"][0]]["exp_avg"].dtype == dtype  # moments in the weight's dtype


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_kahan_keeps_the_sum_of_updates(dtype):
    p, opt = run_constant_gradient(dtype, "kahan")
    comp = opt.state[opt.param_groups[0]["params"][0]]["compensation"]
    assert comp.dtype == (torch.bfloat16 if dtype == torch.bfloat16 else torch.float32)
    one_ulp = float(ulp(torch.ones(1, dtype=dtype)))
    assert abs(float(p) - 1.01) <= one_ulp / 2  # the weight is 1.01 rounded to nearest: 1.0078125 in bf16
    assert float(p) == float(torch.tensor(1.01).to(dtype))
    # weight + compensation is the sum itself, up to roundings per step: the bf16 compensation's, at most half its
    # ulp (|compensation| <= half the weight's ulp, so its ulp is <= 2^-8 of the weight's), and two fp32 ones
    # (weight + compensation, then the step), half an fp32 ulp at 1.0 (2^-24) each; an fp32 compensation adds none
    total = float(p.double() + comp.double()) - 1.0
    bound = STEPS * (one_ulp * 2**-9 * (dtype == torch.bfloat16) + 2 * 2**-24)
    assert abs(total - STEPS * LR) <= bound, (total, bound)
    assert abs(total - STEPS * LR) / (STEPS * LR) < 0.05  # measured: 2.5% in bf16 (2.5e-4 of 0.01), 0.02% in fp16


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_stochastic_rounding_moves_the_weights_by_the_sum_on_average(dtype):
    p, _ = run_constant_gradient(dtype, "stochastic_rounding", n=1 << 16)
    assert set(p.double().unique().tolist()) <= {1.0 + k * float(ulp(torch.ones(1, dtype=dtype))) for k in range(40)}
    moved = float(p.double().mean()) - 1.0
    # per weight the rounding errors add up as a random walk (std ~0.009 after 100 steps in bf16); over 65536
    # weights the mean's std is ~3.5e-5, so 3% of 0.01 is ~9 standard deviations
    assert abs(moved - STEPS * LR) < 0.03 * STEPS * LR, moved
    assert p.double().std() > 0  # the weights did not move in lock step: each one rounded on its own


def test_bf16_stochastic_rounding_probability_by_hand():
    """1 + 0.25 ulp (fp32 bits: a quarter of the lower 16 bits set) rounds up with probability 1/4, -1 - 0.25 ulp
    away from zero as often; an exact bf16 value never moves."""
    n, gen = 1 << 16, torch.Generator().manual_seed(0)
    q = 2**-7 / 4
    x = torch.tensor([1.0 + q, -(1.0 + q), 1.0078125]).repeat_interleave(n)
    bits = lp.random_bits16(x.shape, x.device, gen)
    out = lp.stochastic_round_bf16_(x.clone(), bits).to(torch.bfloat16).double().view(3, n)
    assert set(out[0].unique().tolist()) == {1.0, 1.0078125} and set(out[1].unique().tolist()) == {-1.0, -1.0078125}
    assert float((out[0] > 1).double().mean()) == pytest.approx(0.25, abs=0.01)
    assert float((out[1] < -1).double().mean()) == pytest.approx(0.25, abs=0.01)
    assert torch.all(out[2] == 1.0078125)


def test_generic_stochastic_rounding_to_fp16_probability_by_hand():
    n, gen = 1 << 16, torch.Generator().manual_seed(0)
    ulp16 = 2**-10
    x = torch.tensor([1.0 + 0.75 * ulp16, 1.0 - 0.3 * ulp16 / 2, 2.0]).repeat_interleave(n)  # below 1 the ulp halves
    out = lp.stochastic_round(x, torch.float16, torch.rand(x.shape, generator=gen)).double().view(3, n)
    assert float((out[0] > 1).double().mean()) == pytest.approx(0.75, abs=0.01)
    assert float((out[1] < 1).double().mean()) == pytest.approx(0.3, abs=0.01)
    assert torch.all(out[2] == 2.0)


def _gradients(n: int, steps: int) -> list[torch.Tensor]:
    """Gradients as a bf16 backward pass would give them (bf16 values), in float64: the same into every run."""
    gen = torch.Generator().manual_seed(7)
    return [(torch.randn(n, generator=gen) * 0.01).to(torch.bfloat16).double() for _ in range(steps)]


HYPER = dict(lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)


def test_the_update_is_float64_adamw_up_to_the_rounding_of_the_weight():
    """The same gradient sequence (fixed, not computed from the weights) into float64 torch AdamW and into
    LowPrecisionAdamW over bf16 weights: the fp32 moments are the float64 ones to fp32 precision; stochastic
    rounding: every step lands on one of the two bf16 neighbours of float64 AdamW's step from the same weight;
    kahan: weight + compensation follows float64 AdamW over the whole run, the weight within one bf16 ulp."""
    n, steps = 4096, 20
    start = (torch.randn(n, generator=torch.Generator().manual_seed(1)) * 0.1).to(torch.bfloat16)
    grads = _gradients(n, steps)
    ref = torch.nn.Parameter(start.double())
    ref_opt = torch.optim.AdamW([ref], foreach=False, **HYPER)
    sr, kahan = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    sr_opt = LowPrecisionAdamW([sr], update="stochastic_rounding", **HYPER)
    kahan_opt = LowPrecisionAdamW([kahan], update="kahan", **HYPER)
    # stochastic rounding, step by step: a float64 copy restarted from its weight each step
    sr_ref = torch.nn.Parameter(start.double())
    sr_ref_opt = torch.optim.AdamW([sr_ref], foreach=False, **HYPER)
    largest = start.double().abs()  # of each kahan weight over the run, for the bound below
    for g in grads:
        for p, opt in ((ref, ref_opt), (sr_ref, sr_ref_opt), (sr, sr_opt), (kahan, kahan_opt)):
            p.grad = g.to(p.dtype)
            opt.step()
        largest = torch.maximum(largest, kahan.detach().double().abs())
        low = torch.nextafter(sr.detach(), torch.full_like(sr, -torch.inf))
        high = torch.nextafter(sr.detach(), torch.full_like(sr, torch.inf))
        # sr is one of the two bf16 values around the float64 result: the next one each way brackets it
        assert torch.all((low.double() <= sr_ref.detach()) & (sr_ref.detach() <= high.double()))
        with torch.no_grad():
            sr_ref.copy_(sr.double())
    for opt in (sr_opt, kahan_opt):
        state = opt.state[opt.param_groups[0]["params"][0]]
        assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.float32
        # fp32 precision against the gradients' scale (0.01; 1e-4 squared): a mean near 0 has cancelled
        torch.testing.assert_close(state["exp_avg"].double(), ref_opt.state[ref]["exp_avg"], rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(state["exp_avg_sq"].double(), ref_opt.state[ref]["exp_avg_sq"], rtol=1e-6,
                                   atol=1e-11)
    w64 = ref.detach()
    comp = kahan_opt.state[kahan]["compensation"]
    # per step: the bf16 compensation rounds to half its ulp, at most 2^-9 of the weight's ulp then, and the fp32
    # math twice to half an fp32 ulp (2^-24 relative); bounded with the weight's largest magnitude over the run
    drift = (kahan.detach().double() + comp.double() - w64).abs()
    bound = steps * (2**-9 * ulp(largest.to(torch.bfloat16)) + 2 * 2**-24 * largest)
    assert torch.all(drift <= bound), float((drift / bound).max())
    assert float((drift / ulp(kahan.detach())).median()) < 0.01  # typically far inside: a hundredth of an ulp
    assert torch.all((kahan.detach().double() - w64).abs() <= ulp(kahan.detach()) / 2 + bound)  # rounded to nearest
    # the weights moved by many ulps: the comparison is not the trivial one of weights that stayed put
    assert float(((w64 - start.double()).abs() / ulp(start)).median()) > 5


def test_float32_weights_take_torch_adamw_bit_for_bit():
    """Parameters that are float32 (LoRA adapters beside a bf16 base) get the same AdamW math, unrounded."""
    start = torch.randn(300, generator=torch.Generator().manual_seed(2))
    ours, ref = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    opt, ref_opt = LowPrecisionAdamW([ours], **HYPER), torch.optim.AdamW([ref], foreach=False, **HYPER)
    for g in _gradients(300, 5):
        ours.grad, ref.grad = g.float(), g.float()
        opt.step()
        ref_opt.step()
    assert torch.equal(ours, ref)


def test_chunked_update_equals_the_whole_tensor_update(monkeypatch):
    """A tensor updated CHUNK elements at a time (the memory bound) is updated as in one piece."""
    start = (torch.randn(1000, generator=torch.Generator().manual_seed(4))).to(torch.bfloat16)
    results = []
    for chunk in (lp.CHUNK, 64):
        monkeypatch.setattr(lp, "CHUNK", chunk)
        p = torch.nn.Parameter(start.clone())
        opt = LowPrecisionAdamW([p], update="kahan", **HYPER)
        for g in _gradients(1000, 3):
            p.grad = g.to(torch.bfloat16)
            opt.step()
        results.append((p.detach().clone(), opt.state[p]["compensation"].clone()))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def _bf16_model(seed: int = 0) -> torch.nn.Module:
    from r1lab.models.tiny import tiny_model

    return tiny_model(seed=seed).to(torch.bfloat16)


def _train(model, optimizer, scheduler, steps: range) -> None:
    for step in steps:
        ids = torch.randint(5, 40, (2, 12), generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        scheduler.step()


def _build(model, update: str):
    return build_optimizer(model, lr=3e-3, weight_decay=0.01, betas=(0.9, 0.99), total_steps=6, warmup_steps=1,
                           schedule="cosine", min_lr_ratio=0.1, low_precision_update=update, seed=5)


@pytest.mark.parametrize("update", ["stochastic_rounding", "kahan"])
def test_resume_through_the_checkpoint_is_bit_exact(tmp_path, update):
    """3 steps, save_checkpoint (what the trainers write), a fresh model + optimizer load_checkpoint, 3 more
    steps: the weights (and the optimizer state) equal 6 straight steps bit for bit."""
    from r1lab.train.checkpoint import load_checkpoint, save_checkpoint

    straight = _bf16_model()
    opt, sched = _build(straight, update)
    assert isinstance(opt, LowPrecisionAdamW) and opt.param_groups[0]["update"] == update
    _train(straight, opt, sched, range(6))

    first = _bf16_model()
    opt1, sched1 = _build(first, update)
    _train(first, opt1, sched1, range(3))
    path = save_checkpoint(tmp_path, 3, first, opt1, sched1, extra={})
    saved = torch.load(path / "state.pt", weights_only=False)["optimizer"]
    kinds = {k: v.dtype for s in saved["state"].values() for k, v in s.items() if k != "step"}
    assert kinds["exp_avg"] == kinds["exp_avg_sq"] == torch.float32
    assert (kinds.get("compensation") == torch.bfloat16) == (update == "kahan")

    resumed = _bf16_model(seed=1)  # other weights: everything must come from the checkpoint
    opt2, sched2 = _build(resumed, update)
    load_checkpoint(path, resumed, opt2, sched2)
    assert all(s["exp_avg"].dtype == torch.float32 for s in opt2.state.values())  # torch's load would cast to bf16
    _train(resumed, opt2, sched2, range(3, 6))
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name
    for a, b in zip(opt.state.values(), opt2.state.values()):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # and the weights did move: 6 steps at lr 3e-3 change most bf16 weights by an ulp or more
    assert any(not torch.equal(a, b) for a, b in zip(straight.parameters(), _bf16_model().parameters()))


def test_stochastic_rounding_is_reproducible_and_seeded():
    def run(seed: int) -> torch.Tensor:
        p = torch.nn.Parameter(torch.ones(4096, dtype=torch.bfloat16))
        opt = LowPrecisionAdamW([p], lr=LR, weight_decay=0.0, seed=seed)
        for _ in range(20):
            p.grad = -torch.ones_like(p)
            opt.step()
        return p.detach()

    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))


def test_build_optimizer_picks_the_remedy_only_for_low_precision_weights():
    fp32 = torch.nn.Linear(4, 3)
    opt, _ = build_optimizer(fp32, 1e-3, 0.0, (0.9, 0.99), 10, 0, "constant", 1.0)
    assert type(opt) is torch.optim.AdamW and opt.defaults["fused"] is True  # unchanged for float32
    opt, _ = build_optimizer(torch.nn.Linear(4, 3).to(torch.bfloat16), 1e-3, 0.0, (0.9, 0.99), 10, 0, "constant", 1.0)
    assert isinstance(opt, LowPrecisionAdamW) and opt.defaults["update"] == "stochastic_rounding"  # the default
    with pytest.raises(ValueError, match="need a remedy.*allowed: stochastic_rounding, kahan"):
        build_optimizer(torch.nn.Linear(4, 3).to(torch.bfloat16), 1e-3, 0.0, (0.9, 0.99), 10, 0, "constant", 1.0,
                        low_precision_update="none")


def test_state_dict_round_trips_through_torch_save():
    p = torch.nn.Parameter(torch.randn(10).to(torch.bfloat16))
    opt = LowPrecisionAdamW([p], update="kahan", **HYPER)
    p.grad = torch.ones_like(p)
    opt.step()
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = LowPrecisionAdamW([q], update="kahan", **HYPER)
    opt2.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
    assert opt2.param_groups[0]["update"] == "kahan" and opt2.param_groups[0]["seed"] == 0
    assert {k: v.dtype for k, v in opt2.state[q].items()} == {"step": torch.float32, "exp_avg": torch.float32,
                                                            "exp_avg_sq": torch.float32,
                                                            "compensation": torch.bfloat16}
