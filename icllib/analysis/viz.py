"""Pictures of task samples and the classical baselines' curves, for notebook 01 (notebooks hold calls only).

    fig, axes = plt.subplots(3, 5)
    for ax, name in zip(axes.flat, TASKS.names()):
        draw_task(ax, build_task(TaskConfig(name, n_dims=default_dims(name))), torch.Generator().manual_seed(0))
    curves = baseline_curves("linear_regression", n_points=41, n_examples=64, seed=0)   # {baseline: Curve}

`draw_task` draws one small panel per family from one sampled prompt: y against x's first coordinate for the
regression families (outliers in red where `loss_mask` is unset), the ±1 bits and labels for parity, the token
strip with its targets for token tasks, and the key/value/query structure for vector MQAR.
"""

from __future__ import annotations

import torch
from matplotlib.axes import Axes

from icllib.analysis.baselines import BASELINES, applicable
from icllib.batch import Batch
from icllib.config import TaskConfig
from icllib.repro import eval_generator
from icllib.tasks.base import Task, build_task
from icllib.training.evaluate import Curve, evaluate_batches, sample_eval_batches

# n_dims each family is drawn / evaluated at (Park/Garg defaults: 20 for regression, 10 for parity and CoT)
DEFAULT_DIMS = {"sparse_parity": 10, "cot_io": 10, "selective_copying": 1, "induction_heads": 1}
# baselines fitting B·(N-1) sklearn / Adam models: minutes on a CPU at paper sizes
SLOW_BASELINES = ("lasso", "gradient_boosting", "xgboost", "nn_gd", "greedy_tree")


def default_dims(task_name: str) -> int:
    """The input dimension notebook 01 uses for a family (20 unless DEFAULT_DIMS says otherwise)."""
    return DEFAULT_DIMS.get(task_name, 20)


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


def baseline_curves(
    task_name: str,
    n_points: int,
    n_examples: int,
    seed: int,
    *,
    n_dims: int | None = None,
    slow: bool = True,
    slow_examples: int | None = None,
) -> dict[str, Curve]:
    """Every `applicable` baseline's error per in-context position on `task_name`, on the same prompts (drawn from
    `eval_generator(seed)`). With `slow=False` the SLOW_BASELINES are skipped; `slow_examples` evaluates them on
    the first `slow_examples` prompts only (same generator, so a prefix of the same prompt set)."""
    task = make_task(task_name, n_dims)
    batches = sample_eval_batches(task, n_points, n_examples, eval_generator(seed))
    curves: dict[str, Curve] = {}
    for name in applicable(task_name):
        is_slow = name in SLOW_BASELINES
        if is_slow and not slow:
            continue
        use = head_prompts(batches, slow_examples) if is_slow and slow_examples else batches
        curves[name] = evaluate_batches(BASELINES.build(name), task, use)
    return curves


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
