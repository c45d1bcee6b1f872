"""The task contract shared by every family, the models, the trainer and the evaluator.

A task is a frozen dataclass registered by name. It owns all of its sampling and its loss:

    task = build_task(TaskConfig("linear_regression", n_dims=20))
    batch = task.sample(64, n_points=41, n_dims_active=5, generator=g)   # Batch
    pred = task.predict(model, batch)                                    # model(batch), or a task-specific decode
    loss = task.loss(pred, batch)                                        # scalar, what training minimises
    err = task.metric(pred, batch)                                       # [B, N], averaged where batch.loss_mask

The trainer never reads a task's name. What differs between families is expressed through `Batch` fields and
`IOSpec` (icllib/batch.py: how the batch becomes a token sequence and where predictions are read):

    format "pairs"    : tokens x_1, y_1, ..., x_N, y_N (y zero-padded to d, or `extras["y_tokens"]`);
                        xs [B, N, d], ys [B, N]; the prediction for y_i is read at x_i: pred [B, N, d_out]
    format "sequence" : xs [B, T, d] are the tokens themselves; ys [B, T, d_out]; pred [B, T, d_out] (MQAR)
    format "tokens"   : xs [B, T] int64 ids; ys [B, T] int64 targets; pred [B, T, vocab] logits
    format "triples"  : tokens x_i, s_i, y_i (CoT); xs [B, N, d], extras["s"] [B, N, d_mid], ys [B, N];
                        pred [B, N, d_mid + 1]: s_i read at x_i, then y_i read at s_i

`loss` receives one teacher-forced forward pass, `model(batch)` (what the trainer computes); `metric` receives
`task.predict(model, batch)` (what the evaluator computes). The two differ only where `predict` is overridden:
CoT decodes ŝ autoregressively, and `ood_linear_regression` / `quadrant_linear_regression` re-query every position
with an out-of-distribution x (Garg et al.'s evaluation prompts). Sampling uses only the given generator, never the
global RNG; bad arguments raise `ConfigError` naming the field (`check_sample_args`).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from icllib.batch import Batch, IOSpec, Predictor
from icllib.config import ConfigError, TaskConfig
from icllib.registry import Registry


def check_sample_args(batch_size: int, n_points: int, n_dims_active: int | None, n_dims: int) -> int:
    """Validate `sample` arguments (one-line ConfigError naming the field); returns the active dims (d if None)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size: must be >= 1, got {batch_size}")
    if n_points < 1:
        raise ConfigError(f"n_points: must be >= 1, got {n_points}")
    if n_dims_active is None:
        return n_dims
    if not 1 <= n_dims_active <= n_dims:
        raise ConfigError(f"n_dims_active: must be in [1, n_dims={n_dims}], got {n_dims_active}")
    return n_dims_active


class Task:
    """Base class of every task family. Subclasses are frozen dataclasses registered in TASKS.

    Subclasses set `n_dims` (a dataclass field) and implement `io`, `sample`, `loss`, `metric`; `predict` is
    overridden only where decoding differs from one forward pass (CoT's autoregressive s).
    """

    n_dims: int
    # how to normalise / describe the metric in plots ("normalized squared error", "accuracy", ...)
    metric_name: str = "normalized squared error"
    higher_is_better: bool = False

    def io(self) -> IOSpec:
        raise NotImplementedError

    def sample(
        self, batch_size: int, n_points: int, n_dims_active: int | None = None, *, generator: torch.Generator
    ) -> Batch:
        raise NotImplementedError

    def loss(self, pred: Tensor, batch: Batch) -> Tensor:
        raise NotImplementedError

    def metric(self, pred: Tensor, batch: Batch) -> Tensor:
        """Per-example, per-position metric [B, N]; only entries where `batch.loss_mask` is set are meaningful."""
        raise NotImplementedError

    def predict(self, model: Predictor, batch: Batch) -> Tensor:
        return model(batch)

    def blind_accuracy(self) -> float | None:
        """For accuracy metrics: the best accuracy of a predictor that ignores the in-context examples, where it is
        known in closed form (sparse parity); None otherwise. `report.chance_level` uses it as the trivial level."""
        return None

    def diagnostics(self, model: Predictor, batch: Batch) -> dict[str, Tensor]:
        """Extra per-position quantities `{name: [B, N]}` that explain the metric, scored like it at the end of
        training (`eval.json["diagnostics"]`); none by default. CoT-I/O reports its two steps separately."""
        return {}


TASKS: Registry[type[Task]] = Registry("task")


def build_task(cfg: TaskConfig) -> Task:
    """Instantiate the task named by `cfg`; unknown names and unknown/invalid kwargs raise one-line errors."""
    cls = TASKS.get(cfg.name)
    allowed = {f.name for f in dataclasses.fields(cls)} - {"n_dims"}  # type: ignore[arg-type]
    unknown = sorted(set(cfg.kwargs) - allowed)
    if unknown:
        raise ConfigError(
            f"task.kwargs: unknown parameter {unknown[0]!r} for task {cfg.name!r} "
            f"(allowed: {', '.join(sorted(allowed)) or 'none'})"
        )
    return cls(n_dims=cfg.n_dims, **cfg.kwargs)
