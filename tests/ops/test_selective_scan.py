"""Selective scan: the reference against mamba_ssm's formulation, float64 gradcheck, dispatch, and the Triton kernels
(under TRITON_INTERPRET=1 on CPU, compiled on a GPU) against the reference: output, last state and every gradient."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import icllib.ops.selective_scan as ss
from icllib.ops.selective_scan import last_backend, selective_scan, selective_scan_ref

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
TOL = {torch.float32: (6e-4, 2e-3), torch.bfloat16: (3e-2, 5e-2), torch.float16: (3e-3, 5e-3)}
needs_triton = pytest.mark.skipif(not ss.triton_available(), reason="needs triton")


def make_inputs(
    batch: int, L: int, dim: int, N: int, *, dtype=torch.float32, device="cpu", has_D=True, has_z=True,
    has_bias=True, strided_BC=True, seed=0,
) -> dict[str, torch.Tensor | None]:
    """Mamba-like inputs. With strided_BC, B and C are column slices of one [B, L, dt_rank + 2N] projection."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device)

    if strided_BC:
        proj = rnd(batch, L, 3 + 2 * N).to(dtype)
        B, C = proj[..., 3:3 + N], proj[..., 3 + N:]
    else:
        B, C = rnd(batch, L, N).to(dtype), rnd(batch, L, N).to(dtype)
    A = -(torch.rand(dim, N, generator=g) * 3 + 0.2).to(device)  # fp32 parameter, as in the Mamba block
    return {
        "u": rnd(batch, L, dim).to(dtype),
        "delta": rnd(batch, L, dim, scale=0.5).to(dtype),
        "A": A,
        "B": B,
        "C": C,
        "D": rnd(dim) if has_D else None,
        "z": rnd(batch, L, dim).to(dtype) if has_z else None,
        "delta_bias": rnd(dim, scale=0.5) if has_bias else None,
    }


def run_with_grads(inputs, *, softplus, backend, last_state=True, seed=1, **kw):
    """Forward + backward with fixed random cotangents; returns (out, last, {name: grad})."""
    leaves = {}
    for k, v in inputs.items():
        if v is None:
            leaves[k] = None
        elif k in ("B", "C"):  # keep the strided view: the leaf is the projection it was sliced from
            leaves[k] = v.detach().requires_grad_()
        else:
            leaves[k] = v.detach().clone().requires_grad_()
    out, last = selective_scan(**leaves, delta_softplus=softplus, return_last_state=True, backend=backend, **kw)
    g = torch.Generator().manual_seed(seed)
    g_out = torch.randn(out.shape, generator=g).to(out.device, out.dtype)
    g_last = torch.randn(last.shape, generator=g).to(last.device)
    loss = (out.float() * g_out.float()).sum() + ((last * g_last).sum() if last_state else 0.0)
    loss.backward()
    return out.detach(), last.detach(), {k: v.grad for k, v in leaves.items() if v is not None}


def assert_close(name, got, ref, dtype):
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(got.float(), ref.float(), rtol=rtol, atol=atol, msg=lambda m: f"{name}: {m}")


# ------------------------------------------------------------------------------------------------------ reference


