"""Pure-torch selective scan: the readable specification of the op (imports only torch).

The recurrence (Mamba's S6 with zero-order-hold A and Euler B, as mamba_ssm's `selective_scan_ref`), per batch b,
channel d, state n and step t, with all maths in fp32:

    Δ[t]    = softplus(delta[t] + delta_bias)          (softplus and bias optional)
    h[t]    = exp(Δ[t] A) h[t-1] + Δ[t] B[t] u[t]       h[-1] = 0,  h: [B, D, N]
    y[t]    = Σ_n C[t, n] h[t, n]  +  D u[t]
    out[t]  = y[t] · silu(z[t])                          (gate optional)

Storage is channels-last: u, delta, z are [B, L, D]; B, C are [B, L, N]; A is [D, N]. The loop below is sequential over
L and materialises exp(Δ A) and the states as [B, L, D, N], which the Triton kernel never does; it is meant to be
read, and to be the reference the kernel is tested against (autograd through it gives the reference gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan, sequential reference.

    Args:
        u: input [B, L, D].
        delta: step size before bias/softplus [B, L, D].
        A: state matrix (diagonal per channel) [D, N], usually negative.
        B: input projection [B, L, N].
        C: output projection [B, L, N].
        D: skip connection [D], or None.
        z: gate [B, L, D], or None (out is multiplied by silu(z)).
        delta_bias: added to delta before softplus [D], or None.
        delta_softplus: apply softplus to delta (+ bias).
        return_last_state: also return the final state h[L-1] [B, D, N] (fp32; fp64 for fp64 inputs).

    Returns:
        out [B, L, D] in u's dtype, and the last state [B, D, N] fp32 if asked.
    """
    dtype_in = u.dtype
    ct = torch.float64 if dtype_in == torch.float64 else torch.float32  # fp32 maths (fp64 for gradcheck)
    u_f, delta_f = u.to(ct), delta.to(ct)
    if delta_bias is not None:
        delta_f = delta_f + delta_bias.to(ct)  # [B, L, D]
    if delta_softplus:
        delta_f = F.softplus(delta_f)
    A_f, B_f, C_f = A.to(ct), B.to(ct), C.to(ct)
    batch, seqlen, dim = u.shape
    dA = torch.exp(delta_f.unsqueeze(-1) * A_f)  # [B, L, D, N]
    dBu = (delta_f * u_f).unsqueeze(-1) * B_f.unsqueeze(2)  # [B, L, D, N]
    h = u_f.new_zeros(batch, dim, A.shape[1])  # [B, D, N]
    hs = []
    for dA_t, dBu_t in zip(dA.unbind(1), dBu.unbind(1), strict=True):  # unbind: one stack in backward, not L
        h = dA_t * h + dBu_t  # [B, D, N]                              # full-size zero-filled slices
        hs.append(h)
    if seqlen > 0:  # read out every step at once: y[t] = Σ_n C[t, n] h[t, n]
        y = torch.einsum("bldn,bln->bld", torch.stack(hs, dim=1), C_f)  # [B, L, D]
    else:
        y = u_f.new_zeros(batch, 0, dim)
    if D is not None:
        y = y + u_f * D.to(ct)
    if z is not None:
        y = y * F.silu(z.to(ct))
    out = y.to(dtype_in)
    return (out, h) if return_last_state else out
