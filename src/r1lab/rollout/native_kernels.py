"""Decode kernels r1lab compiles itself: C sources in ``rollout/native/``, built once per machine and source
version with the system C compiler and loaded with ctypes.

Only what PyTorch has no fast form for lives here (the source's header says why; benchmarks/decode_kernels.py
measures it): a bf16 or fp32 decode step's attention and the elementwise work between its matmuls. The caller
(``LlamaDecoder``) checks that they apply (CPU, bf16 or fp32, ``attention_applies``) and otherwise runs its PyTorch
step, as it does when no C compiler is installed or when ``R1LAB_NATIVE_KERNELS=0``; ``unavailable_reason()`` says
which.

The build: ``$CC`` (default ``cc``) with ``-O3 -march=native -fopenmp``, into
``$R1LAB_CACHE/kernels/<hash of source, flags, compiler and CPU>/``. ``-march=native`` makes the library specific
to this CPU, so the CPU's model and flags are part of the hash. OpenMP resolves to the libgomp.so.1 PyTorch has
already loaded, so one thread pool serves both and ``torch.set_num_threads`` sets the kernels' threads too.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).parent / "native" / "decode_kernels.c"
TYPED_SOURCE = SOURCE.with_name("decode_kernels_typed.h")  # the kernels, included by SOURCE once per element type
FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]
LIBS = ["-lm"]  # after the source, where the linker looks for what it needs
_P, _I64, _F32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
_reason: str | None = None


def _cpu_identity() -> str:
    """Model name and flags of this CPU (what ``-march=native`` compiles for)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = [line for line in lines if line.startswith(("model name", "flags"))][:2]
    return "\n".join(wanted) or platform.machine()


