"""Chain-of-thought I/O (Li et al. 2023, "Dissecting Chain-of-Thought"): a 2-layer ReLU net with its hidden layer shown.

Each prompt draws its own W ~ N(0, 1)^{d×k} and v ~ N(0, 1)^k; points x ~ N(0, I_d) have the coordinates beyond the
curriculum's active dims set to zero. The prompt is x_1, s_1, y_1, ..., x_N, s_N, y_N (format "triples") with

    s = √(2/k) · ReLU(x W)      # [B, N, k], the intermediate step
    y = s v                     # [B, N]

`n_points` is the number of (x, s, y) examples N (the model sees 3N tokens). ŝ_i is read at x_i and ŷ_i at s_i:
pred [B, N, k + 1]. Training is teacher-forced (the true s is in the prompt); `predict` decodes autoregressively, so
ŷ is read with the model's own ŝ in the prompt. The loss is Σ_k (ŝ - s)² + (ŷ - y)², averaged over batch and positions.

Metric: (ŷ - y)² / d_active, where d_active = `n_dims_active` (or d). With W, v and x all standard Gaussian,
E[y²] = E‖s‖² = (2/k) · k · E[ReLU(z)²] with z ~ N(0, ‖x‖²), i.e. d_active: the zero predictor scores about 1, as the
regression tasks' normalized squared error.

    >>> task = CoTIO(n_dims=10, hidden=4)
    >>> b = task.sample(64, 26, generator=torch.Generator().manual_seed(0))
    >>> b.xs.shape, b.extras["s"].shape, b.ys.shape           # [B, N, d], [B, N, k], [B, N]
    (torch.Size([64, 26, 10]), torch.Size([64, 26, 4]), torch.Size([64, 26]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from icllib.batch import Batch, IOSpec, Predictor, masked_mean
from icllib.config import ConfigError
from icllib.tasks.base import TASKS, Task
from icllib.tasks.regression import gaussian_points


@TASKS.register("cot_io")
@dataclass(frozen=True)
class CoTIO(Task):
    """y = vᵀ s, s = √(2/k)·ReLU(Wᵀx), with s shown in the prompt; loss on ŝ and ŷ; metric on ŷ (module doc)."""

    n_dims: int = 10
    hidden: int = 4  # k, the width of the intermediate s

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise ConfigError(f"task.kwargs.hidden: must be >= 1, got {self.hidden}")

    def io(self) -> IOSpec:
        return IOSpec("triples", d_in=self.n_dims, d_out=1, d_mid=self.hidden)

    def sample(self, batch_size: int, n_points: int, n_dims_active: int | None = None, *,
               generator: torch.Generator) -> Batch:
        dev, k = generator.device, self.hidden
        xs = gaussian_points(batch_size, n_points, self.n_dims, n_dims_active, generator)  # [B, N, d]
        W = torch.randn(batch_size, self.n_dims, k, generator=generator, device=dev)  # [B, d, k]
        v = torch.randn(batch_size, k, 1, generator=generator, device=dev)  # [B, k, 1]
        s = math.sqrt(2 / k) * torch.relu(xs @ W)  # [B, N, k]
        ys = (s @ v).squeeze(-1)  # [B, N]
        mask = torch.ones(batch_size, n_points, dtype=torch.bool, device=xs.device)
        d_active = self.n_dims if n_dims_active is None else min(n_dims_active, self.n_dims)
        return Batch(xs, ys, mask, extras={"s": s, "W": W, "v": v.squeeze(-1)}, meta={"n_dims_active": d_active})

    def loss(self, pred: Tensor, batch: Batch) -> Tensor:
        k = self.hidden
        loss_s = (pred[..., :k] - batch.extras["s"]).pow(2).sum(-1)  # [B, N], summed over k
        loss_y = (pred[..., k] - batch.ys).pow(2)  # [B, N]
        return masked_mean(loss_s + loss_y, batch.loss_mask)

    def metric(self, pred: Tensor, batch: Batch) -> Tensor:
        d_active = batch.meta.get("n_dims_active", self.n_dims)
        return (pred[..., self.hidden] - batch.ys).pow(2) / d_active  # [B, N]

    def diagnostics(self, model: Predictor, batch: Batch) -> dict[str, Tensor]:
        """The two steps apart, from one teacher-forced pass (the true s in the prompt), on the metric's scale
        (/ d_active; the zero predictor scores about 1 on both): `s_error` = Σ_k (ŝ - s)² and `y_error_given_s` =
        (ŷ - y)². A model with a low `y_error_given_s` but a high metric learned y = vᵀs but not x → s."""
        pred = model(batch)  # [B, N, k + 1]
        d_active = batch.meta.get("n_dims_active", self.n_dims)
        s_err = (pred[..., : self.hidden] - batch.extras["s"]).pow(2).sum(-1) / d_active  # [B, N]
        return {"s_error": s_err, "y_error_given_s": self.metric(pred, batch)}

    def predict(self, model: Predictor, batch: Batch) -> Tensor:
        """Autoregressive decoding: ŝ from a teacher-forced pass, then ŷ from a pass with ŝ in place of s."""
        s_hat = model(batch)[..., : self.hidden].detach()  # [B, N, k]
        decoded = Batch(batch.xs, batch.ys, batch.loss_mask, extras={**batch.extras, "s": s_hat}, meta=batch.meta)
        return model(decoded)  # [B, N, k + 1]; its ŷ saw only predicted s
