"""Mixers: causality, the Mamba block against a step-by-step recurrence, S4 / S4D / WKV maths, counts, config errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from icllib.config import ConfigError, ModelConfig
from icllib.models import MIXERS, Backbone, Block
from icllib.models.mamba import Mamba
from icllib.models.rwkv import wkv
from icllib.models.s4 import MambaS4, S4DKernel, fft_causal_conv
from icllib.ops.selective_scan import selective_scan
from icllib.training.validate import check_model

ALL_MIXERS = ["attn", "mamba", "mamba_s4", "s4d", "rwkv"]


def _cfg(layers: tuple[str, ...], d: int = 16, **kw: object) -> ModelConfig:
    return ModelConfig(layers=layers, d_model=d, n_heads=2, d_state=8, scan_backend="ref", **kw)


def _jitter(module: torch.nn.Module, seed: int = 0) -> None:
    """Perturb every parameter, so that zero-initialised projections (RWKV outputs) cannot hide a leak."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_registry_lists_every_mixer() -> None:
    assert MIXERS.names() == sorted(ALL_MIXERS)


@pytest.mark.parametrize("name", ALL_MIXERS)
def test_backbone_is_causal(name: str) -> None:
    torch.manual_seed(0)
    backbone = Backbone(_cfg((name, name)))
    _jitter(backbone)
    x = torch.randn(2, 13, 16)
    t = 6
    x2 = x.clone()
    x2[:, t:] += torch.randn(2, 13 - t, 16)
    y, y2 = backbone(x), backbone(x2)
    torch.testing.assert_close(y[:, :t], y2[:, :t], atol=1e-5, rtol=0)  # FFT convolutions round off at ~1e-7
    assert (y[:, t:] - y2[:, t:]).abs().amax() > 1e-3  # the perturbation does reach later positions


def _naive_mamba(m: Mamba, u: torch.Tensor) -> torch.Tensor:
    """The Mamba block one token at a time, written independently of mamba.py's vectorised code."""
    Bsz, L, _ = u.shape
    E, N, R, K = m.d_inner, m.d_state, m.dt_rank, m.conv_weight.shape[1]
    A = -torch.exp(m.A_log)  # [E, N]
    xz = u @ m.in_proj.weight.T  # [B, L, 2E]
    x, z = xz[..., :E], xz[..., E:]
    h = torch.zeros(Bsz, E, N)
    outs = []
    for t in range(L):
        xc = m.conv_bias.expand(Bsz, E).clone()
        for k in range(K):
            s = t - (K - 1) + k
            if s >= 0:
                xc = xc + m.conv_weight[:, k] * x[:, s]
        xc = F.silu(xc)  # [B, E]
        dbl = xc @ m.x_proj.weight.T
        dt, Bt, Ct = dbl[:, :R], dbl[:, R : R + N], dbl[:, R + N :]
        delta = F.softplus(dt @ m.dt_proj.weight.T + m.dt_proj.bias)  # [B, E]
        h = torch.exp(delta[..., None] * A) * h + delta[..., None] * Bt[:, None, :] * xc[..., None]  # [B, E, N]
        y = (h * Ct[:, None, :]).sum(-1) + m.D * xc
        y = y * F.silu(z[:, t])
        outs.append(y @ m.out_proj.weight.T)
    return torch.stack(outs, dim=1)


