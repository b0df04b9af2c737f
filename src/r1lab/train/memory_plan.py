"""What a training run will hold in memory, planned from the model's config before any weight is loaded.

The model is built on the meta device (shapes, no storage), so a 1.5B or 8B config is planned in a second. The plan
adds, in bytes:

* parameters (``model.train_dtype``) and, for what trains, gradients (same dtype) and AdamW's two moments, in the
  parameter's dtype for fp32 / fp64 (8 bytes per trained fp32 parameter) and in fp32 over bf16 / fp16 weights
  (r1lab.train.low_precision_adamw: 2 + 2 + 8 = 12 bytes per trained bf16 parameter), plus, with
  ``model.low_precision_update=kahan``, the compensation buffer (2 bytes per bf16 parameter, 4 per fp16);
* the reference model (full fine-tuning with ``algo.beta`` > 0; none with LoRA: the adapter is switched off), the
  rollout copy (LoRA: always, the merged weights in ``model.rollout_dtype``; full fine-tuning: only when
  rollout_dtype differs from train_dtype);
* the KV cache of one rollout batch (``rollout.batch_size`` sequences of prompt + completion, every layer);
* activations of one micro-batch: what a decoder layer keeps for backward, per token (``layer_activation_bytes``),
  times every layer without activation checkpointing, or one hidden state per layer plus one layer replayed with
  it; the attention weights when eager attention is used (CPU, up to ``EAGER_MAX_LENGTH`` tokens); the LM head's
  logits tile (``LOGIT_CHUNK`` x vocab, fp32);
* the process itself before the model (Python, torch, transformers: read from /proc on CPU; the CUDA context).

Generation and the backward pass do not overlap (the engine frees its cache before the update), so the peak is
the resident part plus the larger of the KV cache and the activations. FSDP divides parameters, gradients and
optimizer states of the sharded layers by the world size.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from r1lab.config import resolve_low_precision_update

FUSED = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")  # fused by the native decoder
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8}
GB = 1024**3


@dataclass(frozen=True)
class ModelShape:
    params: int  # unique parameters (tied weights once)
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    linear_shapes: tuple[tuple[str, int, int], ...]  # (name suffix, in, out) of each decoder-layer linear, one layer

    def lora_params(self, rank: int, targets: list[str] | None = None) -> int:
        """Adapter parameters: rank x (in + out) per targeted linear of every layer (empty: all of them)."""
        chosen = [s for s in self.linear_shapes if not targets or s[0] in targets]
        return self.layers * sum(rank * (i + o) for _, i, o in chosen)


def model_shape(config) -> ModelShape:
    """Shapes of a causal LM from its HF config, built on the meta device (no memory, no weights)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    layer = model.get_decoder().layers[0]
    linears = tuple((n.rsplit(".", 1)[-1], m.in_features, m.out_features) for n, m in layer.named_modules()
                    if isinstance(m, torch.nn.Linear))
    c = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    return ModelShape(params=params, layers=c.num_hidden_layers, hidden=c.hidden_size,
                      intermediate=c.intermediate_size, heads=heads,
                      kv_heads=getattr(c, "num_key_value_heads", None) or heads, head_dim=head_dim,
                      vocab=c.vocab_size, linear_shapes=linears)


@dataclass(frozen=True)
class Settings:
    """What the plan depends on, in plain values (taken from a job's config by ``grpo_settings`` / ``sft_settings``)."""

    train_dtype: str = "float32"
    rollout_dtype: str = "float32"
    autocast: str = "none"  # activations in this dtype when set
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = ()
    low_precision_update: str = "none"  # bf16 / fp16 weights: stochastic_rounding | kahan (a compensation buffer)
    reference: bool = False  # a full-FT reference copy (GRPO, beta > 0)
    rollout_copy: bool = False  # an engine copy besides the policy (full FT: rollout_dtype != train_dtype)
    kv_sequences: int = 0  # sequences generated at once
    kv_tokens: int = 0  # prompt + completion tokens of each
    decode_weights: bool = False  # the native engine's packed copy of the weights while it generates
    micro_sequences: int = 1  # sequences per micro-batch
    prompt_tokens: int = 0  # of each sequence (GRPO; 0 for SFT rows)
    completion_tokens: int = 1  # of each (GRPO's completion, or an SFT row of data.max_length)
    group_size: int = 1  # sequences sharing a prompt, whose prompt the trainer runs once (GRPO)
    gradient_checkpointing: bool = False
    eager_attention: bool = False  # attention weights kept for backward
    logit_rows: int = 1024  # the LM head's tile
    fsdp_ranks: int = 1
    runtime_bytes: int = 0  # the process before the model


