"""The Mamba-1 block (Gu & Dao 2023, `mamba_ssm.modules.mamba_simple.Mamba`): the "mamba" layer.

    u [B, L, D] -> in_proj -> x, z [B, L, E]          (E = expand * D)
    x -> causal depthwise conv1d (width d_conv) -> SiLU
    x -> x_proj -> dt [B, L, R], B [B, L, N], C [B, L, N]      (R = ceil(D / 16), N = d_state)
    Δ = softplus(dt_proj(dt) + dt_bias)                      (inside the scan: delta_bias, delta_softplus)
    y = selective_scan(x, Δ, A = -exp(A_log), B, C, D_skip, z)  = (SSM(x) + D_skip * x) * SiLU(z)
    out = out_proj(y) [B, L, D]

Everything stays channels-last ([B, L, ·]), which is the layout `icllib.ops.selective_scan` takes, so no transposes
surround the scan; the conv is written as d_conv shifted multiply-adds instead of a transposed `nn.Conv1d`.
The subclass `MambaS4` (s4.py) only replaces `ssm_params`, the source of Δ, B and C.

Official initialisation (mamba_simple.py and mixer_seq_simple.py `_init_weights`):
  in_proj, x_proj   PyTorch default Linear init, no bias
  conv              PyTorch default Conv1d init (uniform ±1/sqrt(d_conv)), with bias
  dt_proj.weight    uniform ±R^-0.5 ("random", dt_scale 1)
  dt_proj.bias      inverse softplus of dt ~ exp(U[log 1e-3, log 0.1]), dt clamped below at 1e-4
  A_log             log(1..N) for every channel (S4D-real: A = -(1..N))
  D_skip            ones
  out_proj.weight   kaiming-uniform(a=√5) / sqrt(n_layer), no bias. We use n_layer = len(cfg.layers); Park et al.'s
                    MixerModel passes its `n_layer` (4 for a 5-block MambaFormer), a ~12% larger scale there.
`cfg.dropout` (default 0; the official block has none) drops the gated scan output before out_proj.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from icllib.config import ModelConfig
from icllib.models.backbone import MIXERS
from icllib.ops.causal_conv1d import causal_conv1d_silu, causal_depthwise_conv  # noqa: F401 (its old home)
from icllib.ops.selective_scan import selective_scan


def dt_bias_init(n: int, dt_min: float = 1e-3, dt_max: float = 0.1, floor: float = 1e-4) -> Tensor:
    """Inverse softplus of dt drawn log-uniformly in [dt_min, dt_max] (mamba_simple.py), [n]."""
    dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))


class Mamba(nn.Module):
    """The selective SSM block, `[B, L, D] -> [B, L, D]`; 6D² + 4D·R + 110D parameters at N=16 (+2D: its norm)."""

    # the trainer records `icllib.ops.selective_scan.last_backend()` in provenance for models with such a module
    uses_selective_scan = True

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, e, n = cfg.d_model, cfg.expand * cfg.d_model, cfg.d_state
        self.d_inner, self.d_state, self.dt_rank = e, n, math.ceil(d / 16)
        self.backend = cfg.scan_backend

        self.in_proj = nn.Linear(d, 2 * e, bias=False)
        bound = 1.0 / math.sqrt(cfg.d_conv)  # nn.Conv1d's default: fan_in = d_conv for a depthwise conv
        self.conv_weight = nn.Parameter(torch.empty(e, cfg.d_conv).uniform_(-bound, bound))  # [E, K]
        self.conv_bias = nn.Parameter(torch.empty(e).uniform_(-bound, bound))  # [E]
        self.init_ssm_params(cfg)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(e, 1))  # [E, N]
        self.D = nn.Parameter(torch.ones(e))  # [E]
        self.drop = nn.Dropout(cfg.dropout)
        self.out_proj = nn.Linear(e, d, bias=False)
        nn.init.kaiming_uniform_(self.out_proj.weight, a=math.sqrt(5))
        with torch.no_grad():
            self.out_proj.weight /= math.sqrt(len(cfg.layers))
        for p in (self.A_log, self.D):
            p._no_weight_decay = True  # type: ignore[attr-defined]

    def init_ssm_params(self, cfg: ModelConfig) -> None:
        """The selection mechanism: x_proj (to dt, B, C) and dt_proj (dt -> Δ, with the dt bias)."""
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * self.d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt_bias_init(self.d_inner))

    def ssm_params(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Δ before bias and softplus [B, L, E], B [B, L, N], C [B, L, N], and the Δ bias [E]: all from x here."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight)  # [B, L, E]
        return delta, B, C, self.dt_proj.bias

    def forward(self, u: Tensor) -> Tensor:  # [B, L, D] -> [B, L, D]
        x, z = self.in_proj(u).chunk(2, dim=-1)  # each [B, L, E]
        x = causal_conv1d_silu(x, self.conv_weight, self.conv_bias, backend=self.backend)  # [B, L, E], SiLU'd
        delta, B, C, delta_bias = self.ssm_params(x)
        A = -torch.exp(self.A_log.float())  # [E, N]
        y = selective_scan(
            x, delta, A, B, C, self.D.float(), z=z, delta_bias=delta_bias.float(), delta_softplus=True,
            backend=self.backend,
        )  # [B, L, E], already gated by SiLU(z)
        return self.out_proj(self.drop(y))


@MIXERS.register("mamba")
def mamba_layer(cfg: ModelConfig, layer_idx: int) -> list[nn.Module]:
    return [Mamba(cfg)]


# the mixers whose blocks run the selective scan (`Mamba.uses_selective_scan`), for which `model.scan_backend`
# matters: each is added next to its registration (s4.py adds "mamba_s4"); complete once icllib.models is imported
SCAN_MIXERS: set[str] = {"mamba"}