def _build(compiler: str, flags: list[str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # build aside, then rename: concurrent runs are safe
        built = Path(tmp) / target.name
        result = subprocess.run([compiler, *flags, str(SOURCE), "-o", str(built), *LIBS], capture_output=True,
                                text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} failed to build {SOURCE.name} (exit status {result.returncode}) "
                               f"{result.stderr.strip()[-2000:]}")
        os.replace(built, target)


_SIGNATURES = {  # C function (without its type suffix) -> (result type, argument types)
    "r1lab_decode_attention": (ctypes.c_int, [_P, _I64, _P, _I64, _I64, _I64, _P, _I64, _I64, _I64, _P, _I64,
                                              _P, _I64, _I64, _I64, _I64, _I64, _F32, _P]),
    "r1lab_add_rms_norm": (None, [_P, _P, _P, _P, _I64, _I64, _F32]),
    "r1lab_rotary_to_cache": (None, [_P, _I64, _P, _P, _P, _P, _I64, _I64, _P, _I64, _I64, _I64, _I64, _I64,
                                     _I64, _I64, _I64]),
    "r1lab_swiglu": (None, [_P, _P, _I64, _I64]),
}
SUFFIXES = {torch.bfloat16: "bf16", torch.float32: "f32"}  # the element types the kernels are compiled for


def _library(group: int, head_dim: int) -> ctypes.CDLL:
    """Builds (once per machine, source and shape) and loads the library; raises with the reason it cannot."""
    if os.environ.get("R1LAB_NATIVE_KERNELS", "1") == "0":
        raise RuntimeError("disabled by R1LAB_NATIVE_KERNELS=0")
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise RuntimeError("no C compiler (set $CC or install gcc)")
    from r1lab.models.loading import cache_root

    flags = FLAGS + ([f"-DGROUP={group}", f"-DHEAD_DIM={head_dim}"] if group and head_dim else [])
    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), TYPED_SOURCE.read_bytes(), " ".join(flags + LIBS).encode(),
                                     compiler.encode(), _cpu_identity().encode()])).hexdigest()[:16]
    target = cache_root() / "kernels" / key / "libr1lab_decode.so"
    try:
        if not target.is_file():
            _build(compiler, flags, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        message = f"building the native decode kernels failed: {err}"
        warnings.warn(f"r1lab: {message}; decoding on PyTorch's ops instead", stacklevel=3)
        raise RuntimeError(message) from err
    for name, (result, args) in _SIGNATURES.items():
        for suffix in SUFFIXES.values():
            function = getattr(lib, f"{name}_{suffix}")
            function.restype, function.argtypes = result, args
    return lib


@functools.cache
def load(group: int = 0, head_dim: int = 0) -> DecodeKernels | None:
    """The kernels, with the attention specialised for ``group`` query heads per key/value head of ``head_dim``
    (0: no specialisation; every shape runs, more slowly). Built on first use; None when they cannot be had
    (``unavailable_reason`` says why)."""
    global _reason
    try:
        kernels = DecodeKernels(_library(group, head_dim))
    except RuntimeError as err:
        _reason = str(err)
        return None
    _reason = None
    return kernels


def unavailable_reason(group: int = 0, head_dim: int = 0) -> str | None:
    """Why ``load(group, head_dim)`` gives no kernels (None: it gives them)."""
    return None if load(group, head_dim) is not None else _reason


def attention_applies(heads: int, kv_heads: int, head_dim: int) -> bool:
    """Whether the attention kernel takes these head shapes (its stack buffers and 8-lane chunks)."""
    group = heads // kv_heads
    return heads % kv_heads == 0 and head_dim % 8 == 0 and group <= 64 and head_dim <= 512 and group * head_dim <= 2048


class DecodeKernels:
    """The loaded kernels. Every tensor is CPU bf16, or every tensor fp32 (the attention's scratch is fp32 either
    way), with contiguous rows; each call runs the kernel compiled for its tensors' dtype."""

    def __init__(self, lib: ctypes.CDLL):
        self._lib = lib

    def _kernel(self, name: str, dtype: torch.dtype):
        if dtype not in SUFFIXES:
            raise TypeError(f"{name}: the kernels take {' or '.join(map(str, SUFFIXES))} tensors, not {dtype}")
        return getattr(self._lib, f"{name}_{SUFFIXES[dtype]}")

    def add_rms_norm(self, x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor,
                     eps: float) -> torch.Tensor:
        """HF's LlamaRMSNorm of the (rows, dim) residual stream ``x``, after ``x += delta`` in place when ``delta``
        is given. Returns the normalised rows."""
        out = torch.empty_like(x)
        self._kernel("r1lab_add_rms_norm", x.dtype)(x.data_ptr(), None if delta is None else delta.data_ptr(),
                                          weight.data_ptr(), out.data_ptr(), x.shape[0], x.shape[1], eps)
        return out

    def rotary_to_cache(self, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, k_cache: torch.Tensor,
                        v_cache: torch.Tensor, slot: int, heads: int) -> torch.Tensor:
        """HF's rotary embedding on the fused (rows, (heads + 2 kv_heads) * dim) q/k/v output of one token per
        row: returns the (rows, heads, dim) queries and writes the rotated key and the value to cache ``slot``.
        ``cos``, ``sin``: (rows, dim); caches (rows, kv_heads, slots, dim), both laid out alike."""
        rows, kv_heads, _, dim = k_cache.shape
        q = torch.empty(rows, heads, dim, dtype=qkv.dtype)
        self._kernel("r1lab_rotary_to_cache", qkv.dtype)(
            qkv.data_ptr(), qkv.stride(0), cos.data_ptr(), sin.data_ptr(), q.data_ptr(), k_cache.data_ptr(),
            k_cache.stride(0), k_cache.stride(1), v_cache.data_ptr(), v_cache.stride(0), v_cache.stride(1), slot,
            k_cache.stride(2), rows, heads, kv_heads, dim)
        return q

    def swiglu(self, gate_up: torch.Tensor) -> torch.Tensor:
        """silu(gate) * up of the fused (rows, 2 * width) gate/up output, rounded as PyTorch's ops in its dtype
        round."""
        rows, width = gate_up.shape[0], gate_up.shape[1] // 2
        out = torch.empty(rows, width, dtype=gate_up.dtype)
        self._kernel("r1lab_swiglu", gate_up.dtype)(gate_up.data_ptr(), out.data_ptr(), rows, width)
        return out

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float,
                  scratch: torch.Tensor) -> torch.Tensor:
        """Attention of one new query token per row over a key/value cache.

        ``q`` (rows, heads, head_dim) contiguous, query head ``kv * group + g`` reading key/value head ``kv`` (HF's
        GQA order); ``k``, ``v`` (rows, kv_heads, slots, head_dim), of which the first ``mask.shape[1]`` slots are
        read; ``mask`` (rows, n_slots) bool, True where a row may attend; ``scratch`` float32 of at least
        rows * heads * n_slots elements. Shapes must pass ``attention_applies``. Returns (rows, heads * head_dim).
        """
        rows, heads, dim = q.shape
        n_slots = mask.shape[1]
        if scratch.numel() < rows * heads * n_slots or mask.stride(1) != 1 or k.stride(3) != 1 or v.stride(3) != 1:
            raise ValueError("attention: scratch too small or a non-contiguous innermost dimension")
        out = torch.empty(rows, heads * dim, dtype=q.dtype)
        status = self._kernel("r1lab_decode_attention", q.dtype)(
            q.data_ptr(), q.stride(0), k.data_ptr(), k.stride(0), k.stride(1), k.stride(2),
            v.data_ptr(), v.stride(0), v.stride(1), v.stride(2), mask.data_ptr(), mask.stride(0),
            out.data_ptr(), rows, k.shape[1], heads // k.shape[1], dim, n_slots, scale, scratch.data_ptr())
        if status != 0:
            raise ValueError(f"attention: head shapes {heads} / {k.shape[1]} x {dim} not supported")
        return out
