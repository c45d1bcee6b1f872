"""Causal depthwise conv1d + bias + SiLU (the Mamba block's conv): public op and backend dispatch.

    from icllib.ops.causal_conv1d import causal_conv1d_silu
    y = causal_conv1d_silu(x, weight, bias)   # x [B, L, E] (any strides), weight [E, K], bias [E] -> [B, L, E]

Backends: "ref" (pure torch, `ref.py`: K shifted multiply-adds, then F.silu), "triton" (`triton.py`: one fused
kernel forward, one backward; imported lazily, so this package imports on machines without Triton), "auto" (Triton
for CUDA tensors when Triton imports and K <= MAX_K, else the reference). Asking for "triton" when Triton is missing
raises ImportError with the install hint; nothing falls back silently.
"""

from __future__ import annotations

import importlib.util
import logging

import torch
from torch import Tensor

from icllib.ops.causal_conv1d.ref import causal_conv1d_silu_ref, causal_depthwise_conv

__all__ = ["causal_conv1d_silu", "causal_conv1d_silu_ref", "causal_depthwise_conv", "last_backend",
           "triton_available", "BACKENDS", "MAX_K"]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "ref", "triton")
MAX_K = 16  # the Triton kernels unroll the K taps (K² loads per tile in the backward); triton.MAX_K matches
_INSTALL_HINT = "the Triton backend of causal_conv1d_silu needs Triton (Linux): pip install icllib[triton]"
_last_backend: str | None = None
_TRITON_FOUND = importlib.util.find_spec("triton") is not None  # looked up once, without importing triton


def triton_available() -> bool:
    """True when the `triton` package can be imported (checked without importing it)."""
    return _TRITON_FOUND


def last_backend() -> str | None:
    """The backend ("ref" or "triton") that ran the most recent `causal_conv1d_silu` call in this process, or None."""
    return _last_backend


def resolve_backend(backend: str, x: Tensor, K: int) -> str:
    """Map "auto" to a concrete backend for x and K taps; validate the name; raise if Triton is asked but missing."""
    if backend not in BACKENDS:
        raise ValueError(f"causal_conv1d_silu: backend={backend!r} is not one of {BACKENDS}")
    if backend == "auto":
        return "triton" if x.is_cuda and triton_available() and K <= MAX_K else "ref"
    if backend == "triton":
        if not triton_available():
            raise ImportError(_INSTALL_HINT)
        if K > MAX_K:
            raise ValueError(f"causal_conv1d_silu: the Triton backend takes K <= {MAX_K} taps, got K={K}")
    return backend


def causal_conv1d_silu(
    x: Tensor, weight: Tensor, bias: Tensor | None, *, activation: bool = True, backend: str = "auto"
) -> Tensor:
    """Channels-last causal depthwise conv1d, bias and SiLU: `y[:, t] = silu(bias + Σ_k weight[:, k] x[:, t-(K-1)+k])`.

    Args:
        x: [B, L, E] (fp32, fp16 or bf16; any strides, e.g. a chunk of the in_proj output). Zeros before t = 0.
        weight: [E, K] depthwise taps (tap K-1 multiplies x[t]); may differ in dtype from x (fp32 under autocast).
        bias: [E] or None.
        activation: apply SiLU (else return the conv + bias).
        backend: "auto" | "ref" | "triton".

    Returns:
        y [B, L, E], contiguous, in x's dtype; fp32 maths inside. Gradients come back in each input's dtype.
    """
    _check_shapes(x, weight, bias)
    name = resolve_backend(backend, x, weight.shape[1])
    _record(name)
    if name == "triton":
        try:
            from icllib.ops.causal_conv1d.triton import causal_conv1d_silu_triton
        except ImportError as e:  # triton present but broken, or a missing dependency of it
            raise ImportError(f"{_INSTALL_HINT} ({e})") from e
        return causal_conv1d_silu_triton(x, weight, bias, activation)
    return causal_conv1d_silu_ref(x, weight, bias, activation)


def _record(name: str) -> None:
    global _last_backend
    if torch.compiler.is_compiling():  # inside torch.compile the choice is fixed at trace time; keep the trace pure
        return
    if _last_backend != name:
        log.debug("causal_conv1d_silu backend: %s", name)
    _last_backend = name


def _check_shapes(x: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    if x.dim() != 3:
        raise ValueError(f"causal_conv1d_silu: x must be [B, L, E], got shape {tuple(x.shape)}")
    E = x.shape[2]
    if weight.dim() != 2 or weight.shape[0] != E or weight.shape[1] < 1:
        raise ValueError(f"causal_conv1d_silu: weight must be [E={E}, K], got shape {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (E,):
        raise ValueError(f"causal_conv1d_silu: bias must have shape ({E},), got {tuple(bias.shape)}")
