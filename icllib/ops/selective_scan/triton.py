"""Triton selective scan: forward and backward kernels, launchers, torch.library ops, autograd.

Layout (fla-style, top to bottom): launch configs -> kernels -> launchers -> torch.library custom ops (+ fake impls
and autograd) -> `selective_scan_triton`, the function the dispatcher in `__init__.py` calls. The maths and the
backward derivation are in kernels/README.md; `ref.py` is the spec these kernels are tested against.

Forward (`..._fwd_kernel`): one program per (block of BD channels, batch row); the state h [BD, N] lives in fp32
registers and a loop walks the L steps: a = exp2(Δ·A·log2 e), h = a·h + Δ·u·B, y = C·h (+ D·u)(· silu z).
No [B, L, D, N] tensor is ever written: only `out`, the final state, and (when a backward will follow) the state at
the end of every chunk of T steps, `ckpt` [B, L/T, D, N] fp32 (the Mamba paper's recompute argument).

Backward (`..._bwd_kernel`): the same work items, (channel block, batch row), walk the chunks in reverse. Per chunk:
(1) recompute the T states from the checkpoint before the chunk with the forward recurrence, parking them in a
per-program fp32 scratch [T+1, BD, N] (L1/L2-resident, not a [B, L, D, N] tensor); (2) walk the chunk backwards with
the adjoint λ_t = dy_t·C_t + a_{t+1}·λ_{t+1} in registers (carried as κ = a_t·λ_t), reading h_t and h_{t-1} from the
scratch, and emit every gradient of step t. The grid is persistent: at most a few programs per SM, each looping over
work items, so the scratch is O(programs), not O(B·D) (at B = 16384 it would be tens of GB). dB and dC sum over
channels: by fp32 atomics into [B, L, N], or (deterministic, or the config's "partial") by per-channel-block partial
sums reduced in torch afterwards. dA, dD and d(delta_bias) are reduced over L in registers and over B in torch.

Offsets: every term that scales with the batch index is int64 (the batch row's base pointer is formed once per work
item); offsets inside one batch row stay int32, so one row's L·D, (L/T)·D·N and L·N must stay below 2^31.

Launch configs: `TUNED`, keyed by kind, element size and a shape class (`shape_class`), then `launch_config` shrinks
BD when the grid would not fill the GPU. Under TRITON_INTERPRET=1 (CPU CI) small fixed configs are used instead.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl
from torch import Tensor

LOG2E = tl.constexpr(1.4426950408889634)
_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

# ---------------------------------------------------------------------------------------------------- launch configs

# Shape classes: "short" (L <= SHORT_L: the ICL tasks, L = 82..128 tokens; the grid's per-program prologue and the
# launch matter) and "long". Keys of TUNED: (element size: 4 fp32, 2 bf16/fp16, shape class).
# BD: channels per program; num_warps; NS: software-pipelining depth of the step loops (forward NS == 0: chunks of T
# unrolled steps); T (backward only, shared with the forward): chunk length = checkpoint interval of the forward =
# tile length of the backward; partial (backward only): dB/dC by per-channel-block partial sums instead of atomics.
# "long" entries: from `kernels/bench_selective_scan.py --tune`; "short" entries: from its `--sweep-icl` (it prints a
# TUNED-shaped table to paste here); kernels/README.md says on which GPU.
SHORT_L = 256
TUNED: dict[str, dict[tuple[int, str], dict[str, int]]] = {
    "fwd": {
        (4, "long"): {"BD": 32, "num_warps": 1, "NS": 5},
        (2, "long"): {"BD": 64, "num_warps": 1, "NS": 3},
        (4, "short"): {"BD": 32, "num_warps": 1, "NS": 3},
        (2, "short"): {"BD": 64, "num_warps": 1, "NS": 3},
    },
    "bwd": {
        (4, "long"): {"BD": 32, "num_warps": 1, "NS": 3, "T": 64, "partial": 0},
        (2, "long"): {"BD": 16, "num_warps": 1, "NS": 1, "T": 16, "partial": 0},
        (4, "short"): {"BD": 32, "num_warps": 1, "NS": 3, "T": 32, "partial": 1},
        (2, "short"): {"BD": 32, "num_warps": 1, "NS": 3, "T": 32, "partial": 0},
    },
}
# Grid filling: BD is halved (down to MIN_BD) while batch·cdiv(D, BD) < FILL_PROGRAMS_PER_SM × SMs.
FILL_PROGRAMS_PER_SM = 1.0
MIN_BD = 8
# Persistent backward: at most this many programs per SM (each loops over work items and owns one scratch slab).
BWD_PROGRAMS_PER_SM = 32
if _INTERPRET:  # CPU CI: small blocks; 3 backward programs, so the persistent loop runs several items per program
    TUNED = {"fwd": {k: {"BD": 8, "num_warps": 1, "NS": 0} for k in TUNED["fwd"]},
             "bwd": {k: {"BD": 8, "num_warps": 1, "NS": 1, "T": 8, "partial": 0} for k in TUNED["bwd"]}}


def shape_class(L: int) -> str:
    """The key of `TUNED` for sequence length L."""
    return "short" if L <= SHORT_L else "long"


@functools.cache
def _num_sms(device: torch.device) -> int:
    if _INTERPRET or device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


def launch_config(kind: str, dtype: torch.dtype, batch: int, L: int, Dim: int, N: int,
                  device: torch.device | None = None) -> dict[str, int]:
    """The config for one call: TUNED[kind][(element size, shape class)], tuned at N = 16; BD shrinks for larger N
    (so the [BD, N] state keeps its register size) and, on a GPU, while the grid is smaller than
    FILL_PROGRAMS_PER_SM programs per SM (small batches). T depends on dtype and L only (the fake impl needs it)."""
    cfg = dict(TUNED[kind][(4 if dtype.itemsize >= 4 else 2, shape_class(L))])
    BN = triton.next_power_of_2(N)
    if BN > 16:
        cfg["BD"] = max(4, cfg["BD"] * 16 // BN)
    if device is not None and not _INTERPRET:
        target = FILL_PROGRAMS_PER_SM * _num_sms(device)
        while cfg["BD"] > MIN_BD and batch * triton.cdiv(Dim, cfg["BD"]) < target:
            cfg["BD"] //= 2
    return cfg


def split_chunk(L: int, T_max: int) -> int:
    """The chunk length for L steps with chunks of at most T_max: the fewest chunks, split evenly and rounded up to a
    multiple of 8 (the steps of the last chunk past L are masked but still walked; T is a constexpr, so the rounding
    bounds the number of compiled variants). L = 82, T_max = 64: 2 chunks of 48 (96 steps walked, not 128)."""
    if L >= T_max:
        n = triton.cdiv(L, T_max)
        return min(T_max, triton.cdiv(triton.cdiv(L, n), 8) * 8)
    return min(T_max, max(8, triton.cdiv(L, 8) * 8))


def _chunk(dtype: torch.dtype, L: int) -> int:
    """Checkpoint interval T of the forward = chunk length of the backward: the backward config's T, split for L."""
    return split_chunk(L, TUNED["bwd"][(4 if dtype.itemsize >= 4 else 2, shape_class(L))]["T"])


