"""A decode step for Llama-family models (Llama, SmolLM2, Qwen2, Mistral) written for batched sampling.

HF's decode step spends more of its time around the matmuls than in them on a CPU: the growing key/value cache is
re-concatenated every token (a copy of the whole cache per layer), masks are rebuilt, and the small projections
run as separate, slow matmuls. This step keeps the same arithmetic (HF's RMSNorm in fp32, HF's rotary cos/sin,
SDPA with the key/value heads packed as HF packs them for one query) but

- keeps keys and values in a preallocated cache written in place, one slot per token;
- runs q/k/v as one matmul and gate/up as one. On a private copy of the weights (the engine's bf16 rollout copy,
  ``own_weights``) the model's projection weights become views of the fused buffers, so no second copy exists
  and weight syncs land in them; on shared weights the fused copies are rebuilt after each weight sync (or when a
  parameter's version counter moves);
- builds no mask objects: one boolean (rows, slots) mask, extended by a column per token;
- on CPU, runs everything but the matmuls (attention, residual add + RMSNorm, rotary + cache write, SiLU gate)
  on r1lab's C kernels (``native_kernels``, bf16 or fp32): the same arithmetic and roundings, far fewer ops; its
  matmuls run on weights pre-packed once per rollout (``PackedLinear``: oneDNN's layout in bf16, MKL's in fp32).
  On a GPU, or without a C compiler, the step is PyTorch's ops.

Prefill stays HF's forward (``LlamaDecoder.prefill`` copies its cache in), so prompts of any length and padding
go through the model's own code. Architectures outside the family fall back to HF's step
(``unsupported_reason`` says why).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import rotate_half

from r1lab.rollout import native_kernels
from r1lab.rollout.packed_linear import PackedLinear

SUPPORTED = ("llama", "qwen2", "mistral")


def unsupported_reason(model: torch.nn.Module) -> str | None:
    """Why ``LlamaDecoder`` cannot run ``model`` (None: it can)."""
    cfg = model.config
    if cfg.model_type not in SUPPORTED:
        return f"model_type {cfg.model_type!r} is not one of {SUPPORTED}"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"hidden_act {cfg.hidden_act!r} (only silu)"
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return "sliding-window attention"
    if getattr(cfg, "mlp_bias", False):
        return "MLP biases"
    if getattr(cfg, "_attn_implementation", "sdpa") not in ("sdpa", "eager", None):
        return f"attention implementation {cfg._attn_implementation!r}"
    return None


class LlamaDecoder:
    """One token per row per call, on a static key/value cache of ``rows x slots``."""

    def __init__(self, model: torch.nn.Module, own_weights: bool = False, native_kernels: bool = True):
        reason = unsupported_reason(model)
        if reason:
            raise ValueError(f"LlamaDecoder cannot run this model: {reason}")
        self.model = model
        cfg = model.config
        self.n_heads, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.scale = self.head_dim ** -0.5
        self.own_weights = own_weights
        self.native_kernels = native_kernels  # the C kernels where they apply (CPU bf16 / fp32), else PyTorch's ops
        self.kernels: native_kernels.DecodeKernels | None = None  # set by prefill when they apply
        self.scores: torch.Tensor | None = None  # the attention kernel's fp32 scratch
        self._versions: list[int] | None = None
        self.layers: list[dict] = []
        self.linears: list[dict[str, PackedLinear]] = []
        self.head: PackedLinear | None = None
        self.rows_hint = 64  # the decode batch the weights are packed for (refresh_weights sets it)
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []

    # --- weights -----------------------------------------------------------------------------------------
    def refresh_weights(self, rows: int | None = None) -> None:
        """Fused q/k/v and gate/up weights and their pre-packed matmuls (``PackedLinear``) for decode batches of
        ``rows`` rows (default: as before), rebuilt after ``weights_changed``, when a parameter's version counter
        moved (an in-place update outside the optimizer), or after ``release``. Over owned weights the fusion is
        done once (the model's projections then view the fused buffers) and only the packing is redone."""
        changed = [p._version for p in self.model.parameters()] != self._versions
        rows = rows or self.rows_hint
        if self.linears and not changed and rows == self.rows_hint:
            return
        if not self.layers or (changed and not self.own_weights):
            self._fuse_layers()
        self._pack(rows)
        self._versions = [p._version for p in self.model.parameters()]  # after fusing, which may swap p.data

    def _pack(self, rows: int) -> None:
        self.rows_hint = rows
        self.linears = [{"qkv": PackedLinear(w["qkv"], w["qkv_bias"], rows), "o": PackedLinear(w["o"], w["o_bias"], rows),
                         "gate_up": PackedLinear(w["gate_up"], None, rows), "down": PackedLinear(w["down"], None, rows)}
                        for w in self.layers]
        head = self.model.lm_head
        self.head = PackedLinear(head.weight, getattr(head, "bias", None), rows)

    def weights_changed(self) -> None:
        """The model's weights were updated: the next ``refresh_weights`` rebuilds the fused copies (shared weights)
        and re-packs. Needed because version counters miss some in-place updates (fused optimizer kernels)."""
        self._versions = None

    def _fuse_layers(self) -> None:
        self.layers = []  # free the old fused copies before building new ones
        with torch.no_grad():
            for layer in self.model.model.layers:
                a, m = layer.self_attn, layer.mlp
                qkv_bias = None
                if a.q_proj.bias is not None:
                    qkv_bias = self._fuse([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
                self.layers.append({
                    "qkv": self._fuse([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]), "qkv_bias": qkv_bias,
                    "o": a.o_proj.weight, "o_bias": a.o_proj.bias,
                    "gate_up": self._fuse([m.gate_proj.weight, m.up_proj.weight]),
                    "down": m.down_proj.weight,
                    "norm_in": layer.input_layernorm, "norm_post": layer.post_attention_layernorm,  # HF's RMSNorm
                })

    def _fuse(self, params: list[torch.Tensor]) -> torch.Tensor:
        """The parameters concatenated along dim 0; with owned weights each parameter then views its slice."""
        fused = torch.cat([p.detach() for p in params])
        if self.own_weights:
            start = 0
            for p in params:
                p.data = fused[start : start + p.shape[0]]
                start += p.shape[0]
        return fused

    # --- cache -------------------------------------------------------------------------------------------
    def prefill(self, cache, repeat: int, slots: int) -> None:
        """Copies HF's prefill cache (U rows) into static buffers of ``U * repeat`` rows and ``slots`` positions."""
        self.k, self.v = [], []
        for layer in cache.layers:
            keys, values = layer.keys.repeat_interleave(repeat, dim=0), layer.values.repeat_interleave(repeat, dim=0)
            B, H, P, D = keys.shape
            k = keys.new_empty(B, H, slots, D)
            v = values.new_empty(B, H, slots, D)
            k[:, :, :P], v[:, :, :P] = keys, values
            self.k.append(k)
            self.v.append(v)
        self.kernels = self._native_kernels()
        self.scores = torch.empty(self.k[0].shape[0] * self.n_heads * slots) if self.kernels is not None else None

    def select_rows(self, keep: torch.Tensor) -> None:
        """Keeps only the cache rows ``keep`` (finished rows leave the batch)."""
        self.k = [k.index_select(0, keep) for k in self.k]
        self.v = [v.index_select(0, keep) for v in self.v]
        if self.head is not None and self.head.rows_exact:  # MKL's packing serves only the row count it was made for
            self._pack(len(keep))

    def release(self) -> None:
        """Frees the cache and the packed weights (the policy trains next; the next rollout re-packs)."""
        self.k, self.v, self.kernels, self.scores = [], [], None, None
        self.linears, self.head = [], None

    # --- the step ----------------------------------------------------------------------------------------
    def _native_kernels(self) -> native_kernels.DecodeKernels | None:
        """r1lab's C kernels for this model's head shape when the step can run on them (a CPU cache and model both in
        bf16 or both in fp32, HF's RMSNorm with its epsilon, a head shape the attention kernel takes), else None:
        PyTorch's step."""
        norms = [m for w in self.layers for m in (w["norm_in"], w["norm_post"])] + [self.model.model.norm]
        dtype = self.k[0].dtype if self.k else None
        applies = (self.native_kernels and bool(self.k) and self.k[0].device.type == "cpu"
                   and dtype in native_kernels.SUFFIXES
                   and native_kernels.attention_applies(self.n_heads, self.n_kv, self.head_dim)
                   and all(getattr(m, "variance_epsilon", None) is not None and m.weight.dtype == dtype
                           for m in norms))
        return native_kernels.load(self.n_heads // self.n_kv, self.head_dim) if applies else None

    @torch.no_grad()
    def step(self, token: torch.Tensor, position: torch.Tensor, slot: int, mask: torch.Tensor) -> torch.Tensor:
        """(R,) tokens at (R, 1) positions, written to cache ``slot``; ``mask`` (R, slot + 1) is True where a row
        may attend. Returns the (R, V) logits of the next token."""
        model, R = self.model.model, token.shape[0]
        x = model.embed_tokens.weight[token]  # (R, hidden)
        cos, sin = model.rotary_emb(x, position)  # (R, 1, D) each, HF's own rotary (any rope scaling it supports)
        if self.kernels is not None:
            return self._native_step(x, cos, sin, slot, mask)
        H, KV, D = self.n_heads, self.n_kv, self.head_dim
        cos, sin = cos.view(R, 1, D), sin.view(R, 1, D)
        attn_mask = mask.view(R, 1, 1, -1)
        for i, (w, linear) in enumerate(zip(self.layers, self.linears)):
            qkv = linear["qkv"](w["norm_in"](x))
            qk = qkv[:, : (H + KV) * D].view(R, H + KV, D)  # queries and keys rotated together: half the ops
            qk = qk * cos + rotate_half(qk) * sin
            q, k = qk[:, :H], qk[:, H:]
            self.k[i][:, :, slot] = k
            self.v[i][:, :, slot] = qkv[:, (H + KV) * D :].view(R, KV, D)
            # one query: its H heads as H / KV queries of each key/value head (HF's pack_gqa), no key repeat
            out = F.scaled_dot_product_attention(q.view(R, KV, H // KV, D), self.k[i][:, :, : slot + 1],
                                                 self.v[i][:, :, : slot + 1], attn_mask=attn_mask, scale=self.scale)
            x = x + linear["o"](out.reshape(R, H * D))
            gate, up = linear["gate_up"](w["norm_post"](x)).chunk(2, dim=-1)
            x = x + linear["down"](F.silu(gate) * up)
        return self.head(model.norm(x))

    def _native_step(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, slot: int,
                     mask: torch.Tensor) -> torch.Tensor:
        """The same step on r1lab's C kernels (``native_kernels``): each residual add is fused into the RMSNorm
        after it, rotary embedding into the cache write, SiLU into the gated product; the matmuls are unchanged."""
        R, D, ops = x.shape[0], self.head_dim, self.kernels
        cos, sin = cos.reshape(R, D), sin.reshape(R, D)
        norms = [w["norm_in"] for w in self.layers[1:]] + [self.model.model.norm]  # the norm after each layer
        first = self.layers[0]["norm_in"]
        h = ops.add_rms_norm(x, None, first.weight, first.variance_epsilon)  # x: the residual stream, updated in place
        for i, (w, linear, next_norm) in enumerate(zip(self.layers, self.linears, norms)):
            q = ops.rotary_to_cache(linear["qkv"](h), cos, sin, self.k[i], self.v[i], slot, self.n_heads)
            out = ops.attention(q, self.k[i], self.v[i], mask, self.scale, self.scores)
            h = ops.add_rms_norm(x, linear["o"](out), w["norm_post"].weight, w["norm_post"].variance_epsilon)
            delta = linear["down"](ops.swiglu(linear["gate_up"](h)))
            h = ops.add_rms_norm(x, delta, next_norm.weight, next_norm.variance_epsilon)
        return self.head(h)
