"""Tables and figures for the Grazzi et al. and Mamba-paper notebooks (07 regression variants and length
extrapolation, 08 layer probing, 09 selective copying and induction heads). Notebooks hold calls only; this is
where their aggregation and plotting lives.

    configs = select(experiments.regression_variants_extrapolation(profile), tasks=["linear_regression"])
    results = load_results(configs)                     # load_or_train each run, read its eval.json
    segment_table(results)                              # error per model on [0, n), [n, 2n), [2n, 4n)
    fig = plot_curves(results, {task: curves.baseline_curves(cfg, ["least_squares"], n_points=164)})

A `Result` is one run's final evaluation (the trainer's eval.json): the error or accuracy per in-context position at
the trained length (`curve`), at longer lengths (`extrapolation`, Grazzi et al.'s and the Mamba paper's length
generalisation) and per layer of a linear probe (`probe`, 0 = the read-in, l = after block l). Positions where no
prompt was scored (token tasks read only some positions) have count 0 and are skipped everywhere.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from icllib.analysis import plotting
from icllib.analysis.curves import model_label, plot_curve, segment_mean
from icllib.config import RunConfig, config_hash
from icllib.store import Run, RunStore
from icllib.training.evaluate import Curve
from icllib.training.train import load_or_train

log = logging.getLogger(__name__)

BASELINE_STYLES: dict[str, dict[str, object]] = {
    "least_squares": {"color": "0.35", "ls": "--"},
    "ridge": {"color": "0.55", "ls": "-."},
    "averaging": {"color": "0.6", "ls": ":"},
    "knn": {"color": "0.7", "ls": ":"},
    "lasso": {"color": "k", "ls": (0, (1, 1))},
    "greedy_tree": {"color": "k", "ls": (0, (1, 1))},
}


# ----------------------------------------------------------------------------------------------------------------
# runs → results


def select(configs: Sequence[RunConfig], tasks: Sequence[str] | None = None,
           models: Sequence[str] | None = None) -> list[RunConfig]:
    """The configs whose task is in `tasks` and model in `models` (None keeps all), in their original order.
    A requested task or model that no config has raises ValueError naming the known ones."""
    for wanted, known in ((tasks, [c.task.name for c in configs]), (models, [model_label(c) for c in configs])):
        missing = sorted(set(wanted or ()) - set(known))
        if missing:
            names = ", ".join(dict.fromkeys(known))
            raise ValueError(f"select: {missing[0]!r} is not in this experiment; known: {names}")
    return [c for c in configs
            if (tasks is None or c.task.name in tasks) and (models is None or model_label(c) in models)]


@dataclass(frozen=True)
class Result:
    """One complete run's final evaluation, keyed by what the figures group on."""

    task: str
    model: str
    config_hash: str
    n_points: int  # the trained prompt length (the length of `curve`)
    n_layers: int  # blocks in the backbone (probe layers run 0..n_layers)
    curve: Curve  # [n_points] metric per position
    extrapolation: dict[int, Curve] = field(default_factory=dict)  # length -> Curve [length]
    probe: dict[int, Curve] = field(default_factory=dict)  # layer -> Curve [n_points]
    lens: dict[str, list[float]] = field(default_factory=dict)  # evaluate.lens_probe: layer, error, sem, scale, shift

    @property
    def metric(self) -> str:
        return self.curve.metric


def result_of(run: Run) -> Result:
    """The `Result` of a complete run, read from its eval.json."""
    data = run.read_json("eval.json")
    return Result(
        task=run.cfg.task.name,
        model=model_label(run.cfg),
        config_hash=config_hash(run.cfg),
        n_points=int(data["n_points"]),
        n_layers=len(run.cfg.model.layers),
        curve=Curve.from_dict(data["curve"]),
        extrapolation={int(n): Curve.from_dict(c) for n, c in data.get("extrapolation", {}).items()},
        probe={int(layer): Curve.from_dict(c) for layer, c in data.get("probe", {}).items()},
        lens=data.get("lens_probe", {}),
    )


def load_results(configs: Sequence[RunConfig], store: RunStore | None = None, *,
                 progress: bool = False) -> list[Result]:
    """`load_or_train` every config (stored runs are read, missing ones trained) and return their Results."""
    out = []
    for cfg in configs:
        run = load_or_train(cfg, store, progress=progress)
        out.append(result_of(run))
        log.info("%s: %s", cfg.name, run.dir)
    return out


