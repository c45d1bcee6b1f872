"""Sparse parity (Park et al. 2024): y = Π_{j∈I} x_j for x uniform on {−1, +1}^d and |I| = k.

One subset I is drawn per `sample` call and shared by every prompt of the batch (Park's code). The model outputs a
logit; the loss is BCE-with-logits against (y + 1)/2 over all positions (early ones are unidentifiable, so it never
reaches 0); the metric is accuracy, sign(pred) == y (a zero logit counts 1/2). There is no curriculum:
`n_dims_active` is ignored.

    >>> task = SparseParity(n_dims=10)
    >>> b = task.sample(64, 140, generator=torch.Generator().manual_seed(0))
    >>> b.xs.shape, b.extras["subset"].shape, b.meta["k"]    # [B, N, d], [k]
    (torch.Size([64, 140, 10]), torch.Size([2]), 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import torch
import torch.nn.functional as F
from torch import Tensor

from icllib.batch import Batch, IOSpec
from icllib.config import ConfigError
from icllib.tasks.base import TASKS, Task, check_sample_args


@TASKS.register("sparse_parity")
@dataclass(frozen=True)
class SparseParity(Task):
    """k-sparse parity over d = n_dims ±1 bits; one subset per batch; logit output; accuracy metric."""

    n_dims: int = 10
    k: int = 2

    metric_name = "accuracy"
    higher_is_better = True

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n_dims:
            raise ConfigError(f"task.kwargs.k: must be in [1, n_dims={self.n_dims}], got {self.k}")

    def io(self) -> IOSpec:
        return IOSpec("pairs", d_in=self.n_dims, d_out=1)

    def sample(self, batch_size: int, n_points: int, n_dims_active: int | None = None, *,
               generator: torch.Generator) -> Batch:
        dev = generator.device
        check_sample_args(batch_size, n_points, None, self.n_dims)
        bits = torch.randint(0, 2, (batch_size, n_points, self.n_dims), generator=generator, device=dev)
        xs = bits.float() * 2 - 1  # [B, N, d] in {−1, +1}
        subset = torch.randperm(self.n_dims, generator=generator, device=dev)[: self.k]  # [k], shared by the batch
        ys = xs[..., subset].prod(-1)  # [B, N] in {−1, +1}
        mask = torch.ones(batch_size, n_points, dtype=torch.bool, device=dev)
        return Batch(xs, ys, mask, extras={"subset": subset}, meta={"k": self.k})

    def loss(self, pred: Tensor, batch: Batch) -> Tensor:
        return F.binary_cross_entropy_with_logits(pred[..., 0], (batch.ys + 1) / 2)

    def blind_accuracy(self) -> float:
        """The best accuracy of a predictor that has not identified the subset I (it ignores the context).

        With I uniform over the C(d, k) subsets, x with m entries −1 gets y = +1 from the subsets holding an even
        number of them; predicting the majority label scores max(p, 1 − p). Averaged over x this exceeds 1/2 (d=10,
        k=2: 71/128 ≈ 0.555), so a model stuck at this level has learned the label prior, not the parity.
        """
        d, k, total = self.n_dims, self.k, comb(self.n_dims, self.k)
        acc = 0.0
        for m in range(d + 1):  # m = number of −1 entries in x
            p_plus = sum(comb(m, j) * comb(d - m, k - j) for j in range(0, k + 1, 2)) / total
            acc += comb(d, m) / 2**d * max(p_plus, 1 - p_plus)
        return acc

    def metric(self, pred: Tensor, batch: Batch) -> Tensor:
        """[B, N]: 1 where sign(pred) == y, 0 where it differs, 1/2 on a zero logit (a tie is a coin flip)."""
        hit = (torch.sign(pred[..., 0]) == batch.ys).to(pred.dtype)  # [B, N]
        return torch.where(pred[..., 0] == 0, torch.full_like(hit, 0.5), hit)
