"""Triton causal depthwise conv1d (+ bias + SiLU): forward and backward kernels, launchers, torch.library ops.

Layout (fla-style, top to bottom): kernels -> launchers -> torch.library custom ops (+ fake impls and autograd)
-> `causal_conv1d_silu_triton`, the function the dispatcher in `__init__.py` calls. `ref.py` is the spec.

Both kernels see x [B, L, E] as B·L flat rows r = b·L + t (any strides; E is the fast axis, so a program's loads are
vectors along E) and tile it in [BT rows, BE channels] blocks. A tile may straddle two sequences: every tap is masked
by its own row's t, so the zero padding before t = 0 (and past t = L - 1 in the backward) is per row.

Forward (`_causal_conv1d_fwd_kernel`): one program per tile; K shifted loads of x, s = bias + Σ_k w_k x[t-(K-1)+k]
in fp32, y = silu(s) stored contiguous in x's dtype. One kernel replaces K multiplies, K-1 adds, the bias add, the
SiLU and their K-1 intermediate tensors.

Backward (`_causal_conv1d_bwd_kernel`): recompute s instead of saving it, ds = dy · silu'(s), and
    dx[t]     = Σ_j w[K-1-j] · ds[t + j]          (the anti-causal conv; ds at t + j recomputed from x)
    dw[e, k]  = Σ_{b,t} ds[t] · x[t-(K-1)+k]      dbias[e] = Σ_{b,t} ds[t]
A fixed number P of programs per channel block walks the row tiles (tile i goes to program i mod P), accumulates dw
and dbias in fp32 registers, and writes one partial per program ([P, K, E] and [P, E]); torch sums the P partials.
No atomics, and the assignment depends only on the shape and the device, so repeated backwards agree bitwise.

K is unrolled (tl.static_range), so the kernels are for small K (the Mamba conv has K = 4); see MAX_K.
Under TRITON_INTERPRET=1 (CPU CI) the launchers use small fixed configs; on a GPU they use `CONFIGS`.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl
from torch import Tensor

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
MAX_K = 16  # taps are unrolled: the backward issues K² shifted loads per tile

# Launch configs per input element size (4: fp32, 2: bf16/fp16). BT: flat rows (b, t) per tile; BE: channels per
# tile; PROGS_PER_SM: backward programs per SM (over all channel blocks) that share the row tiles.
CONFIGS: dict[str, dict[int, dict[str, int]]] = {
    "fwd": {4: {"BT": 32, "BE": 64, "num_warps": 4}, 2: {"BT": 32, "BE": 128, "num_warps": 4}},
    "bwd": {4: {"BT": 32, "BE": 64, "num_warps": 4, "PROGS_PER_SM": 4},
            2: {"BT": 32, "BE": 64, "num_warps": 4, "PROGS_PER_SM": 4}},
}
if _INTERPRET:
    CONFIGS = {"fwd": {es: {"BT": 8, "BE": 16, "num_warps": 1} for es in (4, 2)},
               "bwd": {es: {"BT": 8, "BE": 16, "num_warps": 1, "PROGS_PER_SM": 1} for es in (4, 2)}}


def _config(kind: str, dtype: torch.dtype) -> dict[str, int]:
    return dict(CONFIGS[kind][4 if dtype.itemsize >= 4 else 2])


@functools.cache
def _sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (a property read, no sync); 2 for CPU (the interpreter)."""
    if device.type != "cuda":
        return 2
    return torch.cuda.get_device_properties(device).multi_processor_count


# --------------------------------------------------------------------------------------------------------- kernels


