"""From run records to the tables and figures of the Park et al. notebooks (02–06); notebooks hold calls only.

    configs = experiments.results_grid(profile)
    runs = report.load_runs(configs)                        # load_or_train each config, in order
    table = report.final_table(configs, runs)               # one row per run: task, model, seed, d_model, final, ...
    report.heatmap(ax, table, rows=models, cols=tasks)      # annotated grid of the final metrics
    curves.plot_curve(ax, final_curve(run), label="mamba", color=plotting.color("mamba"))
    history = report.history_table(configs, runs)           # late-position metric vs training step (metrics.jsonl)
    report.plot_spread(ax, history, "mamba")                # mean over seeds, min–max band, one thin line per seed

"Final" means the metric averaged over the *late* positions of the final evaluation curve (`curves.late_metric`):
the last `tail` (a quarter) of the positions where the metric is defined. Early positions are unidentifiable by
construction (fewer examples than unknowns: i < d for regression, about 6–10 examples for 2-sparse parity over 10
bits), so averaging over all positions would mostly measure the prompt length; the last quarter is past that point
for every Park task (linear regression N = 41: positions 31–40; parity N = 140: 105–139; MQAR: its single query).

Colours in `heatmap` are a *skill* score shared by error and accuracy metrics: 0 is the trivial predictor, the best
one that ignores the in-context examples (the zero predictor for normalised errors, whose error is about 1; for
accuracies 1/K for the nearest of K values, and for sparse parity the vote over all hidden subsets, 71/128 at d=10,
k=2, not 1/2), 1 is perfect. Cells are annotated with the raw metric.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from icllib.analysis.curves import TAIL, Z90, late_metric, model_label, plot_curve, values_curve
from icllib.analysis.plotting import color
from icllib.config import RunConfig, config_hash
from icllib.store import Run, RunStore
from icllib.tasks import build_task
from icllib.training.evaluate import Curve
from icllib.training.train import final_curve, load_or_train

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# runs and their labels


def load_runs(configs: Sequence[RunConfig], store: RunStore | None = None) -> list[Run]:
    """The complete run of every config, in order: from the store when there, trained (or resumed) otherwise."""
    runs = []
    for i, cfg in enumerate(configs):
        log.info("run %d/%d: %s (%s)", i + 1, len(configs), cfg.name, config_hash(cfg))
        runs.append(load_or_train(cfg, store, progress=False))
    return runs


def chance_level(cfg: RunConfig) -> float:
    """The trivial predictor's metric, the best without using the examples: 1 for normalised errors (predict 0); for
    accuracies, `blind_accuracy()` where the task defines it (sparse parity: a sign can beat 1/2 from x alone), else
    1/2 when the prediction is a sign (a scalar output) and 1/K when it is the nearest of the prompt's K values."""
    task = build_task(cfg.task)
    if not task.higher_is_better:
        return 1.0
    blind = task.blind_accuracy()
    if blind is not None:
        return blind
    return 0.5 if task.io().d_out == 1 else 1.0 / cfg.curriculum.points_end


def skill(value: float, chance: float, higher_is_better: bool) -> float:
    """0 at the trivial predictor, 1 when perfect (error 0 or accuracy 1); negative when worse than trivial."""
    return (value - chance) / (1.0 - chance) if higher_is_better else 1.0 - value / chance


