"""Paper-style figures, saved byte-stably with a JSON sidecar.

    plotting.use_paper_style()
    fig, ax = plt.subplots()
    ...
    plotting.savefig(fig, "02_results_grid", profile="paper", sidecar={"config_hashes": [...]})

writes `figures/02_results_grid.png`, `.pdf` and `.json` (the smoke profile writes under `figures/smoke/`,
which git ignores). PNG and PDF carry fixed metadata (no creation date, a fixed producer), so saving the same
figure twice gives identical bytes. The sidecar records the parameters, the config hashes of the runs the figure
was drawn from, and the provenance (git sha, versions, device).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.figure import Figure

from icllib import paths
from icllib.repro import provenance
from icllib.store import atomic_write_bytes, atomic_write_json

# One colour per architecture, used by every figure so a model keeps its colour across the notebooks.
MODEL_COLORS: dict[str, str] = {
    "transformer": "#1f77b4",
    "mamba": "#d62728",
    "mambaformer": "#2ca02c",
    "standard_hybrid": "#9467bd",
    "mamba_s4": "#ff7f0e",
    "s4d": "#8c564b",
    "rwkv": "#e377c2",
    "least_squares": "#7f7f7f",
    "baseline": "#7f7f7f",
}

_PNG_METADATA = {"Software": "icllib"}
_PDF_METADATA = {"Creator": "icllib", "Producer": "icllib", "CreationDate": None, "ModDate": None}


def use_paper_style() -> None:
    """Seaborn's paper context with a white grid, embedded TrueType fonts and a fixed hash salt."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "pdf.fonttype": 42,
            "ps.fonttype": 42,
            "svg.hashsalt": "icllib",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
        }
    )


def color(model: str) -> str:
    """The fixed colour of an architecture (grey for anything unknown)."""
    return MODEL_COLORS.get(model, "#7f7f7f")


def figure_dir(profile: str, figures_dir: str | Path | None = None) -> Path:
    """`figures/` for the paper profile, `figures/<profile>/` otherwise."""
    base = Path(figures_dir) if figures_dir is not None else paths.FIGURES_DIR
    return base if profile == "paper" else base / profile


def render(fig: Figure, fmt: str) -> bytes:
    """The bytes of `fig` in format `fmt` ("png" or "pdf") with fixed metadata."""
    buf = io.BytesIO()
    metadata = _PNG_METADATA if fmt == "png" else _PDF_METADATA
    fig.savefig(buf, format=fmt, metadata=metadata)
    return buf.getvalue()


def savefig(
    fig: Figure,
    name: str,
    *,
    profile: str = "paper",
    sidecar: dict[str, Any] | None = None,
    figures_dir: str | Path | None = None,
) -> list[Path]:
    """Save `fig` as `<name>.png`, `<name>.pdf` and a `<name>.json` sidecar; returns the three paths."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"figure name: {name!r} must be a plain file stem like '02_results_grid'")
    out = figure_dir(profile, figures_dir)
    written = []
    for fmt in ("png", "pdf"):
        path = out / f"{name}.{fmt}"
        atomic_write_bytes(path, render(fig, fmt))
        written.append(path)
    meta = {"figure": name, "profile": profile, **(sidecar or {}), "provenance": provenance()}
    json.dumps(meta, allow_nan=False)  # fail before writing anything if the sidecar is not JSON
    path = out / f"{name}.json"
    atomic_write_json(path, meta)
    written.append(path)
    return written