# --------------------------------------------------------------------------------------------------------- kernels


@triton.jit
def _softplus(x):
    # log1p(exp(x)) with the Kahan correction for small exp(x); identity above 20 (torch's threshold)
    e = tl.exp(tl.minimum(x, 20.0))
    w = 1.0 + e
    lp = tl.where(w == 1.0, e, tl.log(w) * (e / (w - 1.0)))
    return tl.where(x > 20.0, x, lp)


@triton.jit
def _fwd_step(
    t, b_h, u, delta, Bm, Cm, z, out, o_d, o_n, m_d, m_n, b_A, b_Dv, b_bias, L, Dim,
    s_u_l, s_u_d, s_dt_l, s_dt_d, s_z_l, s_z_d, s_B_l, s_B_n, s_C_l, s_C_n,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
):
    """One time step t for BD channels of one batch row (the pointers are that row's bases): load u, Δ, B, C (z)
    at t, update h [BD, N], store out[t]. Returns h."""
    m_dt = m_d & ((o_d * 0 + t) < L)  # [BD]: channel in range and step in range
    m_nt = m_n & ((o_n * 0 + t) < L)
    b_u = tl.load(u + t * s_u_l + o_d * s_u_d, mask=m_dt, other=0.0).to(tl.float32)
    b_dt = tl.load(delta + t * s_dt_l + o_d * s_dt_d, mask=m_dt, other=0.0).to(tl.float32)
    b_B = tl.load(Bm + t * s_B_l + o_n * s_B_n, mask=m_nt, other=0.0).to(tl.float32)
    b_C = tl.load(Cm + t * s_C_l + o_n * s_C_n, mask=m_nt, other=0.0).to(tl.float32)
    if HAS_Z:
        b_z = tl.load(z + t * s_z_l + o_d * s_z_d, mask=m_dt, other=0.0).to(tl.float32)
    if HAS_BIAS:
        b_dt += b_bias
    if SOFTPLUS:
        b_dt = _softplus(b_dt)
    b_dt = tl.where(m_dt, b_dt, 0.0)  # steps past L: a = 1, x = 0, the state is left alone
    b_a = tl.exp2(b_dt[:, None] * b_A)  # [BD, N]
    b_h = b_a * b_h + (b_dt * b_u)[:, None] * b_B[None, :]
    b_y = tl.sum(b_h * b_C[None, :], axis=1)  # [BD]
    if HAS_D:
        b_y += b_Dv * b_u
    if HAS_Z:
        b_y = b_y * b_z * tl.sigmoid(b_z)
    tl.store(out + t * Dim + o_d, b_y.to(out.dtype.element_ty), mask=m_dt)  # out: contiguous [L, D] per row
    return b_h


