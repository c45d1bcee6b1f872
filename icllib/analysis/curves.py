"""What every report does with a `Curve`, in one place: its 90% band, drawing it, averaging it over positions,
the classical baselines' curves on a run's prompts, and the model label a run is grouped and coloured by.

    lo, hi = band(curve)                                 # mean ∓ Z90·sem per position
    plot_curve(ax, curve, color=plotting.color("mamba"), label="mamba")   # scored positions, with the band
    segment_mean(curve, 30, 41)                          # mean over positions [30, 41) that were scored
    late_metric(curve)                                   # the same over the last quarter of the scored positions
    baseline_curves(cfg)                                 # {baseline: Curve} on the run's own evaluation prompts
    model_label(cfg)                                     # "mambaformer": the preset that built cfg.model

The Park et al. report (report.py), the Grazzi et al. report (report_grazzi.py) and the notebooks use these, so
that one band, one position average and one label mean the same thing in every figure and table. Positions where
no prompt was scored (count 0: token tasks read only some positions) are skipped everywhere.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from icllib.analysis.baselines import BASELINES, applicable
from icllib.batch import Batch
from icllib.config import ModelConfig, RunConfig
from icllib.models.presets import PRESETS
from icllib.repro import eval_generator
from icllib.tasks import build_task
from icllib.training.evaluate import Curve, evaluate_batches, sample_eval_batches
from icllib.training.train import eval_points

Z90 = 1.645  # mean ± Z90·sem is a 90% interval (the papers plot bootstrap 90% intervals; this is its normal form)
TAIL = 0.25  # fraction of the scored positions that counts as "late" (`late_metric`)
# baselines fitting B·(N-1) sklearn / Adam models: minutes on a CPU at paper sizes
SLOW_BASELINES = ("lasso", "gradient_boosting", "xgboost", "nn_gd", "greedy_tree")
# ModelConfig fields an experiment changes without changing the architecture: widths (width sweeps), the position
# table (Grazzi et al.'s Transformer has none; long prompts need more rows)
_LABEL_IGNORES = ("d_model", "pos_emb", "max_len")


# ----------------------------------------------------------------------------------------------------------------
# the band and the one drawing of a curve


def band(curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) = mean ∓ Z90·sem at every position, a 90% interval over the prompts. An undefined sem (a position
    with a single prompt) counts as 0; positions nobody scored stay NaN."""
    mean = np.asarray(curve.mean, dtype=float)
    half = Z90 * np.nan_to_num(np.asarray(curve.sem, dtype=float))
    return mean - half, mean + half


def plot_curve(ax: Axes, curve: Curve, *, limit: int | None = None, shade: bool = True, **style: Any) -> Line2D:
    """The metric at the scored positions of `curve` (the first `limit` positions) as a line, and with `shade` its
    90% band (`band`) in the line's colour. `style` goes to `ax.plot` (color, label, ls, lw, ...); a curve scored at
    a single position (MQAR: its query) gets a marker, since a line of one point is invisible. Returns the line."""
    mean = np.asarray(curve.mean[:limit], dtype=float)
    x = np.flatnonzero(np.asarray(curve.count[:limit]) > 0)
    style.setdefault("marker", "o" if len(x) == 1 else None)
    line = ax.plot(x, mean[x], **style)[0]
    if shade:
        lo, hi = band(curve)
        ax.fill_between(x, lo[x], hi[x], color=line.get_color(), alpha=0.15, lw=0)
    return line


# ----------------------------------------------------------------------------------------------------------------
# averages over positions


def segment_mean(curve: Curve, start: int, end: int) -> float:
    """The metric averaged over the scored positions in [start, end) (NaN if none): `Curve.summary` cut at `end`."""
    return Curve(curve.mean[:end], curve.sem[:end], curve.count[:end], curve.metric).summary(start)


def late_start(curve: Curve, tail: float = TAIL) -> int:
    """The first position of the late part: where the last `tail` fraction (at least one) of the scored positions
    begins. Early positions are unidentifiable by construction (fewer examples than unknowns), so the late part is
    what a model has learned rather than how long the prompt is."""
    scored = [i for i, c in enumerate(curve.count) if c > 0]
    if not scored:
        return len(curve.count)
    return scored[-max(1, math.ceil(tail * len(scored)))]