def _mamba_ssm_ref(u, delta, A, B, C, D, z, delta_bias, softplus):
    """mamba_ssm's selective_scan_ref formulation in its (B, D, L) layout, transcribed for the check below."""
    u, delta, z = (t.transpose(1, 2) if t is not None else None for t in (u, delta, z))  # [B, D, L]
    B, C = B.transpose(1, 2), C.transpose(1, 2)  # [B, N, L]
    if delta_bias is not None:
        delta = delta + delta_bias[..., None]
    if softplus:
        delta = F.softplus(delta)
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    x = A.new_zeros(u.shape[0], A.shape[0], A.shape[1])
    ys = []
    for i in range(u.shape[2]):
        x = deltaA[:, :, i] * x + deltaB_u[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", x, C[:, :, i]))
    y = torch.stack(ys, dim=2)
    out = y if D is None else y + u * D[:, None]
    if z is not None:
        out = out * F.silu(z)
    return out.transpose(1, 2), x


@pytest.mark.parametrize("softplus", [True, False], ids=["softplus", "raw"])
def test_ref_matches_mamba_ssm_formulation(softplus):
    x = make_inputs(2, 9, 5, 3)
    out, last = selective_scan_ref(**x, delta_softplus=softplus, return_last_state=True)
    ref_out, ref_last = _mamba_ssm_ref(**x, softplus=softplus)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last, ref_last, rtol=1e-5, atol=1e-5)
    assert out.shape == (2, 9, 5) and last.shape == (2, 5, 3) and last.dtype == torch.float32


def test_ref_gradcheck_float64():
    x = make_inputs(1, 4, 3, 2, dtype=torch.float64)
    x = {k: (v.double().detach().requires_grad_() if v is not None else None) for k, v in x.items()}
    keys = [k for k in NAMES if x[k] is not None]

    def fn(*args):
        kw = dict(zip(keys, args, strict=True))
        out, last = selective_scan_ref(**kw, delta_softplus=True, return_last_state=True)
        return out, last

    assert torch.autograd.gradcheck(fn, tuple(x[k] for k in keys), eps=1e-6, atol=1e-6)


def test_ref_output_dtype_follows_input():
    x = make_inputs(1, 3, 4, 2, dtype=torch.bfloat16)
    assert selective_scan_ref(**x).dtype == torch.bfloat16


# ------------------------------------------------------------------------------------------------------- dispatch


def test_auto_picks_ref_on_cpu_and_records_it():
    x = make_inputs(1, 3, 4, 2)
    out = selective_scan(**x, backend="auto")
    assert last_backend() == "ref"
    torch.testing.assert_close(out, selective_scan_ref(**x))


def test_bad_backend_and_shapes_raise():
    x = make_inputs(1, 3, 4, 2)
    with pytest.raises(ValueError, match="backend"):
        selective_scan(**x, backend="cuda")
    with pytest.raises(ValueError, match="delta_bias"):
        selective_scan(**{**x, "delta_bias": torch.zeros(5)}, backend="ref")
    with pytest.raises(ValueError, match="B must"):
        selective_scan(**{**x, "B": torch.zeros(1, 3, 3)}, backend="ref")


def test_triton_requested_without_triton_raises_with_hint(monkeypatch):
    monkeypatch.setattr(ss, "triton_available", lambda: False)
    x = make_inputs(1, 3, 4, 2)
    with pytest.raises(ImportError, match=r"pip install icllib\[triton\]"):
        selective_scan(**x, backend="triton")
    assert selective_scan(**x, backend="auto").shape == (1, 3, 4)  # auto still runs (the reference)


def test_import_does_not_import_triton():
    code = "import sys, icllib.ops.selective_scan, icllib.ops; print('triton' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"


# --------------------------------------------------------------------------------------- Triton vs the reference

# (id, batch, L, D, N, has_D, has_z, has_bias, softplus, strided_BC): L=1, L=63, L=100; D not a multiple of the
# channel block; B/C strided slices of one projection or contiguous; each optional input on and off.
CASES = [
    ("L1-all", 2, 1, 12, 4, True, True, True, True, True),
    ("L63-all-strided", 1, 63, 10, 4, True, True, True, True, True),
    ("L100-bare", 1, 100, 8, 4, False, False, False, False, False),
    ("L17-z-noD-N3", 2, 17, 9, 3, False, True, False, True, True),
    ("L9-D-bias-raw", 1, 9, 16, 4, True, False, True, False, False),
]


