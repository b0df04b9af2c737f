"""AdamW for bfloat16 / float16 trained weights that does not lose small updates.

Rounding a weight of 1.0 to the nearest bf16 after each step drops any update under half an ulp (2^-8 = 0.0039
there): at lr 1e-4 every step is lost and the weight never moves. This optimizer keeps AdamW's two moments in
float32, computes each step in float32, and writes the new weight back with one of two remedies:

* ``stochastic_rounding``: round up or down at random, with the probability that makes the rounding unbiased
  (E[rounded] = the fp32 result), so N updates of 1e-4 move the weight by N x 1e-4 on average. No extra memory.
  For bf16 (the upper half of an fp32) this is: add 16 uniform random bits to the fp32 bit pattern, truncate.
* ``kahan``: a compensation buffer per weight holds what rounding to nearest lost (Kahan summation); the next step
  starts from weight + compensation, so the sum of updates is kept to within the compensation's own rounding:
  bf16 weight + bf16 compensation carry about 16 significant bits (100 updates of 1/78 ulp summed 2.5% high in
  tests/train/test_low_precision_adamw.py, where stochastic rounding's mean was 0.1% off). Deterministic; costs 2
  bytes per bf16 parameter (4 for fp16, whose 5-bit exponent would flush small compensations to zero).

Float32 / float64 parameters in the same optimizer (LoRA adapters over a bf16 base) take the same AdamW math on
the weight itself, with no rounding.

Why our own and not torchao's ``_AdamW(bf16_stochastic_round=True)`` (checked with torchao 0.18 on torch 2.13
CPU): it keeps the moments in the parameter's dtype (bf16, not fp32), compiles every parameter shape with
torch.compile (19 s for the first step of one tensor on a 2-core CPU, and a C++ compiler needed), draws its
random bits from the global generator, and the GPU image r1lab runs on has no torchao. The update here is a few
plain tensor ops, runs on any device, and its random bits are reproducible (below). The price is speed: about a
dozen passes instead of one fused kernel. One step over SmolLM2-135M on 2 EPYC cores took 0.61 s with stochastic
rounding (0.18 s of it drawing random bits) and 0.36 s with Kahan, against 0.13 s for torch's fused fp32 AdamW
(benchmarks/train_kernels.py --only adamw; docs/lora.md).

Reproducibility and exact resume: the random bits of a tensor's step are drawn from a generator seeded with
(``seed``, that tensor's step count, its position in the optimizer), so they are a function of what the
optimizer's state dict already holds (param_groups' seed, each state's step) and a resume draws the same bits as
the uninterrupted run, under FSDP too, where torch.distributed.checkpoint keeps only per-parameter state and
param_groups. Every data-parallel rank draws the same bits and so takes the same step (under FSDP each rank draws
the same sequence for its own shard of a tensor).

Each tensor is updated in chunks of ``CHUNK`` elements through one fp32 work space per device, which bounds the
temporaries to 12 MB (an 8B model's embedding would otherwise need ~2 GB per temporary) and allocates nothing per
chunk.
"""

from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor

UPDATES = ("stochastic_rounding", "kahan")
LOW_PRECISION = (torch.bfloat16, torch.float16)
CHUNK = 1 << 20  # elements updated at a time (4 MB per fp32 temporary)


def adamw_math_(weight: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, step: int,
                lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
                denom: torch.Tensor | None = None) -> torch.Tensor:
    """One AdamW step on plain tensors of one dtype, in place on ``weight`` and the two moments; returns ``weight``.
    ``step`` counts this step (1 on the first); ``denom``: an optional scratch tensor of weight's shape.

    The ops and their order are torch.optim.AdamW's single-tensor form (``foreach=False``), so on float32 weights
    the result is torch's, bit for bit."""
    if weight_decay != 0:  # decoupled weight decay (skipped at 0, as torch does)
        weight.mul_(1 - lr * weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    denom = torch.sqrt(exp_avg_sq, out=denom) if denom is not None else exp_avg_sq.sqrt()
    denom.div_(bias_correction2_sqrt).add_(eps)
    return weight.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)


