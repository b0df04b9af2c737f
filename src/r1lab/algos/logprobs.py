"""Log-probabilities and entropies of completion tokens, never materialising the full-vocabulary logits of every
token: only real completion tokens go through the LM head, a tile of tokens at a time, forward and backward."""

from __future__ import annotations

from contextlib import contextmanager

import torch

from r1lab.algos.gqa_attention import GQA_EAGER, GQA_EAGER_MODELS
from r1lab.algos.gqa_attention import register as register_gqa_eager
from r1lab.models.checkpointing import replays_layers
from r1lab.models.kv_cache import cache_argument_name, output_cache

# Longest prompt + completion trained with eager attention on CPU (see ``training_attention``)
EAGER_MAX_LENGTH = 256


def training_attention(model: torch.nn.Module, length: int) -> str:
    """The attention implementation a training forward of ``length`` tokens should use.

    On CPU, SDPA's flash kernel is fast forward but its backward is not: for GRPO's shapes (16 sequences,
    ~185 tokens, SmolLM2-135M) the backward took ~6x the forward and a fifth of the whole optimisation. An eager
    attention (matmuls + softmax) is faster forward + backward: ``GQA_EAGER`` (algos/gqa_attention.py) for the
    Llama family, HF's own eager for other models. Eager keeps the (B, heads, L, L) attention weights for backward,
    so it is used only up to ``EAGER_MAX_LENGTH`` tokens (16 x 9 heads x 256^2 bf16 weights = 19 MB per layer).
    Elsewhere, and on GPUs, the model's own choice stays.
    """
    current = model.config._attn_implementation
    device = next(model.parameters()).device
    if current != "sdpa" or device.type != "cpu" or length > EAGER_MAX_LENGTH:
        return current
    if model.config.model_type in GQA_EAGER_MODELS:
        register_gqa_eager()
        return GQA_EAGER
    return "eager"


@contextmanager
def attention_implementation(model: torch.nn.Module, name: str):
    """Runs the model's forwards with attention ``name`` (HF reads config._attn_implementation per forward)."""
    saved = model.config._attn_implementation
    model.config._attn_implementation = name
    try:
        yield
    finally:
        model.config._attn_implementation = saved


@contextmanager
def shared_weight_casts(device_type: str):
    """Autocast regions entered inside reuse one low-precision copy of each weight until this block ends.

    Autocast caches its casts of leaf tensors (the fp32 weights) only until the outermost autocast region exits,
    so with one region per micro-batch every micro-batch re-casts all weights (SmolLM2-135M: 135M values, and the
    fresh bf16 copies' page faults). This block is an outer region that enables nothing, so the micro-batches'
    own regions nest inside it and share the casts; backward runs inside it with autocast off. Gradients are
    unchanged: the casts' backward still accumulates into the fp32 weights. The cache is cleared on exit, so an
    optimizer step after the block never meets a stale copy.
    """
    try:
        with torch.autocast(device_type, enabled=False):
            yield
    finally:
        torch.clear_autocast_cache()


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) positions that start at 0 on the first real token, as generate() assigns them for left padding."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


LOGIT_CHUNK = 1024  # tokens per LM-head tile: 1024 x 49,152 fp32 logits = 200 MB, the largest buffer held


def score_dtype(compute_dtype: torch.dtype) -> torch.dtype:
    """The dtype of softmax and log-probs: fp32, or fp64 when the model computes in fp64."""
    return torch.float64 if compute_dtype == torch.float64 else torch.float32


class _TileBuffers:
    """Scratch for the (n, V) tiles of one pass over the LM head, reused by every tile.

    Each fresh multi-hundred-MB tensor costs page faults on CPU (glibc maps and unmaps large blocks): on the
    reference Xeon making one 1024 x 49,152 fp32 tile took 78.6 ms as a fresh tensor against 18.3 ms refilling a
    kept one (benchmarks/train_kernels.py), so the tile ops write into these buffers (``out=`` and in place).
    """

    def __init__(self, rows: int, vocab: int, compute_dtype: torch.dtype, device: torch.device, extra: bool = False):
        # fp32 logits / softmax / grads (fp64 for a fp64 model: exact comparisons in tests)
        self.scores = torch.empty(rows, vocab, dtype=score_dtype(compute_dtype), device=device)
        self.work = torch.empty_like(self.scores) if extra else None  # exp(z - max) when the entropy needs z kept
        # the matmul's own output when it is not the score dtype (bf16 under autocast)
        self.logits = None if compute_dtype == self.scores.dtype else torch.empty(rows, vocab, dtype=compute_dtype,
                                                                                  device=device)

    def logits_fp32(self, h: torch.Tensor, w: torch.Tensor, temperature: float) -> torch.Tensor:
        """(n, V) score-dtype view of h w^T / T, the matmul in w's dtype (as the LM head would run under autocast)."""
        n = h.shape[0]
        z = self.scores[:n]
        if self.logits is None:
            torch.mm(h.to(w.dtype), w.T, out=z)
        else:
            z.copy_(torch.mm(h.to(w.dtype), w.T, out=self.logits[:n]))
        return z.div_(temperature) if temperature != 1.0 else z