@needs_triton
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_triton_matches_ref_cpu_interpreter(case):
    _, batch, L, dim, N, has_D, has_z, has_bias, softplus, strided = case
    x = make_inputs(batch, L, dim, N, has_D=has_D, has_z=has_z, has_bias=has_bias, strided_BC=strided)
    out, last, grads = run_with_grads(x, softplus=softplus, backend="triton")
    assert last_backend() == "triton"
    r_out, r_last, r_grads = run_with_grads(x, softplus=softplus, backend="ref")
    assert out.dtype == x["u"].dtype and out.shape == (batch, L, dim)
    assert_close("out", out, r_out, torch.float32)
    assert_close("last_state", last, r_last, torch.float32)
    assert set(grads) == set(r_grads)
    for k in r_grads:
        assert torch.isfinite(grads[k]).all(), k
        assert_close(f"d{k}", grads[k], r_grads[k], torch.float32)


@needs_triton
def test_triton_deterministic_is_bitwise_repeatable_and_agrees_with_atomics():
    x = make_inputs(2, 20, 12, 4)
    runs = [run_with_grads(x, softplus=True, backend="triton", deterministic=True) for _ in range(2)]
    atomic = run_with_grads(x, softplus=True, backend="triton", deterministic=False)
    for k in runs[0][2]:
        assert torch.equal(runs[0][2][k], runs[1][2][k]), k
        assert_close(f"d{k}", atomic[2][k], runs[0][2][k], torch.float32)


@needs_triton
def test_triton_no_grad_forward_and_shapes():
    x = make_inputs(1, 5, 6, 2)
    with torch.no_grad():
        out = selective_scan(**x, delta_softplus=True, backend="triton")
    assert out.shape == (1, 5, 6)
    assert_close("out", out, selective_scan_ref(**x, delta_softplus=True), torch.float32)


# ------------------------------------------------------------------------------------------------------------ GPU


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("L", [1, 100, 1024, 4096], ids=lambda v: f"L{v}")
def test_gpu_matches_ref(dtype, L):
    batch, dim = (2, 64) if L <= 1024 else (1, 24)
    x = make_inputs(batch, L, dim, 16, dtype=dtype, device="cuda", seed=L)
    out, last, grads = run_with_grads(x, softplus=True, backend="triton")
    assert last_backend() == "triton"
    r_out, r_last, r_grads = run_with_grads(x, softplus=True, backend="ref")  # fp32 maths, same input values
    assert_close("out", out, r_out, dtype)
    assert_close("last_state", last, r_last, dtype)
    for k in r_grads:
        assert grads[k].dtype == r_grads[k].dtype, k
        assert_close(f"d{k}", grads[k], r_grads[k], dtype)


@pytest.mark.gpu
def test_gpu_torch_compile_fullgraph():
    x = make_inputs(2, 64, 32, 16, device="cuda")
    leaves = {k: (v.detach().clone().requires_grad_() if v is not None else None) for k, v in x.items()}

    @torch.compile(fullgraph=True)
    def f(u, delta, A, B, C, D, z, delta_bias):
        return selective_scan(u, delta, A, B, C, D, z, delta_bias, True, backend="triton").float().square().sum()

    f(**leaves).backward()
    ref_leaves = {k: (v.detach().clone().requires_grad_() if v is not None else None) for k, v in x.items()}
    selective_scan(**ref_leaves, delta_softplus=True, backend="ref").float().square().sum().backward()
    for k, v in ref_leaves.items():
        assert_close(f"d{k}", leaves[k].grad, v.grad, torch.float32)


@pytest.mark.gpu
def test_gpu_cuda_graph_capture():
    x = make_inputs(2, 128, 64, 16, device="cuda")
    static = {k: (v.detach().clone().requires_grad_() if v is not None else None) for k, v in x.items()}

    def step():
        for v in static.values():
            if v is not None:
                v.grad = None
        out = selective_scan(**static, delta_softplus=True, backend="triton")
        out.float().square().sum().backward()
        return out

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):  # warm-up: compile the kernels before capture
            step()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    new = make_inputs(2, 128, 64, 16, device="cuda", seed=7)
    with torch.no_grad():
        for k, v in new.items():
            if v is not None:
                static[k].copy_(v)
    graph.replay()
    torch.cuda.synchronize()
    r_out, _, _ = run_with_grads(new, softplus=True, backend="ref", last_state=False)
    assert_close("out (graph replay on new inputs)", out, r_out, torch.float32)