@triton.jit
def _causal_conv1d_fwd_kernel(
    x, w, bias, y,
    n_rows, L, E,
    s_x_b, s_x_l, s_x_e, s_w_e, s_w_k, s_bias,
    K: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr, BT: tl.constexpr, BE: tl.constexpr,
):
    """Grid (cdiv(B·L, BT), cdiv(E, BE)): one [BT, BE] tile of y per program."""
    i_r, i_e = tl.program_id(0), tl.program_id(1)
    o_r = i_r * BT + tl.arange(0, BT).to(tl.int64)  # [BT] flat rows b·L + t (int64: B·L·E may pass 2**31)
    o_e = i_e * BE + tl.arange(0, BE)  # [BE]
    m_r, m_e = o_r < n_rows, o_e < E
    o_t = o_r % L  # [BT]
    p_x = x + (o_r // L) * s_x_b + o_t * s_x_l  # [BT] row starts
    b_s = tl.zeros([BT, BE], dtype=tl.float32)
    for k in tl.static_range(K):
        shift = K - 1 - k  # tap k reads x[t - shift]
        b_w = tl.load(w + o_e * s_w_e + k * s_w_k, mask=m_e, other=0.0).to(tl.float32)  # [BE]
        m_x = (m_r & (o_t >= shift))[:, None] & m_e[None, :]
        b_x = tl.load(p_x[:, None] - shift * s_x_l + o_e[None, :] * s_x_e, mask=m_x, other=0.0).to(tl.float32)
        b_s += b_x * b_w[None, :]
    if HAS_BIAS:
        b_s += tl.load(bias + o_e * s_bias, mask=m_e, other=0.0).to(tl.float32)[None, :]
    if ACT:
        b_s = b_s * tl.sigmoid(b_s)
    m = m_r[:, None] & m_e[None, :]
    tl.store(y + o_r[:, None] * E + o_e[None, :], b_s.to(y.dtype.element_ty), mask=m)  # y: contiguous [B, L, E]


@triton.jit
def _causal_conv1d_bwd_kernel(
    x, w, bias, dy, dx, dw_part, db_part,
    n_rows, L, E, n_tiles,
    s_x_b, s_x_l, s_x_e, s_w_e, s_w_k, s_bias, s_dy_b, s_dy_l, s_dy_e,
    K: tl.constexpr, BK: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
    BT: tl.constexpr, BE: tl.constexpr,
):
    """Grid (P, cdiv(E, BE)): program p takes row tiles p, p + P, ...; writes dx for them and its dw/dbias partial."""
    i_p, i_e = tl.program_id(0), tl.program_id(1)
    n_p = tl.num_programs(0)
    o_e = i_e * BE + tl.arange(0, BE)  # [BE]
    m_e = o_e < E
    o_k = tl.arange(0, BK)  # [BK]
    if HAS_BIAS:
        b_bias = tl.load(bias + o_e * s_bias, mask=m_e, other=0.0).to(tl.float32)  # [BE]
    b_dw = tl.zeros([BK, BE], dtype=tl.float32)  # Σ ds · x for each tap
    b_db = tl.zeros([BE], dtype=tl.float32)
    for i_r in tl.range(i_p, n_tiles, n_p):
        o_r = i_r * BT + tl.arange(0, BT).to(tl.int64)  # [BT]
        m_r = o_r < n_rows
        o_t = o_r % L
        o_b = o_r // L
        p_x = x + o_b * s_x_b + o_t * s_x_l  # [BT]
        p_dy = dy + o_b * s_dy_b + o_t * s_dy_l
        b_dx = tl.zeros([BT, BE], dtype=tl.float32)
        for j in tl.static_range(K):  # ds at t + j, which reaches dx[t] through tap K-1-j
            m_j = m_r & (o_t + j < L)  # [BT]: t + j still inside this row's sequence
            b_s = tl.zeros([BT, BE], dtype=tl.float32)
            for k in tl.static_range(K):  # s[t + j] = Σ_k w_k x[t + j - (K-1) + k]
                off = j - (K - 1) + k
                b_w = tl.load(w + o_e * s_w_e + k * s_w_k, mask=m_e, other=0.0).to(tl.float32)
                m_x = (m_j & (o_t + off >= 0))[:, None] & m_e[None, :]
                b_x = tl.load(p_x[:, None] + off * s_x_l + o_e[None, :] * s_x_e, mask=m_x, other=0.0)
                b_s += b_x.to(tl.float32) * b_w[None, :]
            if HAS_BIAS:
                b_s += b_bias[None, :]
            m_dy = m_j[:, None] & m_e[None, :]
            b_ds = tl.load(p_dy[:, None] + j * s_dy_l + o_e[None, :] * s_dy_e, mask=m_dy, other=0.0).to(tl.float32)
            if ACT:
                b_sig = tl.sigmoid(b_s)
                b_ds = b_ds * b_sig * (1.0 + b_s * (1.0 - b_sig))  # silu'(s) = σ(s)(1 + s(1 - σ(s)))
            b_wj = tl.load(w + o_e * s_w_e + (K - 1 - j) * s_w_k, mask=m_e, other=0.0).to(tl.float32)
            b_dx += b_ds * b_wj[None, :]
            if j == 0:  # ds at t itself: the weight and bias gradients
                b_db += tl.sum(b_ds, axis=0)
                for k in tl.static_range(K):
                    shift = K - 1 - k
                    m_x = (m_r & (o_t >= shift))[:, None] & m_e[None, :]
                    b_x = tl.load(p_x[:, None] - shift * s_x_l + o_e[None, :] * s_x_e, mask=m_x, other=0.0)
                    b_g = tl.sum(b_ds * b_x.to(tl.float32), axis=0)  # [BE]
                    b_dw += tl.where(o_k[:, None] == k, b_g[None, :], 0.0)
        m = m_r[:, None] & m_e[None, :]
        tl.store(dx + o_r[:, None] * E + o_e[None, :], b_dx.to(dx.dtype.element_ty), mask=m)  # dx: contiguous
    tl.store(dw_part + (i_p * K + o_k[:, None]) * E + o_e[None, :], b_dw, mask=(o_k < K)[:, None] & m_e[None, :])
    tl.store(db_part + i_p * E + o_e, b_db, mask=m_e)


# ------------------------------------------------------------------------------------------------------- launchers


def _strides(t: Tensor | None, n: int) -> tuple[int, ...]:
    return tuple(t.stride()) if t is not None else (0,) * n


def _fwd(x: Tensor, weight: Tensor, bias: Tensor | None, activation: bool, config: dict | None = None) -> Tensor:
    """Launch the forward. Returns y [B, L, E], contiguous, in x's dtype."""
    cfg = config or _config("fwd", x.dtype)
    batch, L, E = x.shape
    K = weight.shape[1]
    y = torch.empty(batch, L, E, device=x.device, dtype=x.dtype)
    n_rows = batch * L
    if n_rows == 0 or E == 0:
        return y
    grid = (triton.cdiv(n_rows, cfg["BT"]), triton.cdiv(E, cfg["BE"]))
    _causal_conv1d_fwd_kernel[grid](
        x, weight, bias, y,
        n_rows, L, E,
        *x.stride(), *weight.stride(), *_strides(bias, 1),
        K=K, HAS_BIAS=bias is not None, ACT=activation, BT=cfg["BT"], BE=cfg["BE"], num_warps=cfg["num_warps"],
    )
    return y


def _bwd(
    dy: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None, activation: bool, config: dict | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Launch the backward. Returns dx [B, L, E] (x's dtype), dweight [E, K] (weight's dtype), dbias [E] (bias's
    dtype; an empty tensor when bias is None, as a custom op returns tensors)."""
    cfg = config or _config("bwd", x.dtype)
    batch, L, E = x.shape
    K = weight.shape[1]
    dev = x.device
    dx = torch.empty(batch, L, E, device=dev, dtype=x.dtype)
    n_rows = batch * L
    BT, BE = cfg["BT"], cfg["BE"]
    n_tiles = triton.cdiv(n_rows, BT)
    n_eblk = triton.cdiv(E, BE)
    P = max(1, min(n_tiles, _sm_count(dev) * cfg["PROGS_PER_SM"] // max(1, n_eblk)))
    dw_part = torch.zeros(P, K, E, device=dev, dtype=torch.float32)  # [P, K, E]
    db_part = torch.zeros(P, E, device=dev, dtype=torch.float32)  # [P, E]
    if n_tiles > 0 and E > 0:
        _causal_conv1d_bwd_kernel[(P, n_eblk)](
            x, weight, bias, dy, dx, dw_part, db_part,
            n_rows, L, E, n_tiles,
            *x.stride(), *weight.stride(), *_strides(bias, 1), *dy.stride(),
            K=K, BK=triton.next_power_of_2(K), HAS_BIAS=bias is not None, ACT=activation, BT=BT, BE=BE,
            num_warps=cfg["num_warps"],
        )
    dweight = dw_part.sum(0).t().contiguous().to(weight.dtype)  # [E, K], contiguous as the fake impl says
    dbias = db_part.sum(0).to(bias.dtype) if bias is not None else torch.empty(0, device=dev)
    return dx, dweight, dbias


# ----------------------------------------------------------------------------------- torch.library ops + autograd


@torch.library.custom_op("icllib::causal_conv1d_fwd", mutates_args=())
def causal_conv1d_fwd_op(x: Tensor, weight: Tensor, bias: Tensor | None, activation: bool) -> Tensor:
    return _fwd(x, weight, bias, activation)


@causal_conv1d_fwd_op.register_fake
def _(x, weight, bias, activation):
    return x.new_empty(x.shape)  # contiguous, x's dtype


@torch.library.custom_op("icllib::causal_conv1d_bwd", mutates_args=())
def causal_conv1d_bwd_op(
    dy: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None, activation: bool
) -> tuple[Tensor, Tensor, Tensor]:
    return _bwd(dy, x, weight, bias, activation)


@causal_conv1d_bwd_op.register_fake
def _(dy, x, weight, bias, activation):
    dbias = torch.empty_like(bias) if bias is not None else x.new_empty(0, dtype=torch.float32)
    return x.new_empty(x.shape), weight.new_empty(weight.shape), dbias


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, activation = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.activation = activation


def _backward(ctx, dy: Tensor):
    x, weight, bias = ctx.saved_tensors
    dx, dweight, dbias = causal_conv1d_bwd_op(dy, x, weight, bias, ctx.activation)
    return dx, dweight, dbias if bias is not None else None, None


torch.library.register_autograd("icllib::causal_conv1d_fwd", _backward, setup_context=_setup_context)


# ---------------------------------------------------------------------------------------------------- public entry


def causal_conv1d_silu_triton(x: Tensor, weight: Tensor, bias: Tensor | None, activation: bool = True) -> Tensor:
    """Triton causal depthwise conv1d (+ SiLU); same contract as `causal_conv1d_silu_ref`."""
    return causal_conv1d_fwd_op(x, weight, bias, activation)
