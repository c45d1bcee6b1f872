"""Non-selective state-space layers: "mamba_s4" (Mamba without selection) and "s4d" (diagonal S4).

"mamba_s4" is the paper's S4-vs-S6 ablation made as narrow as possible: the Mamba block of mamba.py with its
selection mechanism removed. Δ = softplus(dt_bias) is a learned per-channel constant, and B, C are learned [N]
vectors shared over channels and time, so the layer is linear time-invariant (LTI); everything else (in_proj, conv,
SiLU, A = -exp(A_log), D skip, SiLU(z) gate, out_proj, the scan op, the inits) is Mamba's. Differences from the
official `s4-mamba` of Park et al. (krafton-ai/mambaformer-icl `mamba_simple.py:S4Mamba` + `s4d.py:S4DMamba`):
  - official: complex diagonal S4D kernel, N/2 = 8 complex modes with A = -0.5 + iπn (S4D-Lin), per-channel
    complex C ~ N(0, 1), B absorbed (= 1), log_dt ~ U[log 1e-3, log 0.1], A real and imaginary parts trained;
    ours: real A = -(1..N) per channel (Mamba's S4D-real), B and C shared over channels (the scan's layout).
  - official: FFT convolution; ours: the same selective-scan op with input-independent Δ, B, C (stride-0 views).
  - official: D ~ N(0, 1); ours: D = 1. official: gate `y * z` without SiLU; ours: `y * SiLU(z)` (Mamba's).
  - official: dropout 0.1 tied over length before the gate; ours: `cfg.dropout` (default 0) before out_proj.

"s4d" is the S4D layer of Gu et al. 2022 ("minimal S4D" of the state-spaces repo), as Park et al.'s `s4d` family
(`S4Wrapper`, N=16, in mamba_ssm's prenorm Block) and Grazzi et al.'s S4 baseline (`s4_mod/s4d.py`, N=64, postnorm,
dropout 0.1) use it: a per-channel complex diagonal SSM turned into a length-L convolution kernel, applied by FFT,
plus D skip, then GELU, dropout, and a position-wise Linear(D, 2D) + GLU. Grazzi's own stack is postnorm; ours is
prenorm like every icllib backbone (a documented deviation). Init `cfg.s4d_init`:
  "lin": A_n = -1/2 + iπn;   "inv": A_n = -1/2 + i (N/π) (N/(2n+1) - 1);   n = 0..N/2-1, N = d_state.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from icllib.config import ModelConfig
from icllib.models.backbone import MIXERS
from icllib.models.mamba import SCAN_MIXERS, Mamba, dt_bias_init


class MambaS4(Mamba):
    """Mamba with Δ, B, C input-independent (learned parameters): the "no selection" ablation."""

    def init_ssm_params(self, cfg: ModelConfig) -> None:
        self.dt_bias = nn.Parameter(dt_bias_init(self.d_inner))  # [E], Δ = softplus(dt_bias)
        self.B = nn.Parameter(torch.ones(self.d_state))  # [N]
        self.C = nn.Parameter(torch.randn(self.d_state))  # [N]

    def ssm_params(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        Bsz, L, E = x.shape
        delta = x.new_zeros(()).expand(Bsz, L, E)  # [B, L, E] stride 0: Δ is the bias alone
        B = self.B.to(x.dtype).expand(Bsz, L, self.d_state)  # [B, L, N], the same vector everywhere
        C = self.C.to(x.dtype).expand(Bsz, L, self.d_state)
        return delta, B, C, self.dt_bias


def _imag_lin(n_half: int, n_state: int) -> Tensor:
    return math.pi * torch.arange(n_half, dtype=torch.float32)


def _imag_inv(n_half: int, n_state: int) -> Tensor:
    return n_state / math.pi * (n_state / (2 * torch.arange(n_half, dtype=torch.float32) + 1) - 1)


S4D_INITS: dict[str, Callable[[int, int], Tensor]] = {"lin": _imag_lin, "inv": _imag_inv}


class S4DKernel(nn.Module):
    """A diagonal SSM's convolution kernel `K [L, H]` (ZOH), H channels, N/2 complex modes each."""

    def __init__(self, h: int, n_state: int, init: str = "lin", dt_min: float = 1e-3, dt_max: float = 0.1) -> None:
        super().__init__()
        n_half = n_state // 2
        self.log_dt = nn.Parameter(torch.rand(h) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))  # [H]
        self.C = nn.Parameter(torch.view_as_real(torch.randn(h, n_half, dtype=torch.cfloat)))  # [H, N/2, 2]
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(h, n_half)))  # [H, N/2]
        self.A_imag = nn.Parameter(S4D_INITS[init](n_half, n_state).repeat(h, 1))  # [H, N/2]
        for p in self.parameters():
            p._no_weight_decay = True  # type: ignore[attr-defined]

    def forward(self, L: int) -> Tensor:
        dt = torch.exp(self.log_dt)  # [H]
        C = torch.view_as_complex(self.C.contiguous())  # [H, N/2]
        A = -torch.exp(self.log_A_real) + 1j * self.A_imag  # [H, N/2]
        dtA = A * dt[:, None]  # [H, N/2]
        C = C * (torch.exp(dtA) - 1.0) / A  # ZOH discretisation of B = 1, folded into C
        powers = torch.exp(dtA[:, :, None] * torch.arange(L, device=A.device))  # [H, N/2, L]
        return 2 * torch.einsum("hn,hnl->lh", C, powers).real  # [L, H]


def fft_causal_conv(u: Tensor, k: Tensor) -> Tensor:
    """`y[:, t] = Σ_{s<=t} k[t - s] * u[:, s]` per channel by FFT of length 2L (no wrap-around): u [B, L, H],
    k [L, H] -> [B, L, H]."""
    L = u.shape[1]
    u_f = torch.fft.rfft(u.float(), n=2 * L, dim=1)  # [B, L + 1, H]
    k_f = torch.fft.rfft(k.float(), n=2 * L, dim=0)  # [L + 1, H]
    return torch.fft.irfft(u_f * k_f, n=2 * L, dim=1)[:, :L].to(u.dtype)


class S4D(nn.Module):
    """S4D layer, `[B, L, D] -> [B, L, D]`: SSM convolution + D skip -> GELU -> dropout -> Linear(D, 2D) -> GLU."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.kernel = S4DKernel(d, cfg.d_state, init=cfg.s4d_init)
        self.D = nn.Parameter(torch.randn(d))  # [D]
        self.drop = nn.Dropout(cfg.dropout)
        self.output_linear = nn.Linear(d, 2 * d)  # the official 1x1 Conv1d(D, 2D), channels-last

    def forward(self, u: Tensor) -> Tensor:  # [B, L, D] -> [B, L, D]
        y = fft_causal_conv(u, self.kernel(u.shape[1])) + u * self.D  # [B, L, D]
        y = self.drop(F.gelu(y))
        return F.glu(self.output_linear(y), dim=-1)  # [B, L, 2D] -> [B, L, D]


@MIXERS.register("mamba_s4")
def mamba_s4_layer(cfg: ModelConfig, layer_idx: int) -> list[nn.Module]:
    return [MambaS4(cfg)]


SCAN_MIXERS.add("mamba_s4")  # MambaS4 is a Mamba: the same selective-scan op


@MIXERS.register("s4d")
def s4d_layer(cfg: ModelConfig, layer_idx: int) -> list[nn.Module]:
    return [S4D(cfg)]
