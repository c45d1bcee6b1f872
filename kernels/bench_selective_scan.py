"""Benchmark the Triton selective scan against its roofline, the pure-torch reference and the recorded mamba_ssm CUDA.

    PYTHONPATH=. python kernels/bench_selective_scan.py --out kernels/results/2026-11-25-h100-selective_scan.json
    PYTHONPATH=. python kernels/bench_selective_scan.py --sweep --shapes long --out sweep.json   # config search
    PYTHONPATH=. python kernels/bench_selective_scan.py --sweep-icl --out scan_sweep.json        # ICL shapes, ~3 min
    PYTHONPATH=. python kernels/bench_selective_scan.py --check-large --out scan_large.json       # B = 8192, 16384

Prints one JSON row per (shape, dtype, pass) on stdout and writes them all (with device/version provenance) to --out.
Every row: ms (median of CUDA-event timings of CUDA-graph replays after warm-up: device time), eager_ms (the
same call launched eagerly, host overhead included), GB/s over the minimal bytes, % of the roofline (the larger of
the bytes floor and the exp-unit floor, kernels/README.md derives both), the reference's ms (eager; timed here for
the shapes where it is affordable, else null), and the recorded mamba_ssm CUDA ms from kernels/results/anchors/.
All runs use z, D, delta_bias and delta_softplus=True, contiguous channels-last inputs, and a fp32 A/D/bias.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from icllib.analysis.roofline import COPY_BPS, EXP_PER_S, floors  # noqa: E402
from icllib.ops.selective_scan import selective_scan, selective_scan_ref  # noqa: E402

SHAPES = {  # name: (B, D, L, N)
    "icl": (64, 512, 128, 16),
    "long": (64, 512, 1024, 16),
    "lm": (16, 1536, 2048, 16),
    "n64": (64, 512, 1024, 64),
}
LSWEEP = {f"L{L}": (64, 512, L, 16) for L in (256, 512, 2048, 4096)}  # with icl and long: time vs L
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
ANCHOR = ROOT / "kernels" / "results" / "anchors" / "2026-11-24-h100-mamba_ssm-side_by_side.json"


ICL_SHAPES = {"icl_L82": (64, 512, 82, 16), "icl_L128": (64, 512, 128, 16), "icl_D256_L82": (64, 256, 82, 16)}


def make_inputs(shape: str | tuple[int, int, int, int], dtype: torch.dtype, seed: int = 0) -> dict[str, torch.Tensor]:
    B, D, L, N = shape if isinstance(shape, tuple) else {**SHAPES, **LSWEEP, **ICL_SHAPES}[shape]
    g = torch.Generator(device="cuda").manual_seed(seed)

    def rnd(*s, scale=1.0):
        return torch.randn(*s, generator=g, device="cuda") * scale

    return {
        "u": rnd(B, L, D).to(dtype), "delta": rnd(B, L, D, scale=0.5).to(dtype),
        "A": -(torch.rand(D, N, generator=g, device="cuda") * 15 + 1), "B": rnd(B, L, N).to(dtype),
        "C": rnd(B, L, N).to(dtype), "D": rnd(D), "z": rnd(B, L, D).to(dtype), "delta_bias": rnd(D, scale=0.5),
    }


def time_ms(fn, warmup: int = 10, reps: int = 50) -> float:
    """Median of CUDA-event timings of fn() after warm-up."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times)


def time_graph_ms(make_fn, warmup: int = 3, reps: int = 50) -> float:
    """Median of CUDA-event timings of replays of a CUDA graph of make_fn()(): device time without host launch
    overhead. make_fn builds the callable (and its leaf tensors) on the side stream, so autograd's per-leaf nodes
    belong to the capturing stream."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn = make_fn()
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return time_ms(graph.replay, warmup=3, reps=reps)


def passes(x: dict, backend: str):
    """(fwd, fwdbwd) callables; fwd runs with inputs that require grad (so it also writes the checkpoints)."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in x.items()}
    keys = list(leaves)
    g = torch.randn_like(x["u"])

    def fwd():
        return selective_scan(**leaves, delta_softplus=True, backend=backend)

    def fwdbwd():
        out = selective_scan(**leaves, delta_softplus=True, backend=backend)
        return torch.autograd.grad(out, [leaves[k] for k in keys], g)

    return fwd, fwdbwd


def anchors() -> dict:
    if not ANCHOR.exists():
        return {}
    rows = json.loads(ANCHOR.read_text())["rows"]
    return {(r["shape"], {"float32": "fp32", "bfloat16": "bf16"}[r["dtype"]]): r for r in rows}