def stochastic_round_bf16_(x: torch.Tensor, random_bits: torch.Tensor) -> torch.Tensor:
    """fp32 ``x`` rounded, in place, to a bf16 value up or down in proportion (unbiased): its lower 16 bits end up
    zero, so ``x.to(torch.bfloat16)`` is then exact. ``random_bits``: uniform int16s of x's shape.

    A bf16 is the upper 16 bits of an fp32: adding a uniform 16-bit number to the lower 16 bits carries into the
    upper ones with probability (lower bits) / 2^16, the distance to the next bf16 in ulps; truncating then rounds
    away from zero with that probability (magnitude bits, so negative values round symmetrically)."""
    bits = x.view(torch.int32)
    # int16 in [-2^15, 2^15) + 2^15: uniform in [0, 2^16); -65536 = 0xFFFF0000 keeps the upper 16 bits
    bits.add_(random_bits).add_(1 << 15).bitwise_and_(-65536)
    return x


def stochastic_round(x: torch.Tensor, dtype: torch.dtype, uniform: torch.Tensor) -> torch.Tensor:
    """fp32 ``x`` rounded to ``dtype`` (any float type; used for float16) up or down in proportion; ``uniform``:
    U[0, 1) of x's shape. Round to nearest, then move to the neighbour on x's other side with probability
    (distance to x) / (gap between the two), which makes the expectation x."""
    nearest = x.to(dtype)
    low = nearest.to(x.dtype)
    off = x - low
    toward = torch.where(off > 0, torch.inf, -torch.inf).to(dtype)
    other = torch.nextafter(nearest, toward)
    p = off / (other.to(x.dtype) - low)  # in [0, 1/2]; 0 where x is exact; nan (keep nearest) at overflow
    return torch.where(uniform < p, other, nearest)


def kahan_round_(exact: torch.Tensor, weight: torch.Tensor, compensation: torch.Tensor) -> None:
    """Write fp32 ``exact`` (the weight plus its compensation, after the step) as ``weight`` (rounded to nearest in
    its dtype) and ``compensation`` (what that rounding lost). ``exact`` is overwritten."""
    weight.copy_(exact)
    compensation.copy_(exact.sub_(weight))


def random_bits16(shape: torch.Size, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """Uniform random int16s of ``shape``: 64-bit draws split in four (the generator's cost is per draw)."""
    n = shape.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-2**63, 2**63 - 1, generator=generator)  # all 64 bits (one value of 2^64 left out)
    return words.view(torch.int16)[:n].view(shape)


def _seed(seed: int, step: int, index: int) -> int:
    """The generator seed of tensor ``index``'s step ``step``: distinct for every (step, index) of a run."""
    return ((seed * 1_000_003 + step) * 65_537 + index) % (2**63)


def _moment_dtype(p: torch.Tensor) -> torch.dtype:
    return torch.float32 if p.dtype in LOW_PRECISION else p.dtype


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t  # FSDP: this rank's shard, sharing its storage