# ----------------------------------------------------------------------------------------------------------------
# tables


def _multiple(k: int, n: int) -> str:
    """A position as a multiple of the trained length n: 0, n, 2n, ..."""
    return "0" if k == 0 else "n" if k == n else f"{k / n:g}n"


def segment_table(results: Sequence[Result]) -> pd.DataFrame:
    """Error per (task, model) on position segments: "0-n" from the trained-length curve, then "n-2n" and "2n-4n"
    from the longest extrapolation curve (n = trained points). Columns task, model, segment, start, end,
    error, ratio (the segment's error over the error on the last quarter of [0, n), the well-fitted regime)."""
    rows = []
    for r in results:
        n = r.n_points
        base = segment_mean(r.curve, 3 * n // 4, n)
        rows.append({"task": r.task, "model": r.model, "segment": "0-n", "start": 0, "end": n,
                     "error": segment_mean(r.curve, 0, n), "ratio": 1.0})
        if r.extrapolation:
            longest = r.extrapolation[max(r.extrapolation)]
            edges = sorted({n, *r.extrapolation})
            for start, end in zip(edges[:-1], edges[1:], strict=True):
                err = segment_mean(longest, start, end)
                rows.append({"task": r.task, "model": r.model, "segment": f"{_multiple(start, n)}-{_multiple(end, n)}",
                             "start": start, "end": end, "error": err, "ratio": err / base if base > 0 else math.nan})
    return pd.DataFrame(rows)


def wide(table: pd.DataFrame, columns: str, value: str) -> pd.DataFrame:
    """`table` pivoted to one row per (task, model) and one column per value of `columns`, both kept in the order
    they first appear (not sorted; a probe table's "output" column goes last), e.g.
    `wide(segment_table(results), "segment", "error")`."""
    out = table.pivot(index=["task", "model"], columns=columns, values=value)
    rows = pd.MultiIndex.from_frame(table[["task", "model"]].drop_duplicates())
    cols = sorted(dict.fromkeys(table[columns]), key=lambda c: c == "output")  # stable: only moves "output"
    return out.reindex(index=rows, columns=cols)


def length_table(results: Sequence[Result]) -> pd.DataFrame:
    """The summary metric (mean over scored positions, e.g. accuracy at the read-out tokens) per test length.
    Columns task, model, length, scale (length over the trained length, "1x", "2x", ...), trained (the length
    trained on), metric, value."""
    rows = []
    for r in results:
        for length, curve in sorted({r.n_points: r.curve, **r.extrapolation}.items()):
            rows.append({"task": r.task, "model": r.model, "length": length, "scale": f"{length / r.n_points:g}x",
                         "trained": length == r.n_points, "metric": r.metric, "value": curve.summary()})
    return pd.DataFrame(rows)


def probe_table(results: Sequence[Result], start: int = 0) -> pd.DataFrame:
    """Probe error per layer, averaged over positions `start..`, with the model's own output as the last row
    (layer "output"). Columns task, model, layer, depth (layer / n_layers), error."""
    rows = []
    for r in results:
        if not r.probe:
            raise ValueError(f"{r.task}/{r.model}: eval.json has no 'probe' (the run was not configured to probe)")
        for layer, curve in sorted(r.probe.items()):
            rows.append({"task": r.task, "model": r.model, "layer": str(layer), "depth": layer / r.n_layers,
                         "error": curve.summary(start)})
        rows.append({"task": r.task, "model": r.model, "layer": "output", "depth": 1.0,
                     "error": r.curve.summary(start)})
    return pd.DataFrame(rows)


def lens_table(results: Sequence[Result]) -> pd.DataFrame:
    """Grazzi et al.'s logit-lens probe per layer (`evaluate.lens_probe`): columns task, model, layer, depth
    (layer / n_layers), error, sem, scale, shift. Runs stored without it (trained before it existed) are left out
    with a log line; none having it raises ValueError."""
    rows = []
    for r in results:
        if not r.lens:
            log.warning("%s/%s: eval.json has no 'lens_probe' (trained before it existed); left out", r.task, r.model)
            continue
        for i, layer in enumerate(r.lens["layer"]):
            rows.append({"task": r.task, "model": r.model, "layer": layer, "depth": layer / r.n_layers,
                         **{k: r.lens[k][i] for k in ("error", "sem", "scale", "shift")}})
    if not rows:
        raise ValueError("lens_table: no result has a 'lens_probe' (runs with eval.probe=True store one)")
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------------
# figures


def _tasks(results: Sequence[Result]) -> list[str]:
    return list(dict.fromkeys(r.task for r in results))


def _panels(n: int, width: float = 4.2, height: float = 3.2, cols: int = 3) -> tuple[Figure, list[Axes]]:
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def _baselines(ax: Axes, curves: dict[str, Curve], limit: int) -> None:
    for name, curve in curves.items():
        style = BASELINE_STYLES.get(name, {"color": "0.5", "ls": ":"})
        plot_curve(ax, curve, limit=limit, lw=1.2, label=name.replace("_", " "), **style)


def _legend(axes: Sequence[Axes]) -> None:
    """One legend on the first panel with every label of every panel (a baseline may apply to one task only)."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    axes[0].legend(list(entries.values()), list(entries), fontsize=7)


def plot_curves(results: Sequence[Result], baselines: dict[str, dict[str, Curve]] | None = None,
                ylim: tuple[float, float] = (-0.05, 1.6)) -> Figure:
    """One panel per task: each model's error vs in-context examples up to its trained length, with the
    baselines of that task (`baselines[task][name]`, drawn on the same range) and the zero predictor's level."""
    tasks = _tasks(results)
    fig, axes = _panels(len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        group = [r for r in results if r.task == task]
        n = group[0].n_points
        for r in group:
            plot_curve(ax, r.curve, color=plotting.color(r.model), label=r.model)
        _baselines(ax, (baselines or {}).get(task, {}), n)
        ax.axhline(1.0, color="0.75", ls=":", lw=1)
        ax.set(title=task.replace("_", " "), xlabel="in-context examples $i$", ylim=ylim)
    axes[0].set_ylabel("normalized squared error")
    _legend(axes)
    fig.tight_layout()
    return fig


def plot_extrapolation(results: Sequence[Result], baselines: dict[str, dict[str, Curve]] | None = None,
                       ymax: float = 10.0) -> Figure:
    """One panel per task: each model's error per position on the longest evaluated prompts (log scale), a
    vertical line at the trained length, and the baselines on prompts of the same length."""
    tasks = _tasks(results)
    fig, axes = _panels(len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        group = [r for r in results if r.task == task and r.extrapolation]
        if not group:
            raise ValueError(f"{task}: no run has an 'extrapolation' entry in eval.json")
        longest = max(max(r.extrapolation) for r in group)
        for r in group:
            plot_curve(ax, r.extrapolation[max(r.extrapolation)], color=plotting.color(r.model), label=r.model)
        _baselines(ax, (baselines or {}).get(task, {}), longest)
        ax.axvline(group[0].n_points, color="k", ls="--", lw=1)
        ax.axhline(1.0, color="0.75", ls=":", lw=1)
        ax.set(title=f"{task.replace('_', ' ')} (trained to {group[0].n_points})", xlabel="in-context examples $i$",
               yscale="log", ylim=(1e-3, ymax))
    axes[0].set_ylabel("normalized squared error")
    _legend(axes)
    fig.tight_layout()
    return fig


def plot_probe_depth(results: Sequence[Result], start: int = 0, log: bool | None = None) -> Figure:
    """One panel per task: probe error (averaged over positions `start..`) vs relative depth layer / n_layers per
    model; the model's own output error is the hollow marker at depth 1. `log` (None: when the errors span more
    than a factor of 10) puts the error axis on a log scale."""
    table = probe_table(results, start)
    if log is None:
        log = bool(table.error.max() > 10 * table.error.min())
    tasks = _tasks(results)
    fig, axes = _panels(len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        for model, rows in table[table.task == task].groupby("model", sort=False):
            layers, out = rows[rows.layer != "output"], rows[rows.layer == "output"]
            ax.plot(layers.depth, layers.error, marker="o", color=plotting.color(model), label=f"{model} probe")
            ax.plot(out.depth, out.error, marker="o", mfc="none", ms=9, ls="none", color=plotting.color(model),
                    label=f"{model} output")
        ax.set(title=task.replace("_", " "), xlabel="relative depth (layer / number of blocks)",
               yscale="log" if log else "linear")
    axes[0].set_ylabel(f"probe error (positions {start}+)")
    _legend(axes)
    fig.tight_layout()
    return fig


def plot_probe_positions(results: Sequence[Result], task: str, ylim: tuple[float, float] = (-0.05, 1.6)) -> Figure:
    """One panel per model trained on `task`: probe error vs in-context examples, one line per layer (light = the
    read-in, dark = the last block; no bands), and the model's own output (dashed, with its 90% band)."""
    group = [r for r in results if r.task == task]
    if not group:
        raise ValueError(f"plot_probe_positions: no result for task {task!r}; have {', '.join(_tasks(results))}")
    fig, axes = _panels(len(group))
    for ax, r in zip(axes, group, strict=True):
        cmap = plt.get_cmap("viridis")
        for layer, curve in sorted(r.probe.items()):
            plot_curve(ax, curve, shade=False, color=cmap(1 - layer / max(1, r.n_layers)), lw=1.2,
                       label=f"layer {layer}")
        plot_curve(ax, r.curve, color="k", ls="--", lw=1.2, label="output")
        ax.set(title=f"{r.model} on {task.replace('_', ' ')}", xlabel="in-context examples $i$", ylim=ylim)
        ax.legend(fontsize=6, ncol=2)
    axes[0].set_ylabel("probe error")
    fig.tight_layout()
    return fig


def plot_lens(results: Sequence[Result]) -> Figure:
    """Grazzi et al.'s probing figure: one column per task, rows = query error (log scale, with ±1 SEM bars),
    the fitted scale and the fitted shift, each vs relative depth layer / n_layers, one line per model. Refinement
    shows as error falling with depth, scale → 1 and shift → 0 in the late layers."""
    table = lens_table(results)
    tasks = list(dict.fromkeys(table.task))
    fig, axes = plt.subplots(3, len(tasks), figsize=(4.2 * len(tasks), 8.4), squeeze=False)
    for col, task in enumerate(tasks):
        for model, rows in table[table.task == task].groupby("model", sort=False):
            style = {"marker": "o", "color": plotting.color(model), "label": model}
            axes[0, col].errorbar(rows.depth, rows.error, yerr=rows["sem"], capsize=2, **style)
            axes[1, col].plot(rows.depth, rows["scale"], **style)
            axes[2, col].plot(rows.depth, rows["shift"], **style)  # not .shift: a DataFrame method
        axes[0, col].set(title=task.replace("_", " "), yscale="log")
        axes[1, col].axhline(1.0, color="0.6", lw=0.8, ls=":")
        axes[2, col].axhline(0.0, color="0.6", lw=0.8, ls=":")
        axes[2, col].set_xlabel("relative depth (layer / number of blocks)")
    for row, label in enumerate(("query error (logit lens + affine map)", "fitted scale", "fitted shift")):
        axes[row, 0].set_ylabel(label)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_lengths(results: Sequence[Result], chance: dict[str, float] | None = None) -> Figure:
    """One panel per task: the summary metric (e.g. accuracy) vs test length per model (log2 x axis), with the
    trained length marked and an optional chance level per task."""
    table = length_table(results)
    tasks = _tasks(results)
    fig, axes = _panels(len(tasks), cols=2)
    for ax, task in zip(axes, tasks, strict=True):
        rows = table[table.task == task]
        for model, g in rows.groupby("model", sort=False):
            ax.plot(g.length, g.value, marker="o", color=plotting.color(model), label=model)
        ax.axvline(rows[rows.trained].length.iloc[0], color="k", ls="--", lw=1, label="trained length")
        if chance and task in chance:
            ax.axhline(chance[task], color="0.6", ls=":", lw=1, label="chance")
        ax.set(title=task.replace("_", " "), xlabel="test sequence length", xscale="log", ylim=(-0.03, 1.03))
        ax.set_xscale("log", base=2)
        ax.set_ylabel(rows.metric.iloc[0])
    _legend(axes)
    fig.tight_layout()
    return fig