@triton.jit
def _selective_scan_fwd_kernel(
    u, delta, A, Bm, Cm, Dv, z, bias, out, ckpt, last,
    L, Dim, N, n_chunks,
    s_u_b, s_u_l, s_u_d, s_dt_b, s_dt_l, s_dt_d, s_z_b, s_z_l, s_z_d,
    s_B_b, s_B_l, s_B_n, s_C_b, s_C_l, s_C_n, s_A_d, s_A_n, s_D, s_bias,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    SAVE_CKPT: tl.constexpr, BD: tl.constexpr, BN: tl.constexpr, T: tl.constexpr, NS: tl.constexpr,
):
    """Grid (cdiv(D, BD) · B,): program i_d + i_b·cdiv(D, BD). NS == 0: chunks of T unrolled steps; NS > 0: one flat
    loop over L that Triton software-pipelines NS deep (loads of later steps in flight), the checkpoint stored by a
    masked store."""
    n_dblk = tl.cdiv(Dim, BD)
    pid = tl.program_id(0)
    i_d = pid % n_dblk
    i_b = (pid // n_dblk).to(tl.int64)  # batch-scaled offsets in int64: B·L·D may exceed 2^31
    u += i_b * s_u_b
    delta += i_b * s_dt_b
    Bm += i_b * s_B_b
    Cm += i_b * s_C_b
    if HAS_Z:
        z += i_b * s_z_b
    out += i_b * L * Dim
    o_d = i_d * BD + tl.arange(0, BD)
    o_n = tl.arange(0, BN)
    m_d, m_n = o_d < Dim, o_n < N
    m_dn = m_d[:, None] & m_n[None, :]
    o_dn = o_d[:, None] * N + o_n[None, :]  # [BD, N] offsets in a [D, N] plane
    b_A = tl.load(A + o_d[:, None] * s_A_d + o_n[None, :] * s_A_n, mask=m_dn, other=0.0).to(tl.float32) * LOG2E
    b_Dv = tl.load(Dv + o_d * s_D, mask=m_d, other=0.0).to(tl.float32) if HAS_D else o_d * 0.0
    b_bias = tl.load(bias + o_d * s_bias, mask=m_d, other=0.0).to(tl.float32) if HAS_BIAS else o_d * 0.0
    p_ck = ckpt + i_b * n_chunks * Dim * N + o_dn  # + chunk · D·N
    b_h = tl.zeros([BD, BN], dtype=tl.float32)  # [BD, N]
    if NS == 0:
        for i_c in range(n_chunks):
            for i in tl.static_range(T):
                b_h = _fwd_step(
                    i_c * T + i, b_h, u, delta, Bm, Cm, z, out, o_d, o_n, m_d, m_n, b_A, b_Dv, b_bias, L, Dim,
                    s_u_l, s_u_d, s_dt_l, s_dt_d, s_z_l, s_z_d, s_B_l, s_B_n, s_C_l, s_C_n,
                    HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS,
                )
            if SAVE_CKPT:
                tl.store(p_ck + i_c * Dim * N, b_h, mask=m_dn)
    else:
        for t in tl.range(0, L, num_stages=NS):
            b_h = _fwd_step(
                t, b_h, u, delta, Bm, Cm, z, out, o_d, o_n, m_d, m_n, b_A, b_Dv, b_bias, L, Dim,
                s_u_l, s_u_d, s_dt_l, s_dt_d, s_z_l, s_z_d, s_B_l, s_B_n, s_C_l, s_C_n,
                HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS,
            )
            if SAVE_CKPT:
                m_ck = ((o_d * 0 + t) % T == T - 1) | ((o_d * 0 + t) == L - 1)  # end of a chunk, or of the sequence
                tl.store(p_ck + (t // T) * Dim * N, b_h, mask=m_dn & m_ck[:, None])
    tl.store(last + i_b * Dim * N + o_dn, b_h, mask=m_dn)


@triton.jit
def _selective_scan_bwd_kernel(
    u, delta, A, Bm, Cm, Dv, z, bias, dout, ckpt, dlast, scratch,
    du, ddelta, dz, dA_part, dB_buf, dC_buf, dD_part, dbias_part,
    n_b, L, Dim, N, n_chunks,
    s_u_b, s_u_l, s_u_d, s_dt_b, s_dt_l, s_dt_d, s_z_b, s_z_l, s_z_d,
    s_B_b, s_B_l, s_B_n, s_C_b, s_C_l, s_C_n, s_A_d, s_A_n, s_D, s_bias,
    s_g_b, s_g_l, s_g_d,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_DLAST: tl.constexpr, PARTIAL: tl.constexpr, BD: tl.constexpr, BN: tl.constexpr, T: tl.constexpr,
    NS: tl.constexpr,
):
    """Persistent grid (P,): program p takes work items w = p, p + P, ... < cdiv(D, BD) · B, item w being channel
    block w % cdiv(D, BD) of batch row w // cdiv(D, BD). Per item, chunks in reverse; per chunk two sequential loops
    over its T steps:
    (1) recompute h_t from the checkpoint before the chunk and park it in this program's scratch [T+1, BD, N]
        (slot 0 holds the checkpoint, slot i+1 holds h at step i): a few KB, written and read back at once (L1/L2);
    (2) walk the steps backwards with the adjoint λ [BD, N] in registers: λ_t = dy_t C_t + κ, κ <- a_t λ_t."""
    n_dblk = tl.cdiv(Dim, BD)
    pid = tl.program_id(0)
    o_n = tl.arange(0, BN)
    m_n = o_n < N
    p_scr = scratch + pid.to(tl.int64) * ((T + 1) * BD * BN)  # this program's [T+1, BD, N] slots
    p_scr += tl.arange(0, BD)[:, None] * BN + o_n[None, :]
    for w in range(pid, n_dblk * n_b, tl.num_programs(0)):
        i_d = w % n_dblk
        i_b = (w // n_dblk).to(tl.int64)  # batch-scaled offsets in int64: B·L·D may exceed 2^31
        o_d = i_d * BD + tl.arange(0, BD)
        m_d = o_d < Dim
        m_dn = m_d[:, None] & m_n[None, :]
        o_dn = o_d[:, None] * N + o_n[None, :]  # [BD, N] offsets in a [D, N] plane
        # this item's batch row: base pointers (int64) once; offsets within the row stay int32
        p_u = u + i_b * s_u_b
        p_dt = delta + i_b * s_dt_b
        p_B = Bm + i_b * s_B_b
        p_C = Cm + i_b * s_C_b
        p_g = dout + i_b * s_g_b
        p_ck = ckpt + i_b * n_chunks * Dim * N + o_dn  # + chunk · D·N
        p_du = du + i_b * L * Dim
        p_ddt = ddelta + i_b * L * Dim
        if PARTIAL:  # partial sums [n_dblk, B, L, N], reduced in torch
            p_dB = dB_buf + (i_d * n_b + i_b) * L * N
            p_dC = dC_buf + (i_d * n_b + i_b) * L * N
        else:
            p_dB = dB_buf + i_b * L * N
            p_dC = dC_buf + i_b * L * N
        b_A = tl.load(A + o_d[:, None] * s_A_d + o_n[None, :] * s_A_n, mask=m_dn, other=0.0).to(tl.float32)
        b_A2 = b_A * LOG2E  # [BD, N]
        b_Dv = tl.load(Dv + o_d * s_D, mask=m_d, other=0.0).to(tl.float32) if HAS_D else o_d * 0.0
        b_bias = tl.load(bias + o_d * s_bias, mask=m_d, other=0.0).to(tl.float32) if HAS_BIAS else o_d * 0.0
        if HAS_DLAST:
            b_kappa = tl.load(dlast + i_b * Dim * N + o_dn, mask=m_dn, other=0.0).to(tl.float32)
        else:
            b_kappa = tl.zeros([BD, BN], dtype=tl.float32)  # a_{t+1} λ_{t+1}, flowing backwards in time
        b_dA = tl.zeros([BD, BN], dtype=tl.float32)
        b_dD = tl.zeros([BD], dtype=tl.float32)
        b_dbias = tl.zeros([BD], dtype=tl.float32)
        for j_c in range(n_chunks):
            i_c = n_chunks - 1 - j_c
            # ---- (1) recompute the chunk's states from its checkpoint
            b_h = tl.load(p_ck + (i_c - 1) * Dim * N, mask=m_dn & ((o_d * 0 + i_c) > 0)[:, None], other=0.0)
            tl.debug_barrier()  # the previous item's / chunk's reads of the scratch are done
            tl.store(p_scr, b_h)
            for i in tl.range(0, T, num_stages=NS):
                t = i_c * T + i
                m_dt = m_d & ((o_d * 0 + t) < L)
                m_nt = m_n & ((o_n * 0 + t) < L)
                b_u = tl.load(p_u + t * s_u_l + o_d * s_u_d, mask=m_dt, other=0.0).to(tl.float32)
                b_dt = tl.load(p_dt + t * s_dt_l + o_d * s_dt_d, mask=m_dt, other=0.0).to(tl.float32)
                b_B = tl.load(p_B + t * s_B_l + o_n * s_B_n, mask=m_nt, other=0.0).to(tl.float32)
                b_dt += b_bias
                if SOFTPLUS:
                    b_dt = _softplus(b_dt)
                b_dt = tl.where(m_dt, b_dt, 0.0)
                b_h = tl.exp2(b_dt[:, None] * b_A2) * b_h + (b_dt * b_u)[:, None] * b_B[None, :]
                tl.store(p_scr + (i + 1) * BD * BN, b_h)
            tl.debug_barrier()
            # ---- (2) reverse sweep over the chunk
            for k in tl.range(0, T, num_stages=NS):
                i = T - 1 - k
                t = i_c * T + i
                m_dt = m_d & ((o_d * 0 + t) < L)
                m_nt = m_n & ((o_n * 0 + t) < L)
                b_u = tl.load(p_u + t * s_u_l + o_d * s_u_d, mask=m_dt, other=0.0).to(tl.float32)
                b_dtr = tl.load(p_dt + t * s_dt_l + o_d * s_dt_d, mask=m_dt, other=0.0).to(tl.float32)
                b_g = tl.load(p_g + t * s_g_l + o_d * s_g_d, mask=m_dt, other=0.0).to(tl.float32)
                b_B = tl.load(p_B + t * s_B_l + o_n * s_B_n, mask=m_nt, other=0.0).to(tl.float32)
                b_C = tl.load(p_C + t * s_C_l + o_n * s_C_n, mask=m_nt, other=0.0).to(tl.float32)
                b_h = tl.load(p_scr + (i + 1) * BD * BN)  # h_t
                b_hp = tl.load(p_scr + i * BD * BN)  # h_{t-1}
                b_dtr += b_bias
                if SOFTPLUS:
                    b_sig = tl.sigmoid(b_dtr)
                    b_dt = _softplus(b_dtr)
                else:
                    b_dt = b_dtr
                b_dt = tl.where(m_dt, b_dt, 0.0)
                b_a = tl.exp2(b_dt[:, None] * b_A2)  # [BD, N]
                if HAS_Z:
                    b_z = tl.load(z + i_b * s_z_b + t * s_z_l + o_d * s_z_d, mask=m_dt, other=0.0).to(tl.float32)
                    b_y = tl.sum(b_h * b_C[None, :], axis=1) + b_Dv * b_u  # [BD]
                    b_sz = tl.sigmoid(b_z)
                    b_dz = b_g * b_y * b_sz * (1.0 + b_z * (1.0 - b_sz))
                    tl.store(dz + i_b * L * Dim + t * Dim + o_d, b_dz.to(dz.dtype.element_ty), mask=m_dt)
                    b_dy = b_g * b_z * b_sz
                else:
                    b_dy = b_g
                b_lam = b_dy[:, None] * b_C[None, :] + b_kappa  # λ_t [BD, N]
                b_lB = tl.sum(b_lam * b_B[None, :], axis=1)  # Σ_n λ B  [BD]
                b_lah = b_lam * b_a * b_hp  # λ_t a_t h_{t-1}  [BD, N]
                b_ddt = b_u * b_lB + tl.sum(b_lah * b_A, axis=1)
                b_dA += b_lah * b_dt[:, None]
                b_du = b_dt * b_lB + b_dy * b_Dv
                b_dD += b_dy * b_u
                if SOFTPLUS:
                    b_ddt = b_ddt * b_sig
                b_ddt = tl.where(m_dt, b_ddt, 0.0)
                b_dbias += b_ddt
                b_dC = tl.sum(b_dy[:, None] * b_h, axis=0)  # [N]
                b_dB = tl.sum(b_lam * (b_dt * b_u)[:, None], axis=0)  # [N]
                b_kappa = b_a * b_lam
                tl.store(p_du + t * Dim + o_d, b_du.to(du.dtype.element_ty), mask=m_dt)
                tl.store(p_ddt + t * Dim + o_d, b_ddt.to(ddelta.dtype.element_ty), mask=m_dt)
                if PARTIAL:
                    tl.store(p_dB + t * N + o_n, b_dB, mask=m_nt)
                    tl.store(p_dC + t * N + o_n, b_dC, mask=m_nt)
                else:
                    tl.atomic_add(p_dB + t * N + o_n, b_dB, mask=m_nt, sem="relaxed")
                    tl.atomic_add(p_dC + t * N + o_n, b_dC, mask=m_nt, sem="relaxed")
        p_part = i_b * Dim + o_d
        tl.store(dA_part + p_part[:, None] * N + o_n[None, :], b_dA, mask=m_dn)
        tl.store(dD_part + p_part, b_dD, mask=m_d)
        tl.store(dbias_part + p_part, b_dbias, mask=m_d)


# ------------------------------------------------------------------------------------------------------- launchers


def _n_chunks(L: int, T: int) -> int:
    return max(1, triton.cdiv(L, T))


def _strides(t: Tensor | None, n: int) -> tuple[int, ...]:
    return tuple(t.stride()) if t is not None else (0,) * n


def _fwd(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
    delta_bias: Tensor | None, delta_softplus: bool, save_ckpt: bool,
    config: dict | None = None, chunk: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Launch the forward. Returns out [B, L, D] (u's dtype), last state [B, D, N] fp32, ckpt [B, L/T, D, N] fp32.

    config / chunk: an explicit launch config (keys of TUNED["fwd"]) and checkpoint interval T, for sweeps; by default
    `launch_config` and `_chunk` (the backward must then be launched with the same T)."""
    batch, L, Dim = u.shape
    N = A.shape[1]
    cfg = config or launch_config("fwd", u.dtype, batch, L, Dim, N, u.device)
    T = chunk or _chunk(u.dtype, L)
    nc = _n_chunks(L, T)
    out = torch.empty(batch, L, Dim, device=u.device, dtype=u.dtype)
    last = torch.empty(batch, Dim, N, device=u.device, dtype=torch.float32)
    ckpt = (torch.empty(batch, nc, Dim, N, device=u.device, dtype=torch.float32) if save_ckpt
            else torch.empty(0, device=u.device, dtype=torch.float32))
    BD = cfg["BD"]
    grid = (triton.cdiv(Dim, BD) * batch,)
    _selective_scan_fwd_kernel[grid](
        u, delta, A, B, C, D, z, delta_bias, out, ckpt, last,
        L, Dim, N, nc,
        *u.stride(), *delta.stride(), *_strides(z, 3),
        *B.stride(), *C.stride(), *A.stride(), *_strides(D, 1), *_strides(delta_bias, 1),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
        SAVE_CKPT=save_ckpt, BD=BD, BN=triton.next_power_of_2(N), T=T, NS=cfg.get("NS", 0), num_warps=cfg["num_warps"],
    )
    return out, last, ckpt


def _bwd(
    dout: Tensor, dlast: Tensor | None, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Tensor | None, z: Tensor | None, delta_bias: Tensor | None, ckpt: Tensor, delta_softplus: bool,
    deterministic: bool, config: dict | None = None, chunk: int | None = None,
) -> tuple[Tensor, ...]:
    """Launch the backward. Returns du, ddelta, dA, dB, dC, dD, dz, dbias (absent inputs get empty tensors).

    config / chunk: explicit launch config (keys of TUNED["bwd"]; its "T" is ignored) and T, which must be the T the
    forward wrote `ckpt` with; by default `launch_config` and `_chunk`."""
    batch, L, Dim = u.shape
    N = A.shape[1]
    cfg = config or launch_config("bwd", u.dtype, batch, L, Dim, N, u.device)
    if dlast is not None:  # a gradient, not an input: autograd may hand it over expanded (stride 0), e.g. last.sum()
        dlast = dlast.contiguous()
    T = chunk or _chunk(u.dtype, L)
    nc = _n_chunks(L, T)
    if ckpt.shape[1] != nc:
        raise ValueError(f"selective_scan backward: ckpt has {ckpt.shape[1]} chunks, T={T} needs {nc}")
    BD = cfg["BD"]
    n_dblk = triton.cdiv(Dim, BD)
    partial = deterministic or bool(cfg.get("partial", 0))
    dev = u.device
    du = torch.empty(batch, L, Dim, device=dev, dtype=u.dtype)
    ddelta = torch.empty(batch, L, Dim, device=dev, dtype=delta.dtype)
    dz = torch.empty(batch, L, Dim, device=dev, dtype=z.dtype) if z is not None else torch.empty(0, device=dev)
    if partial:
        dB_buf = torch.empty(n_dblk, batch, L, N, device=dev, dtype=torch.float32)
        dC_buf = torch.empty(n_dblk, batch, L, N, device=dev, dtype=torch.float32)
    else:
        dB_buf = torch.zeros(batch, L, N, device=dev, dtype=torch.float32)
        dC_buf = torch.zeros(batch, L, N, device=dev, dtype=torch.float32)
    BN = triton.next_power_of_2(N)
    n_work = n_dblk * batch
    n_prog = min(n_work, 3 if _INTERPRET else BWD_PROGRAMS_PER_SM * _num_sms(dev))  # persistent grid
    scratch = torch.empty(n_prog * (T + 1) * BD * BN, device=dev, dtype=torch.float32)
    dA_part = torch.empty(batch, Dim, N, device=dev, dtype=torch.float32)
    dD_part = torch.empty(batch, Dim, device=dev, dtype=torch.float32)
    dbias_part = torch.empty(batch, Dim, device=dev, dtype=torch.float32)
    _selective_scan_bwd_kernel[(n_prog,)](
        u, delta, A, B, C, D, z, delta_bias, dout, ckpt, dlast, scratch,
        du, ddelta, dz, dA_part, dB_buf, dC_buf, dD_part, dbias_part,
        batch, L, Dim, N, nc,
        *u.stride(), *delta.stride(), *_strides(z, 3),
        *B.stride(), *C.stride(), *A.stride(), *_strides(D, 1), *_strides(delta_bias, 1),
        *dout.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
        HAS_DLAST=dlast is not None, PARTIAL=partial,
        BD=BD, BN=BN, T=T, NS=cfg.get("NS", 1), num_warps=cfg["num_warps"],
    )
    if partial:
        dB_buf, dC_buf = dB_buf.sum(0), dC_buf.sum(0)
    dA = dA_part.sum(0).to(A.dtype)
    dD = dD_part.sum(0).to(D.dtype) if D is not None else torch.empty(0, device=dev)  # a custom op's outputs
    dbias = dbias_part.sum(0).to(delta_bias.dtype) if delta_bias is not None else torch.empty(0, device=dev)
    return du, ddelta, dA, dB_buf.to(B.dtype), dC_buf.to(C.dtype), dD, dz, dbias


# ----------------------------------------------------------------------------------- torch.library ops + autograd


@torch.library.custom_op("icllib::selective_scan_fwd", mutates_args=())
def selective_scan_fwd_op(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
    delta_bias: Tensor | None, delta_softplus: bool, save_ckpt: bool, deterministic: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    # `deterministic` only matters to the backward; it is an input here so the autograd context can keep it
    return _fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, save_ckpt)


@selective_scan_fwd_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, save_ckpt, deterministic):
    batch, L, Dim = u.shape
    N = A.shape[1]
    out = u.new_empty(batch, L, Dim)
    last = u.new_empty(batch, Dim, N, dtype=torch.float32)
    ckpt = (u.new_empty(batch, _n_chunks(L, _chunk(u.dtype, L)), Dim, N, dtype=torch.float32) if save_ckpt
            else u.new_empty(0, dtype=torch.float32))
    return out, last, ckpt


@torch.library.custom_op("icllib::selective_scan_bwd", mutates_args=())
def selective_scan_bwd_op(
    dout: Tensor, dlast: Tensor | None, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Tensor | None, z: Tensor | None, delta_bias: Tensor | None, ckpt: Tensor, delta_softplus: bool,
    deterministic: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return _bwd(dout, dlast, u, delta, A, B, C, D, z, delta_bias, ckpt, delta_softplus, deterministic)


@selective_scan_bwd_op.register_fake
def _(dout, dlast, u, delta, A, B, C, D, z, delta_bias, ckpt, delta_softplus, deterministic):
    def empty():
        return u.new_empty(0, dtype=torch.float32)

    return (
        torch.empty_like(u, memory_format=torch.contiguous_format),
        torch.empty_like(delta, memory_format=torch.contiguous_format),
        torch.empty_like(A), B.new_empty(B.shape), C.new_empty(C.shape),
        torch.empty_like(D) if D is not None else empty(),
        torch.empty_like(z, memory_format=torch.contiguous_format) if z is not None else empty(),
        torch.empty_like(delta_bias) if delta_bias is not None else empty(),
    )


def _setup_context(ctx, inputs, output) -> None:
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, save_ckpt, deterministic = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, output[2])
    ctx.delta_softplus = delta_softplus
    ctx.save_ckpt = save_ckpt
    ctx.deterministic = deterministic


def _backward(ctx, dout: Tensor, dlast: Tensor | None, dckpt: Tensor | None):
    if not ctx.save_ckpt:
        raise RuntimeError("selective_scan: forward ran without checkpoints (no input required grad)")
    u, delta, A, B, C, D, z, delta_bias, ckpt = ctx.saved_tensors
    du, ddelta, dA, dB, dC, dD, dz, dbias = selective_scan_bwd_op(
        dout, dlast, u, delta, A, B, C, D, z, delta_bias, ckpt, ctx.delta_softplus, ctx.deterministic
    )
    return (du, ddelta, dA, dB, dC, dD if D is not None else None, dz if z is not None else None,
            dbias if delta_bias is not None else None, None, None, None)


torch.library.register_autograd("icllib::selective_scan_fwd", _backward, setup_context=_setup_context)


# ---------------------------------------------------------------------------------------------------- public entry


def selective_scan_triton(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None, z: Tensor | None = None,
    delta_bias: Tensor | None = None, delta_softplus: bool = False, return_last_state: bool = False,
    deterministic: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Triton selective scan; same contract as `selective_scan_ref` (shapes in `icllib.ops.selective_scan`).

    deterministic: reduce dB/dC over channels with partial sums instead of fp32 atomics (bitwise-repeatable).
    """
    tensors = (u, delta, A, B, C, D, z, delta_bias)
    save_ckpt = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    out, last, _ = selective_scan_fwd_op(u, delta, A, B, C, D, z, delta_bias, delta_softplus, save_ckpt,
                                          deterministic)
    return (out, last) if return_last_state else out
