"""A minimal noiseless linear-regression task registered as "toy_regression", so the training loop is tested
independently of the task families in icllib/tasks (which have their own tests)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from icllib.batch import Batch, IOSpec
from icllib.tasks.base import TASKS, Task


@dataclass(frozen=True)
class ToyRegression(Task):
    n_dims: int = 4
    shared_w: bool = False  # one fixed w for every prompt: plain regression, learnable in a few hundred steps
    nan_after: int = -1  # > 0: ys become NaN once this many batches were sampled (divergence tests)
    nan_eval: bool = False  # ys of evaluation prompts (eval seed range) are NaN: a finite loss, a NaN eval

    def io(self) -> IOSpec:
        return IOSpec("pairs", d_in=self.n_dims, d_out=1)

    def sample(self, batch_size: int, n_points: int, n_dims_active: int | None = None, *,
               generator: torch.Generator) -> Batch:
        xs = torch.randn(batch_size, n_points, self.n_dims, generator=generator)  # [B, N, d]
        if n_dims_active is not None:
            xs[..., n_dims_active:] = 0
        w = torch.randn(batch_size, self.n_dims, 1, generator=generator)
        if self.shared_w:
            w = torch.linspace(-1, 1, self.n_dims).view(1, -1, 1).expand(batch_size, -1, -1)
        ys = (xs @ w).squeeze(-1)  # [B, N]
        if self.nan_after > 0 and generator.initial_seed() < (1 << 40):
            count = _COUNTS.get(id(generator), 0) + 1
            _COUNTS[id(generator)] = count
            if count > self.nan_after:
                ys = ys * float("nan")
        if self.nan_eval and generator.initial_seed() >= (1 << 40):
            ys = ys * float("nan")
        return Batch(xs, ys, torch.ones(batch_size, n_points, dtype=torch.bool))

    def loss(self, pred: Tensor, batch: Batch) -> Tensor:
        return (pred[..., 0] - batch.ys).pow(2).mean()

    def metric(self, pred: Tensor, batch: Batch) -> Tensor:
        return (pred[..., 0] - batch.ys).pow(2) / self.n_dims


_COUNTS: dict[int, int] = {}

if "toy_regression" not in TASKS:
    TASKS.register("toy_regression")(ToyRegression)