def _chunks(*tensors: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """Matching flat views of at most CHUNK elements (the whole tensors when one of them is not contiguous)."""
    if not all(t.is_contiguous() for t in tensors):
        return [tensors]
    return list(zip(*(t.view(-1).split(CHUNK) for t in tensors)))


class LowPrecisionAdamW(torch.optim.Optimizer):
    """AdamW with float32 moments over bf16 / fp16 weights, updated by stochastic rounding or Kahan summation (see
    the module docstring); plain AdamW on float32 / float64 weights. ``update``: one of ``UPDATES``; ``seed``: of
    stochastic rounding's random bits."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, update: str = "stochastic_rounding", seed: int = 0):
        if update not in UPDATES:
            raise ValueError(f"update={update!r}; allowed: {', '.join(UPDATES)}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, update=update,
                                      seed=seed))
        self._generators: dict[torch.device, torch.Generator] = {}
        self._scratches: dict[torch.device, torch.Tensor] = {}

    def _generator(self, device: torch.device, seed: int) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device)
        return self._generators[device].manual_seed(seed)

    def _init_state(self, p: torch.Tensor, update: str) -> dict:
        """The state of ``p``, any missing part added (a fresh parameter; or a resume from plain AdamW's state, or
        from stochastic rounding's into kahan)."""
        state = self.state[p]
        if "step" not in state:
            state["step"] = torch.tensor(0.0)  # on the CPU, as torch's AdamW keeps it (no device sync to read it)
        for key in ("exp_avg", "exp_avg_sq"):
            if key not in state:
                state[key] = torch.zeros_like(p, dtype=_moment_dtype(p), memory_format=torch.preserve_format)
        if update == "kahan" and p.dtype in LOW_PRECISION and "compensation" not in state:
            # bf16 has fp32's exponent range; fp16's 5-bit exponent would flush small compensations to zero
            comp = torch.bfloat16 if p.dtype == torch.bfloat16 else torch.float32
            state["compensation"] = torch.zeros_like(p, dtype=comp, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        index = -1
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            hyper = dict(lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"])
            for p in group["params"]:
                index += 1
                if p.grad is None:
                    continue
                state = self._init_state(p, group["update"])
                state["step"] += 1
                step = int(state["step"])
                weight, grad = _local(p), _local(p.grad)
                m, v = _local(state["exp_avg"]), _local(state["exp_avg_sq"])
                if p.dtype not in LOW_PRECISION:
                    adamw_math_(weight, grad.to(p.dtype), m, v, step, **hyper)
                    continue
                kahan = group["update"] == "kahan"
                comp = _local(state["compensation"]) if kahan else None
                gen = None if kahan else self._generator(weight.device, _seed(group["seed"], step, index))
                for w, g, m_, v_, *c in _chunks(weight, grad, m, v, *([comp] if kahan else [])):
                    exact, g32, denom = self._workspace(w)
                    exact.copy_(w)
                    if kahan:
                        exact.add_(c[0])  # the weight as it would be without rounding
                    adamw_math_(exact, g32.copy_(g), m_, v_, step, denom=denom, **hyper)
                    if kahan:
                        kahan_round_(exact, w, c[0])
                    elif p.dtype == torch.bfloat16:
                        w.copy_(stochastic_round_bf16_(exact, random_bits16(exact.shape, w.device, gen)))
                    else:
                        w.copy_(stochastic_round(exact, p.dtype, torch.rand(exact.shape, generator=gen,
                                                                            device=w.device)))
        return loss

    def _workspace(self, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Three fp32 tensors of w's shape (the step's exact weight, gradient and denominator): views of a (3, CHUNK)
        buffer kept per device, so no chunk allocates (fresh ones for a larger, non-contiguous tensor)."""
        if w.numel() > CHUNK:
            return tuple(torch.empty(w.shape, device=w.device) for _ in range(3))
        if w.device not in self._scratches:
            self._scratches[w.device] = torch.empty(3, CHUNK, device=w.device)
        return tuple(row[: w.numel()].view(w.shape) for row in self._scratches[w.device])

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's load, which casts every floating state to the parameter's dtype (the fp32 moments to bf16: a
        lossy resume), then the saved tensors put back in their own dtype (moments at least float32)."""
        saved = state_dict["state"]
        ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # a state written by plain AdamW has no update / seed
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        for i, p in zip(ids, params):
            for key, value in saved.get(i, {}).items():
                if key != "step" and isinstance(value, torch.Tensor):
                    dtype = _moment_dtype(p) if key in ("exp_avg", "exp_avg_sq") else value.dtype
                    self.state[p][key] = value.to(device=p.device, dtype=dtype, copy=True)
