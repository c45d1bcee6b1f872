"""Causal depthwise conv1d + SiLU: the reference against nn.functional.conv1d, float64 gradcheck, dispatch, the Mamba
block unchanged on the reference path, and the Triton kernels (under TRITON_INTERPRET=1 on CPU, compiled on a GPU)
against the reference: output and every gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import icllib.ops.causal_conv1d as cc
from icllib.ops.causal_conv1d import causal_conv1d_silu, causal_conv1d_silu_ref, last_backend

# (rtol, atol) for outputs in x's dtype, and for the fp32 parameter gradients (reductions over B·L in another order)
TOL = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (1.6e-2, 1e-2)}
TOL_PARAM = {torch.float32: (1e-4, 1e-4), torch.bfloat16: (1e-4, 1e-4)}
needs_triton = pytest.mark.skipif(not cc.triton_available(), reason="needs triton")


def make_inputs(
    batch: int, L: int, E: int, K: int, *, dtype=torch.float32, device="cpu", has_bias=True, strided=True, seed=0,
) -> dict[str, torch.Tensor | None]:
    """x in dtype (with strided: the first half of a [B, L, 2E] in_proj-like output), fp32 weight and bias."""
    g = torch.Generator().manual_seed(seed)
    width = 2 * E if strided else E
    proj = torch.randn(batch, L, width, generator=g).to(device=device, dtype=dtype)
    bound = K**-0.5
    return {
        "x": proj[..., :E],
        "weight": ((torch.rand(E, K, generator=g) * 2 - 1) * bound).to(device),
        "bias": ((torch.rand(E, generator=g) * 2 - 1) * bound).to(device) if has_bias else None,
    }


def run_with_grads(inputs, *, backend, activation=True, seed=1):
    """Forward + backward with a fixed random cotangent; returns (y, {name: grad}). x's leaf is the tensor it was
    sliced from (so the strided view reaches the op), and its gradient is read back through the same slice."""
    x = inputs["x"]
    base = (x._base if x._base is not None else x).detach().clone().requires_grad_()
    E = x.shape[2]
    w = inputs["weight"].detach().clone().requires_grad_()
    b = inputs["bias"].detach().clone().requires_grad_() if inputs["bias"] is not None else None
    y = causal_conv1d_silu(base[..., :E], w, b, activation=activation, backend=backend)
    g = torch.Generator().manual_seed(seed)
    dy = torch.randn(y.shape, generator=g).to(y.device, y.dtype)
    (y.float() * dy.float()).sum().backward()
    grads = {"x": base.grad[..., :E], "weight": w.grad}
    if b is not None:
        grads["bias"] = b.grad
    return y.detach(), grads


def assert_close(name, got, ref, tol):
    rtol, atol = tol
    torch.testing.assert_close(got.float(), ref.float(), rtol=rtol, atol=atol, msg=lambda m: f"{name}: {m}")


def check_against_ref(inputs, *, activation=True, **kw):
    y, grads = run_with_grads(inputs, backend="triton", activation=activation, **kw)
    assert last_backend() == "triton"
    r_y, r_grads = run_with_grads(inputs, backend="ref", activation=activation, **kw)
    dtype = inputs["x"].dtype
    assert y.dtype == dtype and y.shape == inputs["x"].shape and y.is_contiguous()
    assert_close("y", y, r_y, TOL[dtype])
    assert set(grads) == set(r_grads)
    for k, ref in r_grads.items():
        assert grads[k].dtype == ref.dtype, k
        assert torch.isfinite(grads[k]).all(), k
        if k == "x":
            assert_close("dx", grads[k], ref, TOL[dtype])
        else:  # sums over B·L terms in another order: fp32 rounding grows with the sum's magnitude
            rtol, atol = TOL_PARAM[dtype]
            assert_close(f"d{k}", grads[k], ref, (rtol, atol * max(1.0, ref.abs().max().item())))
            assert grads[k].is_contiguous(), k  # as the op's fake impl declares (torch.compile checks strides)


def old_mamba_conv(x, weight, bias):
    """The Mamba block's conv before this op existed, verbatim (then F.silu)."""
    L, K = x.shape[1], weight.shape[1]
    xp = F.pad(x, (0, 0, K - 1, 0))
    y = xp[:, 0:L] * weight[:, 0]
    for k in range(1, K):
        y = y + xp[:, k : k + L] * weight[:, k]
    return y if bias is None else y + bias


# ------------------------------------------------------------------------------------------------------ reference


@pytest.mark.parametrize("K", [1, 3, 4])
def test_ref_matches_torch_conv1d(K):
    x = make_inputs(2, 9, 6, K, dtype=torch.float64)
    xt = x["x"].transpose(1, 2)  # [B, E, L]
    conv = F.conv1d(xt, x["weight"].double().unsqueeze(1), x["bias"].double(), padding=K - 1, groups=6)[..., :9]
    ref = causal_conv1d_silu_ref(x["x"], x["weight"].double(), x["bias"].double())
    torch.testing.assert_close(ref, F.silu(conv).transpose(1, 2))


