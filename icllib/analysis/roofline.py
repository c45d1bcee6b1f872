"""Roofline model and benchmark-report helpers for the selective scan (used by kernels/bench_selective_scan.py and
notebook 10_selective_scan). Imports only icllib.paths, matplotlib (lazily) and the standard library.

The floors (kernels/README.md derives them): a pass can go no faster than its minimal device-memory traffic at the
measured copy bandwidth, nor than its exp-unit (MUFU) work at the measured exp2 rate; the roofline is the larger.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from icllib import paths

COPY_BPS = 3.0e12  # H100 device-to-device copy, bytes read + written per second (measured; kernels/README.md §4)
EXP_PER_S = 4.155e12  # H100 exp2 through Triton, per second (16 per clock per SM; kernels/README.md §4)
ELEMENT_SIZE = {"fp32": 4, "bf16": 2, "fp16": 2}
RESULTS_DIR = paths.REPO_ROOT / "kernels" / "results"


def floors(B: int, D: int, L: int, N: int, dtype: str) -> dict[str, dict[str, float]]:
    """Minimal bytes, MUFU ops and floors (ms) of the forward ("fwd") and forward+backward ("fwdbwd") passes.

    With z, D, delta_bias and softplus. Bytes: the forward reads u, delta, z [B, L, D] and B, C [B, L, N] and writes
    out [B, L, D]; the backward reads u, delta, z, dout, B, C and writes du, ddelta, dz, dB, dC (parameters and the
    fp32 checkpoints are small and not counted). MUFU: exp(Δ A) once per state element and pass (the backward
    recomputes it), plus softplus (exp, log), sigmoid(z) and, in the backward, sigmoid(Δ) per channel element.
    """
    es = ELEMENT_SIZE[dtype]
    bld, bln, bldn = B * L * D, B * L * N, B * L * D * N
    fwd_bytes, bwd_bytes = es * (4 * bld + 2 * bln), es * (7 * bld + 4 * bln)
    fwd_mufu, bwd_mufu = bldn + 3 * bld, bldn + 4 * bld
    out = {}
    for name, by, mu in (("fwd", fwd_bytes, fwd_mufu), ("fwdbwd", fwd_bytes + bwd_bytes, fwd_mufu + bwd_mufu)):
        b_ms, m_ms = by / COPY_BPS * 1e3, mu / EXP_PER_S * 1e3
        out[name] = {"bytes": by, "mufu": mu, "bytes_ms": b_ms, "mufu_ms": m_ms, "floor_ms": max(b_ms, m_ms)}
    return out


def latest_bench(results_dir: str | Path | None = None, pattern: str = "*-selective_scan.json") -> Path:
    """The newest committed benchmark file (names start with the date), e.g. 2026-11-25-h100-selective_scan.json."""
    found = sorted(Path(results_dir or RESULTS_DIR).glob(pattern))
    if not found:
        raise FileNotFoundError(f"no {pattern} under {results_dir or RESULTS_DIR}: run kernels/bench_selective_scan.py")
    return found[-1]


def load_bench(path: str | Path | None = None) -> dict[str, Any]:
    """The benchmark JSON (meta + "rows"); the newest one under kernels/results/ by default."""
    return json.loads(Path(path or latest_bench()).read_text())


def select(rows: list[dict], **match: Any) -> list[dict]:
    """Rows whose fields equal every `match` value."""
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def plot_speed_vs_length(bench: dict[str, Any], *, B: int = 64, D: int = 512, N: int = 16, axes=None):
    """Two panels (forward, forward+backward): ms vs L at fixed B, D, N for the Triton kernel per dtype, the recorded
    mamba_ssm CUDA kernel, and the roofline floor. Returns the figure."""
    import matplotlib.pyplot as plt

    rows = [r for r in bench["rows"] if r.get("impl") == "triton" and (r["B"], r["D"], r["N"]) == (B, D, N)]
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    else:
        fig = axes[0].figure
    styles = {"fp32": ("#1f77b4", "o"), "bf16": ("#d62728", "s")}
    for ax, pname, title in zip(axes, ("fwd", "fwdbwd"), ("forward", "forward + backward"), strict=True):
        for dtype, (col, mk) in styles.items():
            sel = sorted(select(rows, dtype=dtype, **{"pass": pname}), key=lambda r: r["L"])
            if not sel:
                continue
            Ls = [r["L"] for r in sel]
            ax.plot(Ls, [r["ms"] for r in sel], color=col, marker=mk, label=f"Triton {dtype}")
            ax.plot(Ls, [floors(B, D, L, N, dtype)[pname]["floor_ms"] for L in Ls], color=col, ls=":", lw=1,
                    label=f"roofline {dtype}")
            cuda = [(r["L"], r["mamba_ssm_cuda_ms"]) for r in sel if r.get("mamba_ssm_cuda_ms")]
            if cuda:
                ax.plot(*zip(*cuda, strict=True), color=col, marker="x", ls="none", ms=8, mew=2,
                        label=f"mamba_ssm CUDA {dtype}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L")
        ax.set_title(f"{title} (B={B}, D={D}, N={N})")
    axes[0].set_ylabel("time per call (ms)")
    axes[1].legend(fontsize=7, loc="upper left")
    return fig


def table(bench: dict[str, Any], shapes: tuple[str, ...] = ("icl", "long", "lm", "n64")) -> list[dict[str, Any]]:
    """One dict per named-shape row, rounded for printing: ms, % of roofline, speed-up over mamba_ssm CUDA."""
    out = []
    for r in bench["rows"]:
        if r.get("impl") != "triton" or r.get("shape") not in shapes:
            continue
        cuda = r.get("mamba_ssm_cuda_ms")
        out.append({
            "shape": r["shape"], "dtype": r["dtype"], "pass": r["pass"], "ms": round(r["ms"], 3),
            "pct_roofline": round(r["pct_of_roofline"], 1), "cuda_ms": round(cuda, 3) if cuda else None,
            "vs_cuda": round(cuda / r["ms"], 2) if cuda else None,
            "ref_ms": round(r["ref_ms"], 1) if r.get("ref_ms") else None,
        })
    return out