def sweep(shapes: list[str], dtypes: list[str]) -> list[dict]:
    """Time launch configs of the forward and backward kernels directly (no autograd)."""
    from icllib.ops.selective_scan import triton as tk

    fwd_cfgs = [dict(BD=bd, num_warps=w, NS=ns) for bd, w, ns in (
        (8, 1, 0), (16, 1, 2), (32, 1, 3), (32, 1, 5), (64, 1, 3), (64, 1, 5), (64, 2, 3), (128, 2, 3))]
    bwd_cfgs = [(dict(BD=bd, num_warps=w, NS=ns), T) for bd, w, ns, T in (
        (8, 1, 1, 16), (16, 1, 1, 16), (16, 1, 2, 16), (16, 2, 2, 16), (32, 2, 2, 16), (32, 4, 2, 32),
        (16, 1, 3, 32), (32, 1, 2, 32))]
    rows = []
    for shape in shapes:
        for dn in dtypes:
            x = make_inputs(shape, DTYPES[dn])
            args = [x[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
            for cfg in fwd_cfgs:
                try:
                    ms = time_ms(lambda cfg=cfg, args=args: tk._fwd(*args, True, True, config=cfg), warmup=5, reps=30)
                except Exception as e:  # a config that does not compile or run is recorded, not fatal
                    ms = None
                    print(f"fwd {cfg} failed: {e!r}"[:300], file=sys.stderr)
                rows.append({"sweep": "fwd", "shape": shape, "dtype": dn, "cfg": cfg,
                             "chunk": tk._chunk(DTYPES[dn], x["u"].shape[1]), "ms": ms})
                print(json.dumps(rows[-1]), flush=True)
            g = torch.randn_like(x["u"])
            ckpts = {T: tk._fwd(*args, True, True, config=dict(BD=16, num_warps=1, NS=2), chunk=T)[2] for T in (16, 32)}
            for cfg, T in bwd_cfgs:
                try:
                    ms = time_ms(lambda cfg=cfg, T=T, g=g, args=args, ck=ckpts[T]: tk._bwd(
                        g, None, *args, ck, True, False, config=cfg, chunk=T), warmup=3, reps=20)
                except Exception as e:
                    ms = None
                    print(f"bwd {cfg} T{T} failed: {e!r}"[:300], file=sys.stderr)
                rows.append({"sweep": "bwd", "shape": shape, "dtype": dn, "cfg": cfg, "chunk": T, "ms": ms})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def breakdown(dtypes: list[str], shape: str = "long") -> list[dict]:
    """Where the time goes: the kernels launched directly (no autograd, no graph), with options switched off one at a
    time; the backward with atomics and with the deterministic partial sums."""
    rows = []
    for dn in dtypes:
        for name, fn in _breakdown_cases(shape, dn).items():
            rows.append({"breakdown": name, "shape": shape, "dtype": dn, "ms": time_ms(fn, warmup=5, reps=30)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _breakdown_cases(shape: str, dn: str) -> dict:
    from icllib.ops.selective_scan import triton as tk

    x = make_inputs(shape, DTYPES[dn])
    full = [x[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
    bare = full[:5] + [None, None, None]
    _, _, ckpt = tk._fwd(*full, True, True)
    _, _, ckpt_bare = tk._fwd(*bare, False, True)
    _, _, ckpt64 = tk._fwd(*full, True, True, chunk=64)
    _, _, ckpt32 = tk._fwd(*full, True, True, chunk=32)
    g = torch.randn_like(x["u"])
    return {
        "bwd_cfg BD64 w2 NS2 T32": lambda: tk._bwd(g, None, *full, ckpt32, True, False,
                                                   config=dict(BD=64, num_warps=2, NS=2), chunk=32),
        "bwd_cfg BD32 w1 NS3 T64": lambda: tk._bwd(g, None, *full, ckpt64, True, False,
                                                   config=dict(BD=32, num_warps=1, NS=3), chunk=64),
        "fwd": lambda: tk._fwd(*full, True, True),
        "fwd_no_ckpt": lambda: tk._fwd(*full, True, False),
        "fwd_bare (no z, D, bias, softplus)": lambda: tk._fwd(*bare, False, False),
        "bwd_atomic": lambda: tk._bwd(g, None, *full, ckpt, True, False),
        "bwd_deterministic": lambda: tk._bwd(g, None, *full, ckpt, True, True),
        "bwd_bare_atomic": lambda: tk._bwd(g, None, *bare, ckpt_bare, False, False),
    }


def apply_best(rows: list[dict]) -> dict:
    """Set the Triton launch configs to the fastest of a sweep, per dtype; returns what was set."""
    from icllib.ops.selective_scan import triton as tk

    chosen = {}
    for dn, dtype in DTYPES.items():
        es = 4 if dtype.itemsize >= 4 else 2
        for kind in ("fwd", "bwd"):
            ok = [r for r in rows if r["sweep"] == kind and r["dtype"] == dn and r["ms"] is not None]
            if not ok:
                continue
            best = min(ok, key=lambda r: r["ms"])
            cfg = dict(best["cfg"], **({"T": best["chunk"]} if kind == "bwd" else {}))
            tk.TUNED[kind][(es, "long")] = cfg
            chosen[f"{kind}_{dn}"] = {**cfg, "ms": best["ms"]}
    print(json.dumps({"chosen": chosen}), flush=True)
    return chosen


def bench(shapes: list[str], dtypes: list[str], ref_shapes: set[str], ref_fb_shapes: set[str]) -> list[dict]:
    anc = anchors()
    rows = []
    for shape in shapes:
        for dn in dtypes:
            dtype = DTYPES[dn]
            x = make_inputs(shape, dtype)
            fl = floors(*{**SHAPES, **LSWEEP}[shape], dn)
            # correctness on this very input (forward), against the fp32 reference
            ref_out = selective_scan_ref(**x, delta_softplus=True) if shape in ref_shapes else None
            tri_fwd, tri_fb = passes(x, "triton")
            rel_err = None
            if ref_out is not None:
                out = tri_fwd().float()
                rel_err = ((out - ref_out.float()).norm() / ref_out.float().norm()).item()
            ref_fwd, ref_fb = passes(x, "ref")
            for pname, tri, ref in (("fwd", tri_fwd, ref_fwd), ("fwdbwd", tri_fb, ref_fb)):
                eager_ms = time_ms(tri)
                ms = time_graph_ms(lambda pname=pname, x=x: passes(x, "triton")[0 if pname == "fwd" else 1])
                timed = ref_shapes if pname == "fwd" else ref_fb_shapes
                ref_ms = time_ms(ref, warmup=1, reps=2) if shape in timed else None
                a = anc.get((shape, dn), {})
                f = fl[pname]
                B, D, L, N = {**SHAPES, **LSWEEP}[shape]
                row = {
                    "shape": shape, "B": B, "D": D, "L": L, "N": N, "dtype": dn, "pass": pname, "impl": "triton",
                    "ms": ms, "eager_ms": eager_ms,
                    "GBps": f["bytes"] / ms / 1e6, "floor_ms": f["floor_ms"], "bytes_floor_ms": f["bytes_ms"],
                    "mufu_floor_ms": f["mufu_ms"], "pct_of_roofline": 100 * f["floor_ms"] / ms,
                    "ref_ms": ref_ms, "mamba_ssm_cuda_ms": a.get(f"cuda_{pname}_ms"),
                    "fwd_rel_err_vs_ref": rel_err,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
            del ref_out
            torch.cuda.empty_cache()
    return rows


# ------------------------------------------------------------------------------------------- ICL sweep, large batch

# Priority order: configs earlier in a list are timed first, so a budget cut drops the least promising ones.
# fwd: (BD, num_warps, NS); bwd: (BD, num_warps, NS, T_max) (T = split_chunk(L, T_max)).
ICL_FWD = [(32, 1, 5), (64, 1, 3), (16, 1, 3), (8, 1, 3), (16, 1, 1), (8, 1, 1), (4, 1, 1), (32, 1, 3), (32, 2, 3),
           (64, 2, 3), (16, 2, 3), (64, 1, 1), (32, 1, 1), (16, 1, 2), (8, 1, 2), (4, 1, 3), (32, 4, 3), (64, 4, 3),
           (16, 4, 2), (8, 2, 2)]
ICL_BWD = [(32, 1, 3, 64), (16, 1, 1, 16), (16, 1, 1, 64), (16, 1, 2, 64), (8, 1, 1, 64), (8, 1, 2, 64),
           (16, 1, 1, 32), (8, 1, 1, 32), (4, 1, 1, 64), (32, 1, 2, 64), (32, 1, 1, 32), (16, 1, 3, 64),
           (8, 1, 3, 64), (16, 2, 2, 64), (32, 2, 2, 64), (8, 1, 1, 16), (4, 1, 2, 32), (32, 1, 3, 32),
           (64, 2, 2, 64), (16, 2, 1, 32), (4, 1, 1, 16), (8, 2, 1, 64)]
ICL_RUNS = [("icl_L128", "fp32", 0.22), ("icl_L128", "bf16", 0.22), ("icl_L82", "fp32", 0.2), ("icl_L82", "bf16", 0.2),
            ("icl_D256_L82", "fp32", 0.08), ("icl_D256_L82", "bf16", 0.08)]  # (shape, dtype, share of the budget)


def _timed(fn, warmup: int = 3, reps: int = 20) -> tuple[float | None, str | None]:
    """(median ms, None), or (None, error) for a config that does not compile or run: recorded, not fatal."""
    try:
        return time_ms(fn, warmup=warmup, reps=reps), None
    except Exception as e:  # noqa: BLE001
        torch.cuda.synchronize()  # raises again if the context is gone; then the whole sweep stops here
        return None, repr(e)[:300]


def sweep_icl(budget_s: float, out: Path | None, meta: dict) -> dict:
    """Time the forward and the backward kernel (launched directly, eager, no autograd) for each config of ICL_FWD /
    ICL_BWD at the ICL shapes; then the best pair and the TUNED pair through the public op (fwd+bwd, CUDA graph).
    Each (shape, dtype) gets its share of budget_s (compiles dominate); configs past it are recorded as skipped."""
    from icllib.ops.selective_scan import triton as tk

    rows, best = [], {}
    res = {**meta, "what": "sweep-icl", "rows": rows, "best": best}
    keys = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    for shape, dn, share in ICL_RUNS:
        t_fwd_end, t_end = time.time() + 0.35 * share * budget_s, time.time() + share * budget_s
        dtype = DTYPES[dn]
        B, D, L, N = ICL_SHAPES[shape]
        x = make_inputs(shape, dtype)
        args = [x[k] for k in keys]
        g = torch.randn_like(x["u"])
        base = {"shape": shape, "B": B, "D": D, "L": L, "N": N, "dtype": dn}
        ckpts: dict[int, torch.Tensor] = {}
        for bd, w, ns in ICL_FWD:
            cfg = dict(BD=bd, num_warps=w, NS=ns)
            row = {**base, "kind": "fwd", "cfg": cfg, "T": tk._chunk(dtype, L)}
            if time.time() > t_fwd_end:
                row["skipped"] = "budget"
            else:
                row["ms"], row["error"] = _timed(lambda cfg=cfg, args=args: tk._fwd(*args, True, True, config=cfg))
            rows.append(row)
            print(json.dumps(row), flush=True)
        bwd_rows = []
        for bd, w, ns, t_max in ICL_BWD:
            cfg = dict(BD=bd, num_warps=w, NS=ns, T=t_max, partial=0)
            T = tk.split_chunk(L, t_max)
            row = {**base, "kind": "bwd", "cfg": cfg, "T": T}
            if time.time() > t_end:
                row["skipped"] = "budget"
            else:
                if T not in ckpts:
                    ckpts[T] = tk._fwd(*args, True, True, config=dict(BD=32, num_warps=1, NS=3), chunk=T)[2]
                row["ms"], row["error"] = _timed(lambda cfg=cfg, T=T, g=g, args=args, ck=ckpts[T]: tk._bwd(
                    g, None, *args, ck, True, False, config=cfg, chunk=T))
            rows.append(row)
            bwd_rows.append(row)
            print(json.dumps(row), flush=True)
        for r in sorted((r for r in bwd_rows if r.get("ms")), key=lambda r: r["ms"])[:2]:  # partial sums, top 2
            if time.time() > t_end + 5:
                break
            cfg = dict(r["cfg"], partial=1)
            row = {**base, "kind": "bwd", "cfg": cfg, "T": r["T"]}
            row["ms"], row["error"] = _timed(lambda cfg=cfg, T=r["T"], g=g, args=args, ck=ckpts[r["T"]]: tk._bwd(
                g, None, *args, ck, True, False, config=cfg, chunk=T))
            rows.append(row)
            print(json.dumps(row), flush=True)
        best[f"{shape}/{dn}"] = _best_pair(tk, rows, shape, dn, x)
        print(json.dumps({"best": f"{shape}/{dn}", **best[f"{shape}/{dn}"]}), flush=True)
        ckpts.clear()
        torch.cuda.empty_cache()
        if out:
            out.write_text(json.dumps(res, indent=1) + "\n")
    res["suggested_short"] = _suggest(rows)
    print("suggested TUNED entries (short class):\n" + json.dumps(res["suggested_short"], indent=1), flush=True)
    return res


def _best_pair(tk, rows: list[dict], shape: str, dn: str, x: dict) -> dict:
    """Fastest fwd and bwd config of one (shape, dtype); fwd+bwd of that pair and of TUNED through the public op."""
    mine = [r for r in rows if r["shape"] == shape and r["dtype"] == dn and r.get("ms")]
    f = min((r for r in mine if r["kind"] == "fwd"), key=lambda r: r["ms"], default=None)
    b = min((r for r in mine if r["kind"] == "bwd"), key=lambda r: r["ms"], default=None)
    res = {"fwd": f and {"cfg": f["cfg"], "ms": f["ms"]}, "bwd": b and {"cfg": b["cfg"], "T": b["T"], "ms": b["ms"]}}
    es = 4 if DTYPES[dn].itemsize >= 4 else 2
    L = x["u"].shape[1]
    saved = {k: dict(tk.TUNED[k][(es, tk.shape_class(L))]) for k in ("fwd", "bwd")}
    try:
        res["tuned_fwdbwd_ms"] = time_graph_ms(lambda: passes(x, "triton")[1])
        if f and b:
            tk.TUNED["fwd"][(es, tk.shape_class(L))] = dict(f["cfg"])
            tk.TUNED["bwd"][(es, tk.shape_class(L))] = dict(b["cfg"])
            res["best_fwdbwd_ms"] = time_graph_ms(lambda: passes(x, "triton")[1])
            res["best_fwdbwd_eager_ms"] = time_ms(passes(x, "triton")[1])
    except Exception as e:  # noqa: BLE001
        res["error"] = repr(e)[:300]
    finally:
        for k, v in saved.items():
            tk.TUNED[k][(es, tk.shape_class(L))] = v
    return res


def _suggest(rows: list[dict]) -> dict:
    """Per kind and dtype, the config with the least summed ms over the ICL shapes where every shape timed it."""
    out = {}
    for kind in ("fwd", "bwd"):
        for dn in DTYPES:
            mine = [r for r in rows if r["kind"] == kind and r["dtype"] == dn]
            shapes = {r["shape"] for r in mine}
            by_cfg: dict[str, list[float]] = {}
            for r in mine:
                if r.get("ms"):
                    by_cfg.setdefault(json.dumps(r["cfg"], sort_keys=True), []).append(r["ms"])
            full = {c: sum(v) for c, v in by_cfg.items() if len(v) == len(shapes)}
            if full:
                c = min(full, key=full.get)
                out[f"{kind}/{dn}"] = {"cfg": json.loads(c), "sum_ms": full[c], "n_shapes": len(shapes)}
    return out


def check_large(meta: dict, out: Path | None) -> dict:
    """Forward + backward at B = 8192 and 16384 (L 82, N 16, D 256 and 512, fp32 and bf16), where int32 offsets
    used to overflow: finite outputs and gradients, rows 0, 4097 and B-1 against the reference on those rows."""
    rows = []
    res = {**meta, "what": "check-large", "rows": rows}
    for batch, D, dn in ((8192, 256, "fp32"), (8192, 256, "bf16"), (16384, 256, "fp32"), (16384, 256, "bf16"),
                         (8192, 512, "fp32"), (16384, 512, "bf16")):
        row = {"B": batch, "D": D, "L": 82, "N": 16, "dtype": dn}
        try:
            row.update(_check_large_one(batch, D, DTYPES[dn]))
        except Exception as e:  # noqa: BLE001
            row["error"] = repr(e)[:500]
        rows.append(row)
        print(json.dumps(row), flush=True)
        torch.cuda.empty_cache()
        if out:
            out.write_text(json.dumps(res, indent=1) + "\n")
    return res


def _check_large_one(batch: int, D: int, dtype: torch.dtype) -> dict:
    L, N = 82, 16
    x = make_inputs((batch, D, L, N), dtype, seed=batch)
    leaves = {k: v.detach().clone().requires_grad_() for k, v in x.items()}
    g = torch.randn_like(x["u"])
    t0 = time.time()
    out = selective_scan(**leaves, delta_softplus=True, backend="triton")
    out.backward(g)
    torch.cuda.synchronize()
    wall = time.time() - t0
    finite = {k: bool(torch.isfinite(v).all()) for k, v in [("out", out)] + [(k, v.grad) for k, v in leaves.items()]}
    ms = time_ms(lambda: torch.autograd.grad(selective_scan(**leaves, delta_softplus=True, backend="triton"),
                                             list(leaves.values()), g), warmup=1, reps=3)
    rows = torch.tensor([0, 4097, batch - 1], device="cuda")
    per_row = ("u", "delta", "B", "C", "z")
    sub = {k: (v[rows] if k in per_row else v).detach().clone().requires_grad_() for k, v in x.items()}
    selective_scan(**sub, delta_softplus=True, backend="ref").backward(g[rows])
    r_out = selective_scan_ref(**{k: v.detach() for k, v in sub.items()}, delta_softplus=True)
    err = {"out": _rel(out[rows], r_out)}
    err.update({f"d{k}": _rel(leaves[k].grad[rows], sub[k].grad) for k in per_row})
    return {"first_call_s": wall, "fwdbwd_eager_ms": ms, "finite": finite, "all_finite": all(finite.values()),
            "rel_err_rows": err, "max_rel_err": max(err.values())}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


def _configs() -> dict:
    from icllib.ops.selective_scan import triton as tk

    return {kind: {f"{es},{cls}": dict(c) for (es, cls), c in v.items()} for kind, v in tk.TUNED.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="icl,long,lm,n64")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--ref-shapes", default="icl,long", help="shapes whose pure-torch reference forward is timed")
    ap.add_argument("--ref-fwdbwd-shapes", default="icl", help="... and forward+backward (long: ~6 s a call)")
    ap.add_argument("--sweep", action="store_true", help="time kernel launch configs instead")
    ap.add_argument("--tune", action="store_true", help="sweep configs on the long shape, apply the best, then bench")
    ap.add_argument("--breakdown", action="store_true", help="time the kernels with options switched off")
    ap.add_argument("--lsweep", action="store_true", help="also time B64 D512 N16 at L = 256, 512, 2048, 4096")
    ap.add_argument("--sweep-icl", action="store_true", help="config sweep at the ICL shapes (B64 D512/256 L82/128)")
    ap.add_argument("--budget-s", type=float, default=150.0, help="--sweep-icl: seconds for all shapes together")
    ap.add_argument("--check-large", action="store_true", help="fwd+bwd at B = 8192, 16384 (int64 offsets)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    import triton

    t0 = time.time()
    if a.sweep_icl or a.check_large:
        meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
                "configs": _configs(), "timing": "ms: median of 20 CUDA-event timings after 3 warm-up calls, eager "
                "kernel launches (no autograd); *_fwdbwd_ms: CUDA-graph replays of the public op's fwd+bwd"}
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
        res = {**meta, "partial": True}
        try:  # a lost CUDA context (illegal access) ends the run; what was measured is still written
            res = sweep_icl(a.budget_s, a.out, meta) if a.sweep_icl else check_large(meta, a.out)
        finally:
            res["wall_s"] = time.time() - t0
            if a.out and ("rows" in res or not a.out.exists()):
                a.out.write_text(json.dumps(res, indent=1) + "\n")
        return
    shapes, dtypes = a.shapes.split(","), a.dtypes.split(",")
    chosen, sweep_rows = None, None
    if a.sweep:
        rows = sweep(shapes, dtypes)
    elif a.breakdown:
        rows = breakdown(dtypes)
    else:
        if a.tune:
            sweep_rows = sweep(["long"], dtypes)
            chosen = apply_best(sweep_rows)
        if a.lsweep:
            shapes = shapes + list(LSWEEP)
        rows = bench(shapes, dtypes, set(a.ref_shapes.split(",")) if a.ref_shapes else set(),
                     set(a.ref_fwdbwd_shapes.split(",")) if a.ref_fwdbwd_shapes else set())
    meta = {
        "device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
        "what": "sweep" if a.sweep else "breakdown" if a.breakdown else "bench", "wall_s": time.time() - t0,
        "options": "z, D, delta_bias, delta_softplus=True; contiguous (B, L, D) / (B, L, N) inputs; fp32 A, D, bias",
        "timing": "ms: median of 50 CUDA-event timings of CUDA-graph replays after warm-up (device time); eager_ms: "
                  "the same call launched eagerly (adds host overhead: custom op + autograd + Triton launch); "
                  "reference: eager, median of 2 after 1",
        "anchor": str(ANCHOR.relative_to(ROOT)), "copy_Bps": COPY_BPS, "exp_per_s": EXP_PER_S,
        "configs": _configs(), "tuned": chosen, "rows": rows, "sweep": sweep_rows,
    }
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