def test_attention_matches_a_loop_over_heads_and_positions() -> None:
    """The "attn" mixer against a direct per-head, per-position softmax written from the GPT-2 definition, with the
    same weights (jittered so that zero biases cannot hide a misplaced one): catches a wrong head split or mask."""
    from icllib.models.attention import CausalSelfAttention

    torch.manual_seed(0)
    cfg = ModelConfig(layers=("attn",), d_model=12, n_heads=3)
    att = CausalSelfAttention(cfg).eval()
    _jitter(att)
    x = torch.randn(2, 7, 12, dtype=torch.float64)  # [B, L, D]
    att = att.double()
    q, k, v = att.c_attn(x).split(12, dim=-1)  # [B, L, D] each
    out = torch.zeros_like(x)
    for h in range(3):
        cols = slice(4 * h, 4 * h + 4)  # head h owns columns [4h, 4h + 4) of q, k and v
        for t in range(7):
            scores = (q[:, t, cols].unsqueeze(1) * k[:, : t + 1, cols]).sum(-1) / 2.0  # [B, t+1], / sqrt(4)
            out[:, t, cols] = (scores.softmax(-1).unsqueeze(-1) * v[:, : t + 1, cols]).sum(1)
    torch.testing.assert_close(att(x), att.c_proj(out), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("L", [1, 7, 23])
def test_mamba_block_matches_step_by_step_recurrence(L: int) -> None:
    torch.manual_seed(1)
    m = Mamba(_cfg(("mamba",), d=24))
    u = torch.randn(3, L, 24)
    with torch.no_grad():
        torch.testing.assert_close(m(u), _naive_mamba(m, u), rtol=1e-4, atol=1e-5)


def test_mamba_block_official_init() -> None:
    torch.manual_seed(0)
    m = Mamba(_cfg(("mamba",) * 4, d=64))
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6
    torch.testing.assert_close(m.A_log[3], torch.log(torch.arange(1.0, 9.0)))
    assert torch.equal(m.D, torch.ones(128))
    bound = 1 / math.sqrt(128) / math.sqrt(4)  # kaiming-uniform(a=√5) bound 1/sqrt(fan_in), then / sqrt(n_layer)
    assert m.out_proj.weight.abs().max() <= bound and m.out_proj.weight.abs().max() > 0.9 * bound


def test_mamba_s4_has_input_independent_delta_b_c() -> None:
    torch.manual_seed(0)
    s4, s6 = MambaS4(_cfg(("mamba_s4",))), Mamba(_cfg(("mamba",)))
    x1, x2 = torch.randn(2, 9, 32), torch.randn(2, 9, 32)
    for a, b in zip(s4.ssm_params(x1), s4.ssm_params(x2), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(s6.ssm_params(x1)[1], s6.ssm_params(x2)[1])  # the selective block's B does change
    assert not hasattr(s4, "x_proj") and not hasattr(s4, "dt_proj")


def test_mamba_s4_ssm_is_linear_time_invariant() -> None:
    """Its SSM is LTI: linear in its input and commuting with a delay. Mamba's selective SSM is not linear."""
    torch.manual_seed(0)
    u1, u2 = torch.randn(2, 10, 32), torch.randn(2, 10, 32)
    for m, lti in ((MambaS4(_cfg(("mamba_s4",))), True), (Mamba(_cfg(("mamba",))), False)):
        A = -torch.exp(m.A_log)

        def ssm(x: torch.Tensor, m: Mamba = m, A: torch.Tensor = A) -> torch.Tensor:
            delta, B, C, bias = m.ssm_params(x)
            return selective_scan(x, delta, A, B, C, delta_bias=bias, delta_softplus=True, backend="ref")

        with torch.no_grad():
            linear = torch.allclose(ssm(2 * u1 - u2), 2 * ssm(u1) - ssm(u2), rtol=1e-4, atol=1e-5)
            y, ys = ssm(u1), ssm(F.pad(u1, (0, 0, 3, 0))[:, :10])
        assert linear == lti
        torch.testing.assert_close(ys[:, 3:], y[:, :7], rtol=1e-4, atol=1e-5)


def test_fft_conv_and_s4d_kernel_match_the_recurrence() -> None:
    torch.manual_seed(0)
    kernel = S4DKernel(h=5, n_state=8, init="inv")
    L = 17
    k = kernel(L).detach()  # [L, H]
    u = torch.randn(2, L, 5)
    direct = torch.stack([sum(k[t - s] * u[:, s] for s in range(t + 1)) for t in range(L)], dim=1)
    torch.testing.assert_close(fft_causal_conv(u, k), direct, rtol=1e-4, atol=1e-5)
    # the same kernel as a complex diagonal recurrence with ZOH-discretised B = 1
    dt = torch.exp(kernel.log_dt).detach()
    A = (-torch.exp(kernel.log_A_real) + 1j * kernel.A_imag).detach()
    C = torch.view_as_complex(kernel.C.detach().contiguous())
    dA, dB = torch.exp(A * dt[:, None]), (torch.exp(A * dt[:, None]) - 1) / A
    h = torch.zeros(2, 5, 4, dtype=torch.cfloat)
    ys = []
    for t in range(L):
        h = dA * h + dB * u[:, t, :, None]
        ys.append(2 * (h * C).sum(-1).real)
    torch.testing.assert_close(torch.stack(ys, dim=1), direct, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("chunk", [1, 7, 32, 100])
def test_wkv_matches_the_direct_formula_and_is_stable(chunk: int) -> None:
    torch.manual_seed(0)
    B, L, D = 2, 45, 4
    w, u = (torch.rand(D) + 0.05).double(), torch.randn(D).double()
    k, v = torch.randn(B, L, D).double(), torch.randn(B, L, D).double()
    inputs = [t.requires_grad_() for t in (w, u, k, v)]
    ref = []
    for t in range(L):
        num = torch.exp(u + k[:, t]) * v[:, t]
        den = torch.exp(u + k[:, t])
        for i in range(t):
            e = torch.exp(-(t - 1 - i) * w + k[:, i])
            num, den = num + e * v[:, i], den + e
        ref.append(num / den)
    ref = torch.stack(ref, dim=1)
    out = wkv(w, u, k, v, chunk=chunk).double()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    weights = torch.randn(B, L, D, dtype=torch.float64)  # gradients too: the detached stabilisers cancel exactly
    for g, g_ref in zip(torch.autograd.grad((out * weights).sum(), inputs),
                        torch.autograd.grad((ref * weights).sum(), inputs), strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-5)
    big_k = (200 * k.detach().float()).requires_grad_()  # exp(200 k) overflows fp32 without the running maxima
    out = wkv(w.detach().float(), u.detach().float(), big_k, v.detach().float(), chunk=chunk)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(big_k.grad).all()


@pytest.mark.parametrize(
    ("layers", "d", "kw", "expected"),
    [
        (("mamba",), 64, {}, 32_768),  # PAPER_SPEC §3.2
        (("mamba",), 128, {}, 116_736),
        (("mamba",), 256, {}, 438_272),
        (("attn",), 128, {}, 198_272),  # GPT-2 layer 12D² + 13D
        (("attn",), 256, {}, 789_760),
        (("attn",), 128, {"mlp": False}, 66_304),  # hybrid attention block 4D² + 6D
        (("attn",), 256, {"mlp": False}, 263_680),
        (("mamba_s4",), 128, {}, 104_480),  # Mamba minus x_proj / dt_proj, plus dt_bias, B, C
        (("rwkv",), 128, {}, 214_400),  # 13D² + 11D
    ],
)
def test_block_parameter_counts(layers: tuple[str, ...], d: int, kw: dict, expected: int) -> None:
    cfg = ModelConfig(layers=layers, d_model=d, n_heads=8, **kw)
    assert sum(p.numel() for p in Block(cfg, layers[0], 0).parameters()) == expected


def test_unknown_layer_is_a_one_line_error_listing_known_names() -> None:
    with pytest.raises(ConfigError) as e:
        check_model(ModelConfig(layers=("mamba", "mambo")))  # ModelConfig itself knows no mixer names
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("model.layers[1]: unknown mixer 'mambo'")
    assert all(name in msg for name in ALL_MIXERS)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: ModelConfig(layers=("mamba", "attn"), d_model=100, n_heads=8), "model.d_model"),
        (lambda: ModelConfig(layers=()), "model.layers"),
        (lambda: check_model(ModelConfig(layers=("s4d",), d_state=7)), "model.d_state"),
        (lambda: ModelConfig(norm="batchnorm"), "model.norm"),
        (lambda: ModelConfig(attn_init="xavier"), "model.attn_init"),
        (lambda: ModelConfig(s4d_init="legs"), "model.s4d_init"),
    ],
)
def test_config_errors_name_the_field(make, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        make()
