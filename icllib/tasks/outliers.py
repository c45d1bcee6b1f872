"""Linear regression with outliers in the context (Park et al. 2024).

Every position is an outlier with probability p (Bernoulli per position; `placement` selects the official evaluation
modes instead: "fixed" positions or "none"). Outlier pairs stay in the prompt as
context but are excluded from loss and metric through `loss_mask` (True = clean position). The clean pairs are
plain noiseless linear regression (y = wᵀx, w ~ N(0, I_d) per prompt); the metric is squared error / d.

- `orthogonal_outlier_regression` (p=0.5): every outlier x-token is one dummy vector a·u + b·v per prompt with
  u, v ⟂ w and u ⟂ v (|u|, |v| ≈ √d, as in the official code); every outlier y-token is a separately drawn full
  d-vector of the same kind. y-tokens are therefore given as `extras["y_tokens"]` [B, N, d] (clean positions hold
  [y, 0, ..., 0]).
- `many_outlier_regression` (p=0.9): outlier pairs are (x = 1_d, y = 1), x set after curriculum truncation.

    >>> task = OrthogonalOutlierRegression(n_dims=20)
    >>> b = task.sample(64, 101, 5, generator=torch.Generator().manual_seed(0))
    >>> b.extras["y_tokens"].shape, b.loss_mask.dtype   # [B, N, d]
    (torch.Size([64, 101, 20]), torch.bool)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from icllib.batch import Batch, IOSpec, masked_mean
from icllib.config import ConfigError
from icllib.tasks.base import TASKS, Task
from icllib.tasks.regression import gaussian_points


def orthogonal_dummy(w: Tensor, generator: torch.Generator) -> Tensor:
    """One dummy vector per row of w [B, d], as the official `generate_dummy_vector` (krafton-ai/mambaformer-icl
    src/filtering_utils.py): u, v ~ N(0, I_d) with their components along w removed, then v's along u (so u ⟂ w,
    v ⟂ w, u ⟂ v; not normalised, so |u|, |v| ≈ √d); a, b ~ N(0, 1) with the code's quirk a ← a/(a² + b²), then
    b ← b/(a_new² + b²); returns a·u + b·v [B, d]."""
    bsz, d = w.shape
    dev = generator.device
    g = torch.randn(bsz, 2, d, generator=generator, device=dev)  # [B, 2, d]

    def remove(vec: Tensor, basis: Tensor) -> Tensor:  # vec minus its projection on basis, per row
        return vec - basis * (vec * basis).sum(-1, keepdim=True) / (basis * basis).sum(-1, keepdim=True)

    u, v = remove(g[:, 0], w), remove(g[:, 1], w)
    v = remove(v, u)
    ab = torch.randn(bsz, 2, generator=generator, device=dev)
    a, b = ab[:, :1], ab[:, 1:]
    a = a / (a**2 + b**2)
    b = b / (a**2 + b**2)
    return a * u + b * v  # [B, d]


PLACEMENTS = ("random", "fixed", "none")


def fixed_outlier_positions(n_points: int, p: float) -> Tensor:
    """The official `fixed_dummy` evaluation's outlier positions [N] (bool), krafton-ai/mambaformer-icl src/eval.py
    `eval_model`: spacing = 1 // min(p, 1-p), gap = N // int(N·p), marks at spacing, spacing + gap, ... < N,
    inverted when p > 0.5. Reproduced as written: for p = 0.5 every second position from 2 on is an outlier, but for
    p = 0.9 (1 - 0.9 < 0.1 in floating point: spacing 10, gap 1) the inversion leaves only positions 0..9
    as outliers."""
    marks = torch.zeros(n_points, dtype=torch.bool)
    n_dummy = int(n_points * p)
    if p == 0.0 or n_dummy == 0:
        return marks
    spacing, gap = int(1 // min(p, 1 - p)), n_points // n_dummy
    marks[spacing::gap] = True
    return ~marks if p > 0.5 else marks


@dataclass(frozen=True)
class _OutlierRegression(Task):
    """Shared pieces: IO, masked MSE loss, squared error / d metric, validation of p."""

    n_dims: int = 20
    p: float = 0.5
    # where outliers go: "random" (Bernoulli(p) per position; training and the `standard` eval), "fixed" (the
    # official `fixed_dummy` eval positions, the same for every prompt) or "none" (the `wo_dummy` eval: clean LR).
    # The prompts (x, w) are the same for a given generator state in all three, so modes can be compared pairwise.
    placement: str = "random"

    def __post_init__(self) -> None:
        if not 0.0 <= self.p < 1.0:
            raise ConfigError(f"task.kwargs.p: outlier probability must be in [0, 1), got {self.p}")
        if self.placement not in PLACEMENTS:
            raise ConfigError(f"task.kwargs.placement: {self.placement!r} is not one of {', '.join(PLACEMENTS)}")

    def io(self) -> IOSpec:
        return IOSpec("pairs", d_in=self.n_dims, d_out=1)

    def _clean_lr(self, batch_size: int, n_points: int, n_dims_active: int | None,
                  generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """xs [B, N, d], ys [B, N], w [B, d] of plain LR and the outlier mask [B, N] (True = outlier)."""
        xs = gaussian_points(batch_size, n_points, self.n_dims, n_dims_active, generator)  # [B, N, d]
        w = torch.randn(batch_size, self.n_dims, generator=generator, device=generator.device)  # [B, d]
        ys = (xs @ w.unsqueeze(-1)).squeeze(-1)  # [B, N]
        outlier = torch.rand(batch_size, n_points, generator=generator, device=generator.device) < self.p
        if self.placement == "fixed":
            outlier = fixed_outlier_positions(n_points, self.p).to(xs.device).expand(batch_size, n_points)
        elif self.placement == "none":
            outlier = torch.zeros_like(outlier)
        return xs, ys, w, outlier

    def loss(self, pred: Tensor, batch: Batch) -> Tensor:
        return masked_mean((pred[..., 0] - batch.ys).pow(2), batch.loss_mask)

    def metric(self, pred: Tensor, batch: Batch) -> Tensor:
        return (pred[..., 0] - batch.ys).pow(2) / self.n_dims  # [B, N], meaningful where loss_mask


@TASKS.register("orthogonal_outlier_regression")
@dataclass(frozen=True)
class OrthogonalOutlierRegression(_OutlierRegression):
    """LR whose outlier pairs are dummy vectors orthogonal to w (p=0.5).

    Paper semantics (default): u, v ⟂ the prompt's true w, for both dummies. `code_semantics=True` reproduces the
    official code (krafton-ai/mambaformer-icl src/train.py: `dummy_replace(inds, task_sampler(), ...)` once for xs
    and once for ys), where each dummy is orthogonal to its own fresh random w, unrelated to the prompt's (a likely
    bug). The same x-dummy is used at every outlier position of a prompt, and so is the (separately drawn) y-dummy.
    Dummies are full d-vectors (the code replaces tokens after truncation). ys at outlier positions holds the
    y-dummy's first coordinate (never scored). `extras["x_dummy_ref"]` / `["y_dummy_ref"]` hold the vectors the
    dummies are orthogonal to.

        >>> b = OrthogonalOutlierRegression(n_dims=4).sample(2, 8, generator=torch.Generator().manual_seed(0))
        >>> bool((b.extras["y_tokens"][..., 1:][b.loss_mask] == 0).all())
        True
    """

    p: float = 0.5
    code_semantics: bool = False

    def sample(self, batch_size: int, n_points: int, n_dims_active: int | None = None, *,
               generator: torch.Generator) -> Batch:
        xs, ys, w, outlier = self._clean_lr(batch_size, n_points, n_dims_active, generator)
        x_ref = y_ref = w  # [B, d]
        if self.code_semantics:  # two fresh LinearRegression tasks, one per dummy_replace call
            x_ref, y_ref = torch.randn(2, batch_size, self.n_dims, generator=generator, device=generator.device)
        x_dummy = orthogonal_dummy(x_ref, generator)  # [B, d]
        y_dummy = orthogonal_dummy(y_ref, generator)  # [B, d]
        y_tokens = torch.zeros_like(xs)  # [B, N, d]
        y_tokens[..., 0] = ys
        m = outlier.unsqueeze(-1)  # [B, N, 1]
        xs = torch.where(m, x_dummy.unsqueeze(1), xs)
        y_tokens = torch.where(m, y_dummy.unsqueeze(1), y_tokens)
        ys = torch.where(outlier, y_tokens[..., 0], ys)
        extras = {"w": w, "y_tokens": y_tokens, "x_dummy": x_dummy, "y_dummy": y_dummy, "x_dummy_ref": x_ref,
                  "y_dummy_ref": y_ref}
        return Batch(xs, ys, ~outlier, extras=extras)


@TASKS.register("many_outlier_regression")
@dataclass(frozen=True)
class ManyOutlierRegression(_OutlierRegression):
    """LR where most pairs (p=0.9) are the constant outlier (x = 1_d after truncation, y = 1).

        >>> b = ManyOutlierRegression(n_dims=4).sample(2, 8, 2, generator=torch.Generator().manual_seed(0))
        >>> b.xs[~b.loss_mask].unique().tolist()
        [1.0]
    """

    p: float = 0.9

    def sample(self, batch_size: int, n_points: int, n_dims_active: int | None = None, *,
               generator: torch.Generator) -> Batch:
        xs, ys, w, outlier = self._clean_lr(batch_size, n_points, n_dims_active, generator)
        xs = xs.masked_fill(outlier.unsqueeze(-1), 1.0)  # [B, N, d], all d coords, after truncation
        ys = ys.masked_fill(outlier, 1.0)  # [B, N]
        return Batch(xs, ys, ~outlier, extras={"w": w})