class _ChunkedLogProbs(torch.autograd.Function):
    """log softmax(h W^T / T)[id] per row, and optionally the entropy, with logits made one tile at a time.

    Forward keeps only (N,) log-sum-exps; backward recomputes each tile's logits and uses
    d logp / d logits = (onehot(id) - softmax) / T, so (N, V) logits never exist for all N tokens at once.
    Matmuls run in ``compute_dtype`` (the autocast dtype, as the LM head would under autocast); the softmax
    and everything after it in fp32.
    """

    @staticmethod
    def forward(ctx, hidden, weight, ids, temperature: float, chunk: int, compute_dtype, with_entropy: bool):
        N = hidden.shape[0]
        out_dtype = score_dtype(compute_dtype)
        logp = hidden.new_empty(N, dtype=out_dtype)
        lse = hidden.new_empty(N, dtype=out_dtype)
        entropy = hidden.new_empty(N, dtype=out_dtype) if with_entropy else None
        w = weight.to(compute_dtype)
        tiles = _TileBuffers(min(chunk, N), weight.shape[0], compute_dtype, hidden.device, extra=with_entropy)
        for s in range(0, N, chunk):
            z = tiles.logits_fp32(hidden[s : s + chunk], w, temperature)  # (n, V) fp32
            n = z.shape[0]
            picked = z.gather(1, ids[s : s + chunk, None]).squeeze(1)
            top = z.amax(dim=-1, keepdim=True)
            # exp(z - max), in place unless the entropy still needs z
            e = torch.sub(z, top, out=tiles.work[:n]) if with_entropy else z.sub_(top)
            total = e.exp_().sum(dim=-1)
            lse[s : s + n] = top.squeeze(1) + total.log()
            logp[s : s + n] = picked - lse[s : s + n]
            if with_entropy:  # H = lse - sum_v p_v z_v, p = e / total (a fp32 bmm here lost ~1e-3: oneDNN)
                entropy[s : s + n] = lse[s : s + n] - e.mul_(z).sum(dim=-1) / total
        ctx.save_for_backward(hidden, weight, ids, lse)
        ctx.temperature, ctx.chunk, ctx.compute_dtype = temperature, chunk, compute_dtype
        if entropy is None:
            return logp, torch.zeros(0, device=hidden.device)
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, _grad_entropy):
        hidden, weight, ids, lse = ctx.saved_tensors
        T, chunk, dt = ctx.temperature, ctx.chunk, ctx.compute_dtype
        w = weight.to(dt)
        N, V = hidden.shape[0], weight.shape[0]
        tiles = _TileBuffers(min(chunk, N), V, dt, hidden.device)
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight, dtype=score_dtype(dt)) if ctx.needs_input_grad[1] else None
        tile_grad_weight = torch.empty_like(w) if grad_weight is not None and dt != grad_weight.dtype else None
        for s in range(0, N, chunk):
            h = hidden[s : s + chunk].to(dt)
            scale = grad_logp[s : s + chunk, None] / T  # (n, 1)
            g = tiles.logits_fp32(h, w, T).sub_(lse[s : s + chunk, None]).exp_()  # softmax, in place
            g.mul_(-scale).scatter_add_(1, ids[s : s + chunk, None], scale)  # (onehot - softmax) * scale
            if tiles.logits is not None:  # the (n, V) gradient w.r.t. the logits, in the matmul dtype
                g = tiles.logits[: g.shape[0]].copy_(g)
            if grad_hidden is not None:
                grad_hidden[s : s + chunk] = g @ w
            if grad_weight is not None:
                if tile_grad_weight is None:
                    grad_weight.addmm_(g.T, h)
                else:
                    grad_weight.add_(torch.mm(g.T, h, out=tile_grad_weight))
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None, None