def late_metric(curve: Curve, tail: float = TAIL) -> float:
    """The metric averaged over the late positions (`late_start`); `tail=0` gives the last scored position."""
    return segment_mean(curve, late_start(curve, tail), len(curve.mean))


def values_curve(values: Sequence[float | None], metric: str = "") -> Curve:
    """A Curve of bare per-position values (a metrics.jsonl "eval" row): None or NaN is an unscored position."""
    mean = [math.nan if v is None else float(v) for v in values]
    return Curve(mean=mean, sem=[math.nan] * len(mean), count=[0 if math.isnan(v) else 1 for v in mean],
                 metric=metric)


# ----------------------------------------------------------------------------------------------------------------
# classical baselines


def head_prompts(batches: list[Batch], n: int) -> list[Batch]:
    """The first `n` prompts of `batches` (per-prompt tensors sliced; batch-level extras kept whole)."""
    out, left = [], n
    for b in batches:
        if left <= 0:
            break
        k = min(left, b.batch_size)

        def cut(t: torch.Tensor, b: Batch = b, k: int = k) -> torch.Tensor:
            return t[:k] if t.dim() > 0 and t.shape[0] == b.batch_size else t

        out.append(Batch(cut(b.xs), cut(b.ys), cut(b.loss_mask), {n_: cut(v) for n_, v in b.extras.items()}, b.meta))
        left -= k
    return out


def baseline_curves(cfg: RunConfig, names: Sequence[str] | None = None, *, n_points: int | None = None,
                    n_examples: int | None = None, slow: bool = True,
                    slow_examples: int | None = None) -> dict[str, Curve]:
    """The classical baselines in `names` (None: every one) that apply to `cfg`'s task (`baselines.applicable`),
    each scored per position on the same prompts: the first `n_examples` (default and at most the run's own
    `eval.n_examples`) prompts of `n_points` points (default: the run's evaluation length) drawn from the run's
    evaluation seed range in batches of 64. At the run's length and batch size these are the run's own evaluation
    prompts, so a baseline and a model are compared prompt for prompt; at a longer length they are fresh prompts of
    the same distribution, whose first positions are distributed like a shorter prompt's (one long evaluation then
    serves the in-range and the extrapolation panels). The per-prompt fits (`SLOW_BASELINES`) are skipped with
    `slow=False` and see only the first `slow_examples` prompts when that is given. Returns {name: Curve}, in the
    order of `names` (of `applicable` when None)."""
    task = build_task(cfg.task)
    n = cfg.eval.n_examples if n_examples is None else min(n_examples, cfg.eval.n_examples)
    batches = sample_eval_batches(task, eval_points(cfg) if n_points is None else n_points, n,
                                  eval_generator(cfg.seed))
    few = head_prompts(batches, slow_examples) if slow_examples else batches
    usable = applicable(cfg.task.name)
    wanted = [b for b in (usable if names is None else names) if b in usable and (slow or b not in SLOW_BASELINES)]
    return {b: evaluate_batches(BASELINES.build(b), task, few if b in SLOW_BASELINES else batches) for b in wanted}


# ----------------------------------------------------------------------------------------------------------------
# the label of a run's model


def _architecture(model: ModelConfig) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(model).items() if k not in _LABEL_IGNORES}


def model_label(cfg: RunConfig) -> str:
    """Which preset (a key of `presets.PRESETS`: "transformer", "mamba", "mambaformer", ...) built `cfg.model` at
    the run's profile, ignoring what experiments change without changing the architecture (d_model, the position
    table). Every report groups, colours and selects runs by this label, read from the model itself rather than the
    run's name. Raises ValueError for a model that is no preset."""
    for name, factory in PRESETS.items():
        if _architecture(cfg.model) == _architecture(factory(cfg.profile)):
            return name
    raise ValueError(f"{cfg.name}: model {cfg.model} is none of the presets {', '.join(PRESETS)}")
