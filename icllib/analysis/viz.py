"""Pictures of task samples, for notebook 01 (notebooks hold calls only).

    fig, axes = plt.subplots(3, 5)
    for ax, name in zip(axes.flat, TASKS.names()):
        draw_task(ax, make_task(name), torch.Generator().manual_seed(0))
    family_config("linear_regression", seed=0)   # a RunConfig of the family, for `curves.baseline_curves`

`draw_task` draws one small panel per family from one sampled prompt: y against x's first coordinate for the
regression families (outliers in red where `loss_mask` is unset), the ±1 bits and labels for parity, the token
strip with its targets for token tasks, and the key/value/query structure for vector MQAR.
"""

from __future__ import annotations

import torch
from matplotlib.axes import Axes

from icllib.config import EvalConfig, RunConfig, TaskConfig
from icllib.tasks.base import Task, build_task

# n_dims each family is drawn / evaluated at (Park/Garg defaults: 20 for regression, 10 for parity and CoT)
DEFAULT_DIMS = {"sparse_parity": 10, "cot_io": 10, "selective_copying": 1, "induction_heads": 1}


def default_dims(task_name: str) -> int:
    """The input dimension notebook 01 uses for a family (20 unless DEFAULT_DIMS says otherwise)."""
    return DEFAULT_DIMS.get(task_name, 20)


def family_config(task_name: str, *, seed: int = 0, n_examples: int = EvalConfig.n_examples) -> RunConfig:
    """A RunConfig of the family alone (default dimension and kwargs, evaluation seed `seed`, `n_examples`
    evaluation prompts), so that `curves.baseline_curves` scores baselines on a family no experiment trains."""
    return RunConfig(name=task_name, task=TaskConfig(task_name, n_dims=default_dims(task_name)),
                     eval=EvalConfig(n_examples=n_examples), seed=seed)


def make_task(task_name: str, n_dims: int | None = None) -> Task:
    """`build_task` at the family's default dimension (or `n_dims`) and default kwargs."""
    return build_task(TaskConfig(task_name, n_dims=default_dims(task_name) if n_dims is None else n_dims))


def draw_task(ax: Axes, task: Task, generator: torch.Generator, n_points: int = 40) -> None:
    """Draw one sampled prompt of `task` on `ax` (a small panel; the title is the family name)."""
    name = type(task).__name__
    fmt = task.io().format
    batch = task.sample(1, n_points, generator=generator)
    ax.set_title(name, fontsize=8)
    ax.tick_params(labelsize=6)
    if fmt == "tokens":
        xs, ys, mask = batch.xs[0], batch.ys[0], batch.loss_mask[0]
        t = torch.arange(len(xs))
        ax.scatter(t, xs, s=3, c="0.4", label="input id")
        ax.scatter(t[mask], ys[mask], s=8, c="C3", marker="x", label="target")
        ax.set_xlabel("position", fontsize=7)
        ax.set_ylabel("token id", fontsize=7)
        ax.legend(fontsize=5, loc="upper left")
    elif fmt == "sequence":  # MQAR: tokens are keys/values/queries; ys are the recalled values at the queries
        xs, mask = batch.xs[0], batch.loss_mask[0]
        keys = batch.extras["keys"][0]
        sim = xs @ keys.T / xs.shape[-1]  # [T, K] cosine-like similarity of each token with each key
        ax.imshow(sim.T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        q = torch.nonzero(mask).flatten()
        ax.scatter(q, torch.full_like(q, -0.8, dtype=torch.float), marker="v", c="k", s=8, clip_on=False)
        ax.set_xlabel("token (▼ = query)", fontsize=7)
        ax.set_ylabel("key index", fontsize=7)
    elif fmt == "triples":  # CoT: x -> s = relu(W x) -> y
        x0, s, y = batch.xs[0, :, 0], batch.extras["s"][0], batch.ys[0]
        ax.scatter(x0, y, s=6, c="C0", label="y")
        ax.scatter(x0, s[:, 0], s=6, c="C2", marker="^", label="s[0]")
        ax.set_xlabel("x[0]", fontsize=7)
        ax.legend(fontsize=5)
    elif task.metric_name == "accuracy":  # parity: ±1 bits and the label
        img = torch.cat([batch.xs[0], batch.ys[0].reshape(-1, 1).sign()], dim=1)[:20]  # [N, d+1]
        ax.imshow(img, aspect="auto", cmap="gray", interpolation="nearest")
        ax.axvline(batch.xs.shape[-1] - 0.5, color="C3", lw=1)
        ax.set_xlabel("bits | label", fontsize=7)
        ax.set_ylabel("example", fontsize=7)
    else:  # scalar regression, format "pairs"
        x0, y, clean = batch.xs[0, :, 0], batch.ys[0], batch.loss_mask[0].bool()
        ax.scatter(x0[clean], y[clean], s=6, c="C0", label="clean")
        if not bool(clean.all()):
            ax.scatter(x0[~clean], y[~clean], s=6, c="C3", marker="x", label="outlier")
            ax.legend(fontsize=5)
        ax.set_xlabel("x[0]", fontsize=7)
        ax.set_ylabel("y", fontsize=7)