def final_table(configs: Sequence[RunConfig], runs: Sequence[Run], tail: float = TAIL) -> pd.DataFrame:
    """One row per run: name, hash, task, model, seed, d_model, n_points, metric, higher_is_better, chance,
    final (late-position metric, `curves.late_metric`), last (the metric at the last defined position), skill."""
    rows = []
    for cfg, run in zip(configs, runs, strict=True):
        curve = final_curve(run)
        task = build_task(cfg.task)
        final, chance = late_metric(curve, tail), chance_level(cfg)
        rows.append({"name": cfg.name, "hash": run.hash, "task": cfg.task.name, "model": model_label(cfg),
                     "seed": cfg.seed, "d_model": cfg.model.d_model, "n_points": cfg.curriculum.points_end,
                     "steps": cfg.train.steps, "metric": task.metric_name, "higher_is_better": task.higher_is_better,
                     "chance": chance, "final": final, "last": late_metric(curve, tail=0.0),
                     "skill": skill(final, chance, task.higher_is_better)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------------
# training histories (metrics.jsonl rows carrying a periodic evaluation)


def eval_history(run: Run, tail: float = TAIL) -> tuple[list[int], list[float]]:
    """(steps, late-position metric) of every logged evaluation of a run, in step order."""
    steps, values = [], []
    for row in run.metrics():
        if "eval" in row:
            steps.append(int(row["step"]))
            values.append(late_metric(values_curve(row["eval"]), tail))
    return steps, values


def history_table(configs: Sequence[RunConfig], runs: Sequence[Run], tail: float = TAIL) -> pd.DataFrame:
    """Long table of every run's evaluations: columns model, seed, name, step, value."""
    rows = []
    for cfg, run in zip(configs, runs, strict=True):
        model = model_label(cfg)
        for step, value in zip(*eval_history(run, tail), strict=True):
            rows.append({"model": model, "seed": cfg.seed, "name": cfg.name, "step": step, "value": value})
    return pd.DataFrame(rows, columns=["model", "seed", "name", "step", "value"])


def steps_to_reach(history: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The first evaluated step at which each run's value reaches `threshold` (NaN if never): model, seed, step."""
    rows = []
    for (model, seed), g in history.sort_values("step").groupby(["model", "seed"], sort=False):
        hit = g.loc[g["value"] >= threshold, "step"]
        rows.append({"model": model, "seed": seed, "step": float(hit.iloc[0]) if len(hit) else math.nan})
    return pd.DataFrame(rows, columns=["model", "seed", "step"])


# ----------------------------------------------------------------------------------------------------------------
# classical baselines (`curves.baseline_curves` scores them on the runs' own evaluation prompts)


def best_baseline(curves: dict[str, Curve], higher_is_better: bool, tail: float = TAIL) -> str | None:
    """Name of the baseline with the best late-position metric, the zero predictor excluded; None if there is none."""
    scored = {name: late_metric(c, tail) for name, c in curves.items() if name != "zero"}
    scored = {name: v for name, v in scored.items() if not math.isnan(v)}
    if not scored:
        return None
    pick = max if higher_is_better else min
    return pick(scored, key=scored.__getitem__)


# ----------------------------------------------------------------------------------------------------------------
# drawing


def task_panel(ax: Axes, task: str, curves: dict[str, Curve], baselines: dict[str, Curve], *, higher_is_better: bool,
               chance: float, tail: float = TAIL) -> str | None:
    """One task of the results grid: each model's curve (keys of `curves` are architectures), the best baseline
    dashed in grey, the trivial level dotted. A task scored at a single position (MQAR: its query) gets one bar per
    model with a 90% error bar instead, since the models' points would sit on top of each other. Returns the
    baseline drawn (None if the task has none)."""
    best = best_baseline(baselines, higher_is_better, tail)
    single = bool(curves) and all(sum(c > 0 for c in curve.count) == 1 for curve in curves.values())
    if single:
        for x, (model, curve) in enumerate(curves.items()):
            i = next(i for i, c in enumerate(curve.count) if c > 0)
            sem = 0.0 if math.isnan(curve.sem[i]) else Z90 * curve.sem[i]
            ax.bar(x, curve.mean[i], yerr=sem, color=color(model), label=model, width=0.7, capsize=2)
        ax.set_xticks(range(len(curves)), list(curves), rotation=35, ha="right", fontsize=6)
        if best is not None:
            ax.axhline(late_metric(baselines[best], tail), color=color("baseline"), ls="--", lw=1.3, label=best)
        ax.set_xlabel("model (scored at the single query)", fontsize=7)
    else:
        for model, curve in curves.items():
            plot_curve(ax, curve, label=model, color=color(model), lw=1.3)
        if best is not None:
            plot_curve(ax, baselines[best], label=best, color=color("baseline"), ls="--", lw=1.3, shade=False)
        ax.set_xlabel("in-context examples $i$", fontsize=7)
    ax.axhline(chance, color="0.6", ls=":", lw=1)
    ax.set_title(task, fontsize=8)
    ax.set_ylim(-0.05, 1.05 if higher_is_better else 1.6)
    return best


def heatmap(ax: Axes, table: pd.DataFrame, *, rows: Sequence[str], cols: Sequence[str], fmt: str = ".2f") -> None:
    """Models (`rows`) × tasks (`cols`): colour = mean skill over seeds, annotation = mean final metric ('–' where
    no run exists). Column labels carry the metric's direction (↓ error, ↑ accuracy)."""
    grouped = table.groupby(["model", "task"])[["final", "skill"]].mean()
    values = np.full((len(rows), len(cols)), np.nan)
    skills = np.full((len(rows), len(cols)), np.nan)
    for i, m in enumerate(rows):
        for j, t in enumerate(cols):
            if (m, t) in grouped.index:
                values[i, j], skills[i, j] = grouped.loc[(m, t), "final"], grouped.loc[(m, t), "skill"]
    image = ax.imshow(np.clip(skills, -0.2, 1.0), cmap="viridis", vmin=-0.2, vmax=1.0, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            text = "–" if np.isnan(values[i, j]) else format(values[i, j], fmt)
            dark = np.isnan(skills[i, j]) or skills[i, j] < 0.55
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    arrows = table.drop_duplicates("task").set_index("task")["higher_is_better"]
    ax.set_xticks(range(len(cols)), [f"{t} {'↑' if arrows.get(t, False) else '↓'}" for t in cols], rotation=35,
                  ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.grid(False)
    ax.figure.colorbar(image, ax=ax, label="skill (0 = trivial, 1 = perfect)", shrink=0.8)


def plot_spread(ax: Axes, history: pd.DataFrame, model: str) -> None:
    """One model's value vs training step: mean over seeds (thick), min–max band, each seed as a thin line."""
    mine = history[history["model"] == model]
    if mine.empty:
        return
    for _, g in mine.groupby("seed"):
        ax.plot(g["step"], g["value"], color=color(model), lw=0.6, alpha=0.5)
    stats = mine.groupby("step")["value"].agg(["mean", "min", "max"])
    ax.plot(stats.index, stats["mean"], color=color(model), lw=1.8, label=f"{model} ({mine['seed'].nunique()} seeds)")
    ax.fill_between(stats.index, stats["min"], stats["max"], color=color(model), alpha=0.15, lw=0)


def plot_reach(ax: Axes, reach: pd.DataFrame, *, models: Sequence[str], never_at: float) -> None:
    """Steps each run needed to reach a threshold (`steps_to_reach`): a dot per seed, a bar at the median; runs
    that never reached it are drawn hollow at `never_at` (e.g. a little past the last step)."""
    for i, model in enumerate(models):
        steps = reach.loc[reach["model"] == model, "step"].to_numpy(dtype=float)
        if len(steps) == 0:
            continue
        x = np.full(len(steps), i) + np.linspace(-0.12, 0.12, len(steps))
        hit = ~np.isnan(steps)
        if hit.any():
            ax.bar(i, np.median(np.where(hit, steps, never_at)), color=color(model), alpha=0.4, width=0.6)
        ax.scatter(x[hit], steps[hit], color=color(model), s=18, zorder=3)
        ax.scatter(x[~hit], np.full((~hit).sum(), never_at), facecolors="none", edgecolors=color(model), s=18,
                   zorder=3)
    ax.axhline(never_at, color="0.6", ls=":", lw=1)
    ax.set_xticks(range(len(models)), models, rotation=20, fontsize=8)
    ax.set_xlim(-0.6, len(models) - 0.4)


def plot_sweep(ax: Axes, table: pd.DataFrame, x: str, *, models: Sequence[str], value: str = "final",
               ls: str = "-", label_suffix: str = "") -> None:
    """`value` vs the column `x` (e.g. d_model, n_points), one line per model (mean over seeds), seeds as dots."""
    for model in models:
        mine = table[table["model"] == model].sort_values(x)
        if mine.empty:
            continue
        mean = mine.groupby(x)[value].mean()
        ax.plot(mean.index, mean.values, ls, marker="o", color=color(model), label=f"{model}{label_suffix}")
        if mine["seed"].nunique() > 1:
            ax.scatter(mine[x], mine[value], s=10, color=color(model), alpha=0.5, lw=0)


def plot_seeds(ax: Axes, table: pd.DataFrame, *, models: Sequence[str], value: str = "final") -> None:
    """A bar per model at its mean `value` over seeds, with every seed's value as a dot on it."""
    for i, model in enumerate(models):
        vals = table.loc[table["model"] == model, value].to_numpy(dtype=float)
        if len(vals) == 0:
            continue
        ax.bar(i, vals.mean(), color=color(model), alpha=0.6, width=0.6)
        ax.scatter(np.full(len(vals), i) + np.linspace(-0.12, 0.12, len(vals)), vals, color="black", s=12, zorder=3)
    ax.set_xticks(range(len(models)), models, rotation=20, fontsize=8)
    ax.set_xlim(-0.6, len(models) - 0.4)
