"""Pure-torch causal depthwise conv1d (+ SiLU): the readable specification of the op (imports only torch).

Channels-last, per batch b, step t and channel e, with K = weight.shape[1] taps and zeros before t = 0:

    s[b, t, e] = bias[e] + Σ_k weight[e, k] · x[b, t - (K-1) + k, e]
    y[b, t, e] = silu(s[b, t, e])                                  (activation=True; else y = s)

This is nn.Conv1d(E, E, K, groups=E, padding=K-1) with the last K-1 outputs dropped (mamba_ssm's conv1d), written
as K shifted multiply-adds so no transpose to [B, E, L] is needed. It is the Mamba block's original code, kept
operation for operation, so the block computes bitwise what it did before on the reference path; autograd through
it gives the reference gradients the Triton kernels are tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def causal_depthwise_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """`y[:, t] = bias + Σ_k weight[:, k] * x[:, t - (K-1) + k]`: x [B, L, E], weight [E, K], bias [E] -> [B, L, E].

    Computed in the promoted dtype of x and weight (fp32 for a bf16 x and an fp32 weight), like the original code.
    """
    L, K = x.shape[1], weight.shape[1]
    xp = F.pad(x, (0, 0, K - 1, 0))  # [B, L + K - 1, E]
    y = xp[:, 0:L] * weight[:, 0]
    for k in range(1, K):
        y = y + xp[:, k : k + L] * weight[:, k]
    return y if bias is None else y + bias


def causal_conv1d_silu_ref(x: Tensor, weight: Tensor, bias: Tensor | None, activation: bool = True) -> Tensor:
    """Causal depthwise conv1d then SiLU: x [B, L, E], weight [E, K], bias [E] or None -> [B, L, E] in x's dtype.

    The maths runs in fp32 at least (fp64 stays fp64, for gradcheck): x is upcast before the first multiply, which
    for fp32 inputs, or a bf16 x with fp32 parameters (autocast), is exactly what type promotion did already.
    """
    ct = torch.promote_types(torch.promote_types(x.dtype, weight.dtype), torch.float32)
    y = causal_depthwise_conv(x.to(ct), weight, bias)  # [B, L, E]
    if activation:
        y = F.silu(y)
    return y.to(x.dtype)