def test_ref_gradcheck_float64():
    x = make_inputs(2, 5, 3, 4, dtype=torch.float64)
    args = (x["x"].detach().clone().requires_grad_(), x["weight"].double().requires_grad_(),
            x["bias"].double().requires_grad_())
    assert torch.autograd.gradcheck(causal_conv1d_silu_ref, args, eps=1e-6, atol=1e-6)


def test_ref_mixed_dtypes_compute_in_fp32_and_return_x_dtype():
    x = make_inputs(2, 7, 4, 4, dtype=torch.bfloat16)
    y = causal_conv1d_silu_ref(**x)
    assert y.dtype == torch.bfloat16
    expect = F.silu(old_mamba_conv(x["x"].float(), x["weight"], x["bias"])).bfloat16()
    assert torch.equal(y, expect)


def test_mamba_block_forward_unchanged_on_cpu():
    """The block on the reference path is bitwise the old code: in_proj -> old conv -> F.silu -> the rest."""
    from icllib.config import ModelConfig
    from icllib.models.mamba import Mamba

    torch.manual_seed(0)
    block = Mamba(ModelConfig(layers=("mamba",), d_model=8, n_heads=2, scan_backend="ref"))
    u = torch.randn(2, 11, 8)
    with torch.no_grad():
        new = block(u)
        calls = []
        original = cc.causal_conv1d_silu_ref

        def old(x, weight, bias, activation=True):
            calls.append(x.stride())
            return F.silu(old_mamba_conv(x, weight, bias))

        try:
            cc.causal_conv1d_silu_ref = old
            old_out = block(u)
        finally:
            cc.causal_conv1d_silu_ref = original
    assert calls and calls[0][2] == 1 and calls[0][1] == 2 * block.d_inner  # the strided in_proj chunk went in
    assert torch.equal(new, old_out)


# ------------------------------------------------------------------------------------------------------- dispatch


def test_auto_picks_ref_on_cpu_and_records_it():
    x = make_inputs(1, 3, 4, 4)
    y = causal_conv1d_silu(**x, backend="auto")
    assert last_backend() == "ref"
    torch.testing.assert_close(y, causal_conv1d_silu_ref(**x))


def test_bad_backend_and_shapes_raise():
    x = make_inputs(1, 3, 4, 4)
    with pytest.raises(ValueError, match="backend"):
        causal_conv1d_silu(**x, backend="cuda")
    with pytest.raises(ValueError, match="weight must"):
        causal_conv1d_silu(x["x"], torch.zeros(5, 4), None, backend="ref")
    with pytest.raises(ValueError, match="bias must"):
        causal_conv1d_silu(x["x"], x["weight"], torch.zeros(5), backend="ref")
    with pytest.raises(ValueError, match="x must"):
        causal_conv1d_silu(x["x"][0], x["weight"], None, backend="ref")


def test_triton_requested_without_triton_raises_with_hint(monkeypatch):
    monkeypatch.setattr(cc, "triton_available", lambda: False)
    x = make_inputs(1, 3, 4, 4)
    with pytest.raises(ImportError, match=r"pip install icllib\[triton\]"):
        causal_conv1d_silu(**x, backend="triton")
    assert causal_conv1d_silu(**x, backend="auto").shape == (1, 3, 4)


# --------------------------------------------------------------------------------------- Triton vs the reference

# (id, batch, L, E, K, dtype, has_bias, strided, activation): E = 24 is not a multiple of the interpreter's channel
# block (16); L = 13 rows straddle the 8-row tiles across sequences; K = 3 and 4; bf16 x with fp32 parameters.
CASES = [
    ("K4-bias-strided-fp32", 2, 13, 24, 4, torch.float32, True, True, True),
    ("K3-nobias-contig-fp32", 2, 13, 24, 3, torch.float32, False, False, True),
    ("K4-bias-strided-bf16", 2, 13, 24, 4, torch.bfloat16, True, True, True),
    ("K2-bias-noact-fp32", 3, 5, 10, 2, torch.float32, True, True, False),
]


@needs_triton
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_triton_matches_ref_cpu_interpreter(case):
    _, batch, L, E, K, dtype, has_bias, strided, activation = case
    x = make_inputs(batch, L, E, K, dtype=dtype, has_bias=has_bias, strided=strided)
    check_against_ref(x, activation=activation)