@needs_triton
def test_triton_pipelined_forward_variant_matches_ref(monkeypatch):
    """The flat software-pipelined forward loop (NS > 0) stores the same outputs and checkpoints as the chunked one."""
    from icllib.ops.selective_scan import triton as tk

    x = make_inputs(2, 13, 10, 4)
    args = [x[k] for k in NAMES]
    out0, last0, ck0 = tk._fwd(*args, True, True, config={"BD": 4, "num_warps": 1, "NS": 0})
    out1, last1, ck1 = tk._fwd(*args, True, True, config={"BD": 4, "num_warps": 1, "NS": 2})
    assert torch.equal(out0, out1) and torch.equal(last0, last1) and torch.equal(ck0, ck1)
    assert_close("out", out1, selective_scan_ref(*args, delta_softplus=True), torch.float32)


@needs_triton
def test_triton_expanded_cotangents():
    """out.sum() + last.sum() hands the backward stride-0 (expanded) gradients for both outputs."""
    x = make_inputs(1, 11, 9, 3)
    grads = {}
    for backend in ("triton", "ref"):
        leaves = {k: (v.detach().clone().requires_grad_() if v is not None else None) for k, v in x.items()}
        out, last = selective_scan(**leaves, delta_softplus=True, return_last_state=True, backend=backend)
        (out.sum() + last.sum()).backward()
        grads[backend] = {k: v.grad for k, v in leaves.items() if v is not None}
    for k, ref in grads["ref"].items():
        assert_close(f"d{k}", grads["triton"][k], ref, torch.float32)


@needs_triton
def test_triton_launch_config_fills_small_grids_and_splits_chunks(monkeypatch):
    """launch_config halves BD while the grid has fewer programs than the fill target; T splits L evenly."""
    from icllib.ops.selective_scan import triton as tk

    tuned = {"fwd": {(4, c): {"BD": 32, "num_warps": 1, "NS": 3} for c in ("short", "long")},
             "bwd": {(4, c): {"BD": 32, "num_warps": 1, "NS": 1, "T": 64} for c in ("short", "long")}}
    monkeypatch.setattr(tk, "TUNED", tuned)
    monkeypatch.setattr(tk, "_INTERPRET", False)
    monkeypatch.setattr(tk, "_num_sms", lambda device: 132)
    cpu = torch.device("cpu")
    assert tk.launch_config("fwd", torch.float32, 64, 82, 512, 16, cpu)["BD"] == 32  # 1024 programs: kept
    assert tk.launch_config("fwd", torch.float32, 1, 82, 512, 16, cpu)["BD"] == tk.MIN_BD  # 16 programs: shrunk
    assert tk.launch_config("bwd", torch.float32, 64, 82, 512, 64, cpu)["BD"] == 8  # N = 64: register budget
    assert tk._chunk(torch.float32, 82) == 48 and tk._chunk(torch.float32, 128) == 64
    assert tk._chunk(torch.float32, 1) == 8 and tk._chunk(torch.float32, 4096) == 64