@dataclass
class MemoryPlan:
    parts: dict[str, int]  # component -> bytes
    resident: int  # what stays for the whole run
    peak: int  # resident + max(kv cache, activations)
    free: int | None  # the device's free memory now (None: unknown)
    device: str
    settings: Settings

    @property
    def fits(self) -> bool:
        return self.free is None or self.peak <= self.free


def layer_activation_bytes(s: ModelShape, tokens: int, act_bytes: int) -> int:
    """Bytes one Llama-style decoder layer keeps for backward over ``tokens`` tokens (attention weights apart).

    Per token: the layer input and its RMS-normed copy, q / k / v and their rotated q / k, k / v repeated over the
    query heads (GQA), the attention output, the residual and its norm (10 hidden-widths counting k/v at the hidden
    width after repeat, 3 more at the kv width), and the MLP's gate, up, SiLU(gate) and their product (4 x
    intermediate).
    """
    kv = s.kv_heads * s.head_dim
    return tokens * (10 * s.hidden + 3 * kv + 4 * s.intermediate) * act_bytes


def plan(shape: ModelShape, st: Settings, free: int | None = None, device: str = "cpu") -> MemoryPlan:
    """The memory of a run with ``shape`` and ``st`` (pure arithmetic; see the module docstring)."""
    pb, rb = BYTES[st.train_dtype], BYTES[st.rollout_dtype]
    ab = BYTES.get(st.autocast, pb) if st.autocast != "none" else pb
    lora = shape.lora_params(st.lora_rank, list(st.lora_targets)) if st.lora_rank else 0
    # PEFT keeps adapters in fp32 over a bf16 / fp16 base (autocast_adapter_dtype): their updates are not rounded
    tb = max(pb, 4) if st.lora_rank else pb
    trained = lora if st.lora_rank else shape.params
    shard = st.fsdp_ranks if not st.lora_rank else 1
    # bf16 / fp16 trained weights: fp32 moments, and Kahan's compensation in bf16 / fp32 (low_precision_adamw)
    kahan = tb < 4 and st.low_precision_update == "kahan"
    compensation = {"bfloat16": 2, "float16": 4}[st.train_dtype] if kahan else 0
    parts = {
        "parameters": shape.params // shard * pb + lora * tb,
        "gradients": trained // shard * tb,
        "optimizer (AdamW, 2 moments)": 2 * trained // shard * max(tb, 4),
        **({"Kahan compensation": trained // shard * compensation} if compensation else {}),
        "reference model": shape.params * pb if st.reference and not st.lora_rank else 0,
        "rollout copy": shape.params * rb if st.rollout_copy else 0,
        "process (runtime)": st.runtime_bytes,
    }
    resident = sum(parts.values())
    kv = 2 * shape.layers * shape.kv_heads * shape.head_dim * st.kv_sequences * st.kv_tokens * rb
    decode = shape.params * rb if st.decode_weights else 0  # every matmul's weight packed once per rollout
    if st.decode_weights and (st.lora_rank or not st.rollout_copy):
        # the decoder's fused q/k/v and gate/up buffers: kept beside the weights it decodes from, unless the engine
        # owns its copy (full FT with another rollout dtype), whose projections then view them (llama_decode)
        decode += shape.layers * sum(i * o for name, i, o in shape.linear_shapes if name in FUSED) * rb
    P, C, B = st.prompt_tokens, st.completion_tokens, st.micro_sequences
    if st.gradient_checkpointing or st.group_size == 1:  # each row runs prompt + completion in one forward
        tokens, attention = B * (P + C), B * (P + C) ** 2
    else:  # each distinct prompt once, then every completion on its prompt's keys and values
        prompts = math.ceil(B / st.group_size)
        tokens, attention = prompts * P + B * C, prompts * P * P + B * C * (P + C)
    per_layer = layer_activation_bytes(shape, tokens, ab)
    per_layer += shape.heads * attention * ab if st.eager_attention else 0  # softmax weights kept for backward
    logits = min(st.logit_rows, B * C) * shape.vocab * 4 * 2  # fp32 tile and its softmax / gradient
    if st.gradient_checkpointing:  # one hidden state per layer, plus one layer replayed during backward
        activations = shape.layers * tokens * shape.hidden * ab + per_layer + logits
    else:
        activations = shape.layers * per_layer + logits
    parts["KV cache (rollout batch)"] = kv
    parts["engine decode weights (rollout)"] = decode
    parts["activations (one micro-batch)"] = activations
    return MemoryPlan(parts=parts, resident=resident, peak=resident + max(kv + decode, activations), free=free,
                      device=device, settings=st)


def free_memory(device: torch.device) -> int | None:
    """Bytes free now: CUDA from ``torch.cuda.mem_get_info``; CPU: MemAvailable in /proc/meminfo."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def process_bytes(device: torch.device) -> int:
    """What this process holds before the model: its resident set on CPU (Python, torch, transformers); the CUDA
    context (about 0.5 GB) on a GPU."""
    if device.type == "cuda":
        return GB // 2
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def options_that_fit(shape: ModelShape, plan_: MemoryPlan) -> list[str]:
    """The single changes (LoRA, activation checkpointing, a smaller micro-batch, FSDP over N ranks) that bring the
    planned peak under the free memory."""
    if plan_.free is None or plan_.fits:
        return []
    st, found = plan_.settings, []

    def fits(**change) -> MemoryPlan | None:
        p = plan(shape, dataclasses.replace(st, **change), plan_.free, plan_.device)
        return p if p.fits else None

    if not st.lora_rank and (p := fits(lora_rank=16)):
        found.append(f"--set lora.rank=16 (peak {p.peak / GB:.1f} GB)")
    if st.train_dtype == "float32":  # bf16 master weights, fp32 moments, stochastic rounding (low_precision_adamw);
        # full fine-tuning then needs a rollout copy only where generation runs in another dtype
        copy = st.rollout_copy if st.lora_rank else st.kv_sequences > 0 and st.rollout_dtype != "bfloat16"
        if p := fits(train_dtype="bfloat16", low_precision_update="stochastic_rounding", rollout_copy=copy):
            found.append(f"--set model.train_dtype=bfloat16 (bf16 weights with fp32 AdamW moments and stochastic "
                         f"rounding; peak {p.peak / GB:.1f} GB)")
    if not st.gradient_checkpointing and (p := fits(gradient_checkpointing=True)):
        found.append(f"--set train.gradient_checkpointing=true (peak {p.peak / GB:.1f} GB)")
    for micro in range(st.micro_sequences // 2, 0, -1):
        if p := fits(micro_sequences=micro):
            found.append(f"--set train.micro_batch_size={micro} (peak {p.peak / GB:.1f} GB)")
            break
    if not st.lora_rank:
        for ranks in (2, 4, 8, 16, 32, 64):
            if p := fits(fsdp_ranks=ranks):
                found.append(f"torchrun --nproc-per-node {ranks} ... --set train.parallel=fsdp (peak per rank "
                             f"{p.peak / GB:.1f} GB)")
                break
    return found


def summary_line(shape: ModelShape, plan_: MemoryPlan) -> str:
    """The plan in one line (printed at the start of every GRPO / SFT run)."""
    free = f"{plan_.free / GB:.1f} GB free on {plan_.device}" if plan_.free is not None else "free memory unknown"
    verdict = "fits" if plan_.fits else "DOES NOT FIT"
    st = plan_.settings
    how = f"LoRA rank {st.lora_rank}" if st.lora_rank else "full fine-tuning"
    return (f"memory plan: peak {plan_.peak / GB:.2f} GB ({verdict}; {free}); {shape.params / 1e6:,.0f}M parameters, "
            f"{how}, micro-batches of {st.micro_sequences} x {st.prompt_tokens + st.completion_tokens} tokens "
            f"(details: --dry-run)")


def format_plan(shape: ModelShape, plan_: MemoryPlan) -> str:
    """The plan as the lines a job prints (one summary line first)."""
    lines = [summary_line(shape, plan_).replace(" (details: --dry-run)", "")]
    lines += [f"  {name:<32} {value / GB:8.3f} GB" for name, value in plan_.parts.items()]
    lines.append("  peak = the resident parts + max(KV cache + engine decode weights, activations): generation and "
                 "the backward pass do not overlap")
    if not plan_.settings.gradient_checkpointing:
        with_ckpt = plan(shape, dataclasses.replace(plan_.settings, gradient_checkpointing=True))
        lines.append(f"  activations with train.gradient_checkpointing=true: "
                     f"{with_ckpt.parts['activations (one micro-batch)'] / GB:.3f} GB")
    fixes = options_that_fit(shape, plan_)
    if fixes:
        lines.append("  would fit with: " + "; or ".join(fixes))
    elif not plan_.fits:
        lines.append("  no single option (LoRA, checkpointing, micro-batch, FSDP up to 64 ranks) makes it fit")
    return "\n".join(lines)


def _eager(device: torch.device, length: int) -> bool:
    from r1lab.algos.logprobs import EAGER_MAX_LENGTH

    return device.type == "cpu" and length <= EAGER_MAX_LENGTH


def grpo_settings(cfg, device: torch.device, prompt_tokens: int, world_size: int = 1) -> Settings:
    """``Settings`` of a GRPO run (``prompt_tokens``: the longest prompt expected)."""
    from r1lab.algos.logprobs import LOGIT_CHUNK

    m, G = cfg.model, cfg.rollout.group_size
    length = prompt_tokens + cfg.rollout.max_new_tokens
    per_rank = cfg.train.prompts_per_step * G // world_size
    rollout_dtype = _concrete(m.rollout_dtype, m.train_dtype)
    return Settings(
        train_dtype=m.train_dtype, rollout_dtype=rollout_dtype, autocast=_concrete(m.autocast, "none"),
        lora_rank=cfg.lora.rank, lora_targets=tuple(cfg.lora.target_modules),
        low_precision_update=resolve_low_precision_update(m.train_dtype, m.low_precision_update),
        reference=cfg.algo.beta > 0, rollout_copy=cfg.lora.rank > 0 or rollout_dtype != m.train_dtype,
        kv_sequences=min(max(cfg.rollout.batch_size // G, 1) * G, per_rank), kv_tokens=length,
        decode_weights=cfg.rollout.engine == "native" and cfg.rollout.fast_decode,
        micro_sequences=min(cfg.train.micro_batch_size, per_rank), prompt_tokens=prompt_tokens,
        completion_tokens=cfg.rollout.max_new_tokens, group_size=G,
        gradient_checkpointing=cfg.train.gradient_checkpointing, eager_attention=_eager(device, length),
        logit_rows=LOGIT_CHUNK, fsdp_ranks=world_size if cfg.train.parallel == "fsdp" else 1)


def sft_settings(cfg, device: torch.device, world_size: int = 1) -> Settings:
    """``Settings`` of an SFT run: micro-batches of ``data.max_length``-token rows (packed, or the longest)."""
    m = cfg.model
    rollout_dtype = _concrete(m.rollout_dtype, m.train_dtype)
    generates = cfg.eval.every > 0  # generation evals (rank 0) on the native engine
    return Settings(
        train_dtype=m.train_dtype, rollout_dtype=rollout_dtype, autocast=_concrete(m.autocast, "none"),
        lora_rank=cfg.lora.rank, lora_targets=tuple(cfg.lora.target_modules),
        low_precision_update=resolve_low_precision_update(m.train_dtype, m.low_precision_update),
        rollout_copy=generates and (cfg.lora.rank > 0 or rollout_dtype != m.train_dtype),
        kv_sequences=cfg.eval.batch_size if generates else 0, kv_tokens=cfg.data.max_length, decode_weights=generates,
        micro_sequences=cfg.train.micro_batch_size, prompt_tokens=0, completion_tokens=cfg.data.max_length,
        gradient_checkpointing=cfg.train.gradient_checkpointing, eager_attention=False,
        logit_rows=cfg.distill.chunk_tokens, fsdp_ranks=world_size if cfg.train.parallel == "fsdp" else 1)


def _concrete(value: str, fallback: str) -> str:
    """``auto`` before the run resolved it: planned as ``fallback`` (printed values then say what was assumed)."""
    return fallback if value == "auto" else value


def plan_job(cfg, job: str, device: torch.device | None = None, prompt_tokens: int = 0,
             world_size: int = 1) -> tuple[ModelShape, MemoryPlan]:
    """Plan ``cfg`` of ``job`` (grpo | sft) from the model's config alone (GRPO prompts: ``prompt_tokens``, else
    ``rollout.max_prompt_tokens``, else 128 assumed)."""
    from transformers import AutoConfig

    from r1lab.models.loading import resolve_model_folder

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shape = model_shape(AutoConfig.from_pretrained(resolve_model_folder(cfg.model.name)))
    if job == "sft":
        st = sft_settings(cfg, device, world_size)
    else:
        prompt = prompt_tokens or cfg.rollout.max_prompt_tokens or 128
        st = grpo_settings(cfg, device, prompt, world_size)
    st = dataclasses.replace(st, runtime_bytes=process_bytes(device))
    return shape, plan(shape, st, free_memory(device), str(device))



def memory_summary(cfg, job: str, device: torch.device, world_size: int = 1) -> str:
    """``summary_line`` of ``cfg``'s plan, or why there is none (a model whose config the planner cannot read)."""
    try:
        return summary_line(*plan_job(cfg, job, device, world_size=world_size))
    except (ValueError, AttributeError, OSError, IndexError) as err:
        return f"memory plan: not available for {cfg.model.name} ({err})"