def chunked_logprobs(hidden: torch.Tensor, weight: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0,
                     with_entropy: bool = False, chunk: int = LOGIT_CHUNK) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (N,) of ``ids`` (N,) under logits = hidden (N, H) @ weight (V, H)^T / temperature, in fp32.

    Also the (N,) entropies when asked (no gradient). Under autocast the matmuls run in its dtype.
    """
    device_type = hidden.device.type
    compute_dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else hidden.dtype
    with torch.autocast(device_type, enabled=False):
        logp, entropy = _ChunkedLogProbs.apply(hidden, weight, ids, float(temperature), chunk, compute_dtype,
                                               with_entropy)
    return logp, entropy if with_entropy else None


def completion_logprobs(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    with_entropy: bool = False,
    temperature: float = 1.0,
    prompt_index: torch.Tensor | None = None,
    per_row: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (B, C) of ``completion_ids`` given left-padded prompts, under ``model`` at ``temperature``.

    GRPO samples G completions of each prompt, so the prompt is run once per *distinct* prompt and its keys and
    values are shared: ``prompt_ids`` (U, P) holds the U distinct prompts and ``prompt_index`` (B,) says which
    one row b continues (None: U == B, row b continues prompt b). Gradients flow back through the shared keys and
    values exactly as in the unshared forward; the prompt forward costs U/B of it. Position ids come from the
    attention mask so left-padded rows see the positions generate() gave them. Only real completion tokens
    (``completion_mask`` > 0) go through the LM head, in tiles (``chunked_logprobs``); log-probs and entropies of
    masked-out positions are 0. Attention: ``training_attention`` (eager for short sequences on CPU). When the model
    checkpoints its layers (``r1lab.models.checkpointing``), or with ``per_row`` (FSDP: one backbone call per
    micro-batch on every rank, whatever its lengths), each row runs prompt + completion in one forward.
    """
    B, C = completion_ids.shape
    if prompt_index is None:
        prompt_index = torch.arange(B, device=completion_ids.device)
    if getattr(model.config, "final_logit_softcapping", None) or getattr(model.config, "logit_scale", None):
        raise NotImplementedError("completion_logprobs projects hidden states through the LM head itself and does not "
                                  "implement logit soft-capping or scaling")
    backbone, head = model.get_decoder(), model.get_output_embeddings()
    prompt_mask = prompt_mask.long()
    # Columns past every row's last real token change nothing: run only up to the longest completion
    used = int(completion_mask.sum(dim=1).max()) if B else 0
    ids, mask = completion_ids[:, : max(used, 1)], completion_mask[:, : max(used, 1)]
    if replays_layers(model):
        # Activation checkpointing replays each layer in the backward pass. A replay must not append to a KV cache
        # again, so each row runs prompt + completion in one cache-free forward; and it runs after this function
        # returns, so the attention it must match is the model's current one, which the caller chooses for forward
        # and backward alike (GRPO's optimizer pass does), not a switch that ends with this call.
        hidden = _hidden_states_per_row(backbone, prompt_ids, prompt_mask, ids, mask, prompt_index)
    else:
        hidden_states = _hidden_states_per_row if per_row else _hidden_states
        with attention_implementation(model, training_attention(model, prompt_ids.shape[1] + ids.shape[1])):
            hidden = hidden_states(backbone, prompt_ids, prompt_mask, ids, mask, prompt_index)
    # 3. the LM head and log-softmax on real completion tokens only, a tile at a time
    real = mask.bool()  # (B, C')
    token_logp, token_entropy = chunked_logprobs(hidden[real], head.weight, ids[real], temperature, with_entropy)
    logp = completion_ids.new_zeros(B, C, dtype=token_logp.dtype)
    logp = logp.masked_scatter(_pad_to(real, C), token_logp)  # (B, C), 0 where masked out
    entropy = None
    if with_entropy:
        entropy = logp.new_zeros(B, C).masked_scatter(_pad_to(real, C), token_entropy)
    return logp, entropy


def _hidden_states(backbone, prompt_ids, prompt_mask, ids, mask, prompt_index) -> torch.Tensor:
    """(B, C', H) last hidden states: at the last prompt position, then at every completion input token."""
    # 1. prompts once: keys/values of every layer, and the hidden state at the last prompt position (predicts token 0)
    prompt_out = backbone(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=position_ids_from_mask(prompt_mask),
                          use_cache=True)
    cache = output_cache(prompt_out)
    cache.batch_select_indices(prompt_index)  # (U, ...) -> (B, ...), differentiable indexing
    hidden = prompt_out.last_hidden_state[prompt_index, -1:]  # (B, 1, H)
    # 2. completions on top of the shared cache: input token t predicts completion token t + 1
    if ids.shape[1] > 1:
        full_mask = torch.cat([prompt_mask[prompt_index], mask.long()], dim=1)  # (B, P + C')
        P = prompt_ids.shape[1]
        completion_out = backbone(input_ids=ids[:, :-1], attention_mask=full_mask[:, :-1],
                                  position_ids=position_ids_from_mask(full_mask)[:, P:-1], use_cache=True,
                                  **{cache_argument_name(backbone): cache})
        hidden = torch.cat([hidden, completion_out.last_hidden_state], dim=1)  # (B, C', H)
    return hidden


def _hidden_states_per_row(backbone, prompt_ids, prompt_mask, ids, mask, prompt_index) -> torch.Tensor:
    """The same (B, C', H) as ``_hidden_states`` from one forward of each row's prompt + completion, no cache (the
    form activation checkpointing can replay); the prompt is computed once per row instead of once per prompt."""
    P = prompt_ids.shape[1]
    full_ids = torch.cat([prompt_ids[prompt_index], ids[:, :-1]], dim=1)  # the last token predicts nothing
    full_mask = torch.cat([prompt_mask[prompt_index], mask[:, :-1].long()], dim=1)
    out = backbone(input_ids=full_ids, attention_mask=full_mask, position_ids=position_ids_from_mask(full_mask),
                   use_cache=False)
    return out.last_hidden_state[:, P - 1 :]  # position P - 1 + t predicts completion token t


def _pad_to(mask: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.pad(mask, (0, width - mask.shape[1]), value=False)