@needs_triton
def test_triton_backward_is_bitwise_repeatable_and_takes_expanded_cotangents():
    x = make_inputs(2, 6, 8, 4)
    grads = []
    for _ in range(2):
        leaves = {k: v.detach().clone().requires_grad_() for k, v in x.items()}
        causal_conv1d_silu(**leaves, backend="triton").sum().backward()  # dy: expanded, stride 0
        grads.append({k: v.grad for k, v in leaves.items()})
    leaves = {k: v.detach().clone().requires_grad_() for k, v in x.items()}
    causal_conv1d_silu(**leaves, backend="ref").sum().backward()
    for k, v in leaves.items():
        assert torch.equal(grads[0][k], grads[1][k]), k
        assert_close(f"d{k}", grads[0][k], v.grad, TOL_PARAM[torch.float32])


@needs_triton
def test_triton_opcheck():
    from icllib.ops.causal_conv1d import triton as tk

    x = make_inputs(1, 4, 4, 3, strided=False)
    args = (x["x"].requires_grad_(), x["weight"].requires_grad_(), x["bias"].requires_grad_(), True)
    torch.library.opcheck(tk.causal_conv1d_fwd_op, args, test_utils=("test_schema", "test_faketensor",
                                                                      "test_autograd_registration"))


# ------------------------------------------------------------------------------------------------------------ GPU


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("batch", [64, 8192], ids=lambda v: f"B{v}")
def test_gpu_matches_ref(dtype, batch):
    """The Mamba training shape (E = 512, K = 4, L = 82, x a strided in_proj chunk), and a large batch."""
    check_against_ref(make_inputs(batch, 82, 512, 4, dtype=dtype, device="cuda", seed=batch))


@pytest.mark.gpu
@pytest.mark.parametrize("K", [2, 3])
def test_gpu_matches_ref_other_K(K):
    check_against_ref(make_inputs(4, 100, 200, K, device="cuda", has_bias=False))


@pytest.mark.gpu
def test_gpu_backward_is_bitwise_repeatable():
    x = make_inputs(64, 82, 512, 4, dtype=torch.bfloat16, device="cuda")
    a = run_with_grads(x, backend="triton")[1]
    b = run_with_grads(x, backend="triton")[1]
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.gpu
def test_gpu_torch_compile_fullgraph():
    x = make_inputs(4, 82, 64, 4, device="cuda")
    leaves = {k: v.detach().clone().requires_grad_() for k, v in x.items()}

    @torch.compile(fullgraph=True)
    def f(x, weight, bias):
        return causal_conv1d_silu(x * 2.0, weight, bias, backend="triton").float().square().sum()

    f(**leaves).backward()
    ref = {k: v.detach().clone().requires_grad_() for k, v in x.items()}
    causal_conv1d_silu(ref["x"] * 2.0, ref["weight"], ref["bias"], backend="ref").float().square().sum().backward()
    for k, v in ref.items():
        assert_close(f"d{k}", leaves[k].grad, v.grad, TOL_PARAM[torch.float32])


@pytest.mark.gpu
def test_gpu_cuda_graph_capture():
    x = make_inputs(64, 82, 512, 4, device="cuda")
    static = {k: v.detach().clone().requires_grad_() for k, v in x.items()}

    def step():
        for v in static.values():
            v.grad = None
        y = causal_conv1d_silu(**static, backend="triton")
        y.float().square().sum().backward()
        return y

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):  # warm-up: compile the kernels before capture
            step()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = step()
    new = make_inputs(64, 82, 512, 4, device="cuda", seed=7)
    with torch.no_grad():
        for k, v in new.items():
            static[k].copy_(v)
    graph.replay()
    torch.cuda.synchronize()
    ref = {k: v.detach().clone().requires_grad_() for k, v in new.items()}
    r_y = causal_conv1d_silu(**ref, backend="ref")
    r_y.float().square().sum().backward()
    assert_close("y (graph replay on new inputs)", y, r_y, TOL[torch.float32])
    for k, v in ref.items():
        assert_close(f"d{k} (graph replay)", static[k].grad, v.grad, TOL_PARAM[torch.float32])


@pytest.mark.gpu
def test_gpu_mamba_block_autocast_triton_vs_ref():
    """The whole block under bf16 autocast: the Triton conv against the reference conv, forward and gradients."""
    from icllib.config import ModelConfig
    from icllib.models.mamba import Mamba

    torch.manual_seed(0)
    blocks = {}
    for backend in ("ref", "triton"):
        torch.manual_seed(0)
        blocks[backend] = Mamba(ModelConfig(layers=("mamba",), d_model=256, n_heads=8, scan_backend=backend)).cuda()
    u = torch.randn(64, 82, 256, device="cuda")
    outs = {}
    for backend, block in blocks.items():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = block(u)
        out.float().square().mean().backward()
        outs[backend] = out.float()
    torch.testing.assert_close(outs["triton"], outs["ref"], rtol=3e-2, atol=3e-2)
    for (name, p), q in zip(blocks["triton"].named_parameters(), blocks["ref"].parameters(), strict=True):
        err = (p.grad - q.grad).norm() / q.grad.norm().clamp_min(1e-12)
        assert err < 3e-2, (name, err.item())