@needs_triton
def test_triton_explicit_configs_partial_sums_and_persistent_loop():
    """Launchers with explicit configs: odd T (not a power of 2), partial-sum dB/dC, and a persistent backward grid
    of 3 programs looping over 2·2 = 4 work items, against the reference's gradients."""
    from icllib.ops.selective_scan import triton as tk

    x = make_inputs(2, 13, 12, 4)
    args = [x[k] for k in NAMES]
    g = torch.randn(2, 13, 12, generator=torch.Generator().manual_seed(3))
    out, _, ck = tk._fwd(*args, True, True, config={"BD": 8, "num_warps": 1, "NS": 2}, chunk=7)
    assert ck.shape == (2, 2, 12, 4)
    got = tk._bwd(g, None, *args, ck, True, False, config={"BD": 8, "num_warps": 1, "NS": 1, "partial": 1}, chunk=7)
    leaves = [a.detach().clone().requires_grad_() for a in args]
    r_out = selective_scan_ref(*leaves, delta_softplus=True)
    r_grads = torch.autograd.grad(r_out, leaves, g)
    assert_close("out", out, r_out.detach(), torch.float32)
    for name, a, b in zip(NAMES, got, r_grads, strict=True):  # _bwd returns du, ddelta, dA, dB, dC, dD, dz, dbias
        assert_close(f"d{name}", a, b, torch.float32)
    with pytest.raises(ValueError, match="chunks"):
        tk._bwd(g, None, *args, ck[:, :1], True, False)  # T = 8 needs 2 checkpoints


def _make_inputs_cuda(batch: int, L: int, dim: int, N: int, dtype: torch.dtype, seed: int = 0) -> dict:
    """make_inputs, generated on the GPU (large batches: the CPU generator would take seconds)."""
    g = torch.Generator(device="cuda").manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, device="cuda") * scale

    proj = rnd(batch, L, 3 + 2 * N).to(dtype)
    return {
        "u": rnd(batch, L, dim).to(dtype), "delta": rnd(batch, L, dim, scale=0.5).to(dtype),
        "A": -(torch.rand(dim, N, generator=g, device="cuda") * 3 + 0.2),
        "B": proj[..., 3:3 + N], "C": proj[..., 3 + N:],
        "D": rnd(dim), "z": rnd(batch, L, dim).to(dtype), "delta_bias": rnd(dim, scale=0.5),
    }


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("batch", [8192, 16384], ids=lambda v: f"B{v}")
def test_gpu_large_batch_offsets(dtype, batch):
    """B·L·D and the backward's scratch exceed 2^31 elements (int32 offsets overflowed: illegal memory access).
    Forward + backward on the whole batch; outputs and gradients finite; rows 0, 4097 and B-1 against the reference
    run on those rows only (rows are independent)."""
    L, dim, N = 82, 256, 16
    x = _make_inputs_cuda(batch, L, dim, N, dtype, seed=batch)
    leaves = {k: v.detach().requires_grad_() if k in ("B", "C") else v.detach().clone().requires_grad_()
              for k, v in x.items()}
    out, last = selective_scan(**leaves, delta_softplus=True, return_last_state=True, backend="triton")
    g = torch.Generator(device="cuda").manual_seed(1)
    g_out = torch.randn(out.shape, generator=g, device="cuda").to(out.dtype)
    g_last = torch.randn(last.shape, generator=g, device="cuda")
    torch.autograd.backward([out, last], [g_out, g_last])
    torch.cuda.synchronize()
    grads = {k: v.grad for k, v in leaves.items()}
    for name, t in [("out", out), ("last", last), *grads.items()]:
        assert torch.isfinite(t).all(), name
    rows = torch.tensor([0, 4097, batch - 1], device="cuda")
    per_row = ("u", "delta", "B", "C", "z")
    sub = {k: (v[rows] if k in per_row else v) for k, v in x.items()}
    sub = {k: v.detach().clone().requires_grad_() for k, v in sub.items()}
    r_out, r_last = selective_scan(**sub, delta_softplus=True, return_last_state=True, backend="ref")
    torch.autograd.backward([r_out, r_last], [g_out[rows], g_last[rows]])
    assert_close("out", out[rows], r_out, dtype)
    assert_close("last_state", last[rows], r_last, dtype)
    for k in per_row:
        assert_close(f"d{k}", grads[k][rows], sub[k].grad, dtype)
