"""Regression families (Garg et al. 2022; Park et al. 2024; Grazzi et al. 2024): linear, sparse linear, ReLU 2-layer
network, decision tree, skewed-input linear, noisy linear and random-quadrant linear regression.

Each prompt draws its own w ~ N(0, I_d) and points x ~ N(0, I_d) with the coordinates beyond the curriculum's
active dims set to zero; y = wᵀx, no noise. The metric is the squared error divided by d (the papers'
"normalized squared error": the zero predictor scores about 1). The other families follow the same pattern and
differ in f, in the input distribution, or in the metric's divisor (sparse: k, decision tree: 1).

    >>> task = LinearRegression(n_dims=20)
    >>> b = task.sample(64, 41, 5, generator=torch.Generator().manual_seed(0))
    >>> b.xs.shape, b.ys.shape                    # [B, N, d], [B, N]
    (torch.Size([64, 41, 20]), torch.Size([64, 41]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from icllib.batch import Batch, IOSpec, Predictor
from icllib.config import ConfigError
from icllib.tasks.base import TASKS, Task, check_sample_args


def gaussian_points(batch_size: int, n_points: int, n_dims: int, n_dims_active: int | None,
                    generator: torch.Generator) -> Tensor:
    """x ~ N(0, I_d) with coordinates >= n_dims_active zeroed (curriculum truncation): [B, N, d]."""
    check_sample_args(batch_size, n_points, n_dims_active, n_dims)
    xs = torch.randn(batch_size, n_points, n_dims, generator=generator, device=generator.device)
    if n_dims_active is not None and n_dims_active < n_dims:
        xs[..., n_dims_active:] = 0
    return xs


@TASKS.register("linear_regression")
@dataclass(frozen=True)
class LinearRegression(Task):
    """y = wᵀx with w ~ N(0, I_d) per prompt; MSE loss over all positions; metric squared error / d."""

    n_dims: int = 20

    def io(self) -> IOSpec:
        return IOSpec("pairs", d_in=self.n_dims, d_out=1)

    def sample(self, batch_size: int, n_points: int, n_dims_active: int | None = None, *,
               generator: torch.Generator) -> Batch:
        xs = gaussian_points(batch_size, n_points, self.n_dims, n_dims_active, generator)  # [B, N, d]
        w = torch.randn(batch_size, self.n_dims, 1, generator=generator, device=generator.device)  # [B, d, 1]
        ys = (xs @ w).squeeze(-1)  # [B, N]
        mask = torch.ones(batch_size, n_points, dtype=torch.bool, device=xs.device)
        return Batch(xs, ys, mask, extras={"w": w.squeeze(-1)})

    def loss(self, pred: Tensor, batch: Batch) -> Tensor:
        return (pred[..., 0] - batch.ys).pow(2).mean()

    def metric(self, pred: Tensor, batch: Batch) -> Tensor:
        return (pred[..., 0] - batch.ys).pow(2) / self.n_dims  # [B, N]


def _all_positions(batch_size: int, n_points: int, device: torch.device) -> Tensor:
    return torch.ones(batch_size, n_points, dtype=torch.bool, device=device)  # [B, N]


@TASKS.register("sparse_linear_regression")
@dataclass(frozen=True)
class SparseLinearRegression(LinearRegression):
    """y = wᵀx where w ~ N(0, I_d) keeps only `sparsity` coordinates, drawn among the active dims; metric / k.

    With fewer active dims than k, all active dims are kept (as Garg's `randperm(valid_coords)[:k]`).

        >>> b = SparseLinearRegression(n_dims=20).sample(8, 11, 5, generator=torch.Generator().manual_seed(0))
        >>> int((b.extras["w"] != 0).sum(1).max())
        3
    """

    n_dims: int = 20
    sparsity: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.sparsity <= self.n_dims:
            raise ConfigError(f"task.kwargs.sparsity: must be in [1, n_dims={self.n_dims}], got {self.sparsity}")

    def sample(self, batch_size: int, n_points: int, n_dims_active: int | None = None, *,
               generator: torch.Generator) -> Batch:
        d, dev = self.n_dims, generator.device
        active = d if n_dims_active is None else min(n_dims_active, d)
        xs = gaussian_points(batch_size, n_points, d, n_dims_active, generator)  # [B, N, d]
        w = torch.randn(batch_size, d, generator=generator, device=dev)  # [B, d]
        # a uniformly random k-subset of the active dims per prompt: the first k of a random permutation
        perm = torch.rand(batch_size, active, generator=generator, device=dev).argsort(-1)  # [B, active]
        keep = torch.zeros(batch_size, d, dtype=torch.bool, device=dev)
        keep.scatter_(1, perm[:, : min(self.sparsity, active)], True)
        w = w * keep  # [B, d]
        ys = (xs @ w.unsqueeze(-1)).squeeze(-1)  # [B, N]
        return Batch(xs, ys, _all_positions(batch_size, n_points, xs.device), extras={"w": w})

    def metric(self, pred: Tensor, batch: Batch) -> Tensor:
        return (pred[..., 0] - batch.ys).pow(2) / self.sparsity  # [B, N]


@TASKS.register("relu_2nn_regression")
@dataclass(frozen=True)
class Relu2NNRegression(LinearRegression):
    """y = sqrt(2/h) W2ᵀ relu(W1ᵀx), W1 [d, h] and W2 [h, 1] ~ N(0, 1) per prompt; metric squared error / d.

        >>> b = Relu2NNRegression(n_dims=20).sample(4, 26, 5, generator=torch.Generator().manual_seed(0))
        >>> b.ys.shape
        torch.Size([4, 26])
    """

    n_dims: int = 20
    hidden_size: int = 100

    def __post_init__(self) -> None:
        if self.hidden_size < 1:
            raise ConfigError(f"task.kwargs.hidden_size: must be >= 1, got {self.hidden_size}")

    def sample(self, batch_size: int, n_points: int, n_dims_active: int | None = None, *,
               generator: torch.Generator) -> Batch:
        d, h, dev = self.n_dims, self.hidden_size, generator.device
        xs = gaussian_points(batch_size, n_points, d, n_dims_active, generator)  # [B, N, d]
        w1 = torch.randn(batch_size, d, h, generator=generator, device=dev)  # [B, d, h]
        w2 = torch.randn(batch_size, h, 1, generator=generator, device=dev)  # [B, h, 1]
        ys = (math.sqrt(2 / h) * torch.relu(xs @ w1) @ w2).squeeze(-1)  # [B, N]
        return Batch(xs, ys, _all_positions(batch_size, n_points, xs.device), extras={"w1": w1, "w2": w2[..., 0]})


@TASKS.register("decision_tree")
@dataclass(frozen=True)
class DecisionTree(LinearRegression):
    """A complete binary tree of `depth` per prompt; y is the value of the leaf that x falls into; metric / 1.

    Nodes are stored heap-style in 2^(depth+1) - 1 slots. Every slot gets a coordinate ~ U{0..d-1} (all d dims,
    including currently zeroed ones) and a value ~ N(0, 1); only leaf values are read. From node i, go to
    2i + 2 if x[coord[i]] > 0, else 2i + 1.

        >>> b = DecisionTree(n_dims=20).sample(4, 26, 5, generator=torch.Generator().manual_seed(0))
        >>> b.extras["coords"].shape, b.extras["values"].shape
        (torch.Size([4, 31]), torch.Size([4, 31]))
    """

    n_dims: int = 20
    depth: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.depth <= 16:
            raise ConfigError(f"task.kwargs.depth: must be in [1, 16], got {self.depth}")

    def sample(self, batch_size: int, n_points: int, n_dims_active: int | None = None, *,
               generator: torch.Generator) -> Batch:
        dev, n_nodes = generator.device, 2 ** (self.depth + 1) - 1
        xs = gaussian_points(batch_size, n_points, self.n_dims, n_dims_active, generator)  # [B, N, d]
        coords = torch.randint(0, self.n_dims, (batch_size, n_nodes), generator=generator, device=dev)  # [B, T]
        values = torch.randn(batch_size, n_nodes, generator=generator, device=dev)  # [B, T]
        ys = tree_predict(xs, coords, values, self.depth)  # [B, N]
        extras = {"coords": coords, "values": values}
        return Batch(xs, ys, _all_positions(batch_size, n_points, xs.device), extras=extras)

    def metric(self, pred: Tensor, batch: Batch) -> Tensor:
        return (pred[..., 0] - batch.ys).pow(2)  # [B, N]


def tree_predict(xs: Tensor, coords: Tensor, values: Tensor, depth: int) -> Tensor:
    """Evaluate heap-ordered trees: xs [B, N, d], coords/values [B, 2^(depth+1)-1] -> [B, N], no Python loop
    over examples."""
    node = torch.zeros(xs.shape[:2], dtype=torch.long, device=xs.device)  # [B, N]
    for _ in range(depth):
        c = coords.gather(1, node)  # [B, N] coordinate tested at each example's current node
        go_right = xs.gather(2, c.unsqueeze(-1)).squeeze(-1) > 0  # [B, N]
        node = 2 * node + 1 + go_right.long()
    return values.gather(1, node)  # [B, N]


SPECTRA = ("skewed", "half_subspace")


def skewed_transform(n_dims: int, generator: torch.Generator, spectrum: str = "skewed") -> Tensor:
    """Grazzi's skewed covariance factor T = c · U diag(λ) Uᵀ with λ_i = 1/(i+1) ("skewed"; or λ = 1 on half the
    directions and 0 on the rest, Garg's "half_subspace" eval), U from the SVD of a Gaussian matrix,
    c = sqrt(d / Σλ²) so that x = z·T (z ~ N(0, I)) has E‖x‖² = d. Returns T [d, d]."""
    g = torch.randn(n_dims, n_dims, generator=generator, device=generator.device)
    u, _, _ = torch.linalg.svd(g)
    if spectrum == "skewed":
        lam = 1.0 / torch.arange(1, n_dims + 1, dtype=g.dtype, device=g.device)  # [d]
    else:
        lam = (torch.arange(n_dims, device=g.device) < max(1, n_dims // 2)).to(g.dtype)  # [d]
    lam = lam * math.sqrt(n_dims / lam.pow(2).sum().item())
    return u @ torch.diag(lam) @ u.T  # [d, d]


@TASKS.register("skewed_linear_regression")
@dataclass(frozen=True)
class SkewedLinearRegression(LinearRegression):
    """Linear regression on skewed inputs x = z·T (Grazzi et al.); one T per `sample` call, shared by the batch.

    Truncation to the active dims is applied after the transform (as the sampler does). Metric squared error / d.
    Grazzi's training draws a new T on every `sample_xs` call (samplers.py `SkewedGaussianSampler`); Garg's "skewed"
    evaluation (eval.py `build_evals`) uses one T drawn once. `transform_seed` set to an int gives that fixed T
    (drawn from its own generator, so the sampling stream is unchanged); None (default) draws T per call.

        >>> b = SkewedLinearRegression(n_dims=20).sample(64, 41, generator=torch.Generator().manual_seed(0))
        >>> b.extras["T"].shape
        torch.Size([20, 20])
    """

    n_dims: int = 20
    transform_seed: int | None = None
    spectrum: str = "skewed"  # or "half_subspace" (Garg's eval: x confined to a random d/2-dim subspace)

    def __post_init__(self) -> None:
        if self.spectrum not in SPECTRA:
            raise ConfigError(f"task.kwargs.spectrum: {self.spectrum!r} is not one of {', '.join(SPECTRA)}")

    def sample(self, batch_size: int, n_points: int, n_dims_active: int | None = None, *,
               generator: torch.Generator) -> Batch:
        d, dev = self.n_dims, generator.device
        check_sample_args(batch_size, n_points, n_dims_active, d)
        if self.transform_seed is None:
            t = skewed_transform(d, generator, self.spectrum)  # [d, d], one per call
        else:
            t = skewed_transform(d, torch.Generator(device=dev).manual_seed(self.transform_seed), self.spectrum)
        xs = torch.randn(batch_size, n_points, d, generator=generator, device=dev) @ t  # [B, N, d]
        if n_dims_active is not None and n_dims_active < d:
            xs[..., n_dims_active:] = 0
        w = torch.randn(batch_size, d, 1, generator=generator, device=dev)  # [B, d, 1]
        ys = (xs @ w).squeeze(-1)  # [B, N]
        return Batch(xs, ys, _all_positions(batch_size, n_points, xs.device), extras={"w": w[..., 0], "T": t})


@TASKS.register("noisy_linear_regression")
@dataclass(frozen=True)
class NoisyLinearRegression(LinearRegression):
    """y = wᵀx + noise_std·ε, ε ~ N(0, 1) (Garg/Grazzi noisyLR); metric squared error / d against the noisy y.

    The trivial (zero-predictor) level is E[y²]/d = 1 + noise_std²/d, and the best achievable level tends to
    noise_std²/d. With `renormalize_ys`, y is rescaled by sqrt(d)/std(y) over the batch (Garg's option); the
    trivial level is then 1.

        >>> b = NoisyLinearRegression(n_dims=20).sample(4, 41, generator=torch.Generator().manual_seed(0))
        >>> b.extras["noise"].shape
        torch.Size([4, 41])
    """

    n_dims: int = 20
    noise_std: float = 1.0
    renormalize_ys: bool = False

    def __post_init__(self) -> None:
        if not self.noise_std >= 0:
            raise ConfigError(f"task.kwargs.noise_std: must be >= 0, got {self.noise_std}")

    def sample(self, batch_size: int, n_points: int, n_dims_active: int | None = None, *,
               generator: torch.Generator) -> Batch:
        b = super().sample(batch_size, n_points, n_dims_active, generator=generator)
        noise = self.noise_std * torch.randn(batch_size, n_points, generator=generator, device=generator.device)
        ys = b.ys + noise  # [B, N]
        if self.renormalize_ys:
            ys = ys * math.sqrt(self.n_dims) / ys.std()
        return Batch(b.xs, ys, b.loss_mask, extras={**b.extras, "noise": noise})


OOD_STRATEGIES = ("random_quadrants", "opposite_quadrants", "orthogonal_train_test", "overlapping_train_test",
                  "scale_x", "scale_y")
_REQUERY = ("random_quadrants", "opposite_quadrants", "orthogonal_train_test", "overlapping_train_test")


@TASKS.register("ood_linear_regression")
@dataclass(frozen=True)
class OODLinearRegression(LinearRegression):
    """Garg et al.'s out-of-distribution prompts for a model trained on LR (inherited by Grazzi et al.), by `strategy`.

    Official code: dtsip/in-context-learning src/eval.py (`gen_*`, `eval_batch`, `build_evals`); the krafton and
    automl forks are identical. Four strategies re-query every position with a query x that differs from the
    context's points (`gen_*` returns xs_train_pre, xs_test_post; `eval_batch` scores position i on the prompt
    (pre_1, y_1, ..., pre_{i-1}, y_{i-1}, post_i), one forward pass per i):

    - "random_quadrants":      context |x|·s with one sign pattern s per prompt; query the original x_i.
    - "opposite_quadrants":    context |x|·s; query -|x_i|·s.
    - "orthogonal_train_test": context x; query x_i with its projection on span(x_{<i}) removed, rescaled to ‖x_i‖;
      as in the code, only the first min(N, d) queries are built and later ones are 0 (so is their y).
    - "overlapping_train_test": context x; query a uniformly chosen earlier x_j, j < i (x_0 at i = 0).

    Here `xs`/`ys` hold the context points (what `model(batch)` and `loss` see), `extras["xs_query"]` /
    `["ys_query"]` the queries; `predict` runs the per-position re-queries and `metric` scores them (/ d).
    Two strategies only rescale the prompt (one pass, metric against ys): "scale_x" (x·`scale`; the code's
    U diag(scale) Uᵀ is scale·I) and "scale_y" (y·`scale`), with scale ∈ {0.333, 0.5, 2, 3} in `build_evals`.
    The other `build_evals` entries are `skewed_linear_regression` (transform_seed set; spectrum "skewed" or
    "half_subspace") and `noisy_linear_regression` (noise_std 1, renormalize_ys).

        >>> task = OODLinearRegression(n_dims=4, strategy="opposite_quadrants")
        >>> b = task.sample(2, 6, generator=torch.Generator().manual_seed(0))
        >>> bool(torch.equal(b.extras["xs_query"], -b.xs))
        True
    """

    n_dims: int = 20
    strategy: str = "random_quadrants"
    scale: float = 2.0

    def __post_init__(self) -> None:
        if self.strategy not in OOD_STRATEGIES:
            raise ConfigError(f"task.kwargs.strategy: {self.strategy!r} is not one of {', '.join(OOD_STRATEGIES)}")

    def sample(self, batch_size: int, n_points: int, n_dims_active: int | None = None, *,
               generator: torch.Generator) -> Batch:
        B, N, d, dev = batch_size, n_points, self.n_dims, generator.device
        x = gaussian_points(B, N, d, n_dims_active, generator)  # [B, N, d]
        extras: dict[str, Tensor] = {}
        if self.strategy in ("random_quadrants", "opposite_quadrants"):
            bits = torch.randint(0, 2, (B, 1, d), generator=generator, device=dev)
            pattern = bits * 2.0 - 1  # [B, 1, d], the prompt's orthant
            xs = x.abs() * pattern
            x_query = x if self.strategy == "random_quadrants" else -xs
            extras["pattern"] = pattern[:, 0]
        elif self.strategy == "orthogonal_train_test":
            xs, x_query = x, orthogonal_queries(x)
        elif self.strategy == "overlapping_train_test":
            i = torch.arange(N, device=dev).clamp(min=1)  # [N]
            j = (torch.rand(B, N, generator=generator, device=dev) * i).long()  # [B, N], uniform in [0, i)
            xs, x_query = x, x.gather(1, j.unsqueeze(-1).expand(B, N, d))
            x_query[:, 0] = x[:, 0]
        else:  # scale_x / scale_y: no re-query
            xs = x * self.scale if self.strategy == "scale_x" else x
            x_query = None
        w = torch.randn(B, d, 1, generator=generator, device=dev)  # [B, d, 1]
        y_scale = self.scale if self.strategy == "scale_y" else 1.0
        ys = y_scale * (xs @ w).squeeze(-1)  # [B, N]
        extras["w"] = w[..., 0]
        if x_query is not None:
            extras["xs_query"], extras["ys_query"] = x_query, (x_query @ w).squeeze(-1)
        return Batch(xs, ys, _all_positions(B, N, dev), extras=extras)

    def metric(self, pred: Tensor, batch: Batch) -> Tensor:
        target = batch.extras.get("ys_query", batch.ys)  # re-queried strategies are scored on their queries
        return (pred[..., 0] - target).pow(2) / self.n_dims  # [B, N]

    def predict(self, model: Predictor, batch: Batch) -> Tensor:
        """[B, N, 1]: position i read from the prompt (context pairs < i, query x_i); one pass when not re-queried."""
        if "xs_query" not in batch.extras:
            return model(batch)
        xq, yq = batch.extras["xs_query"], batch.extras["ys_query"]
        preds = []
        for i in range(batch.xs.shape[1]):
            xs = torch.cat((batch.xs[:, :i], xq[:, i : i + 1]), dim=1)  # [B, i + 1, d]
            ys = torch.cat((batch.ys[:, :i], yq[:, i : i + 1]), dim=1)  # [B, i + 1]; y_i is never visible at x_i
            extras = {"xs_query": xq[:, : i + 1], "ys_query": yq[:, : i + 1]}
            prompt = Batch(xs, ys, batch.loss_mask[:, : i + 1], extras=extras, meta=batch.meta)
            preds.append(model(prompt)[:, i])  # [B, 1]
        return torch.stack(preds, dim=1)  # [B, N, 1]


def orthogonal_queries(x: Tensor) -> Tensor:
    """Garg's `gen_orthogonal_train_test`: query i is x_i minus its projection on span(x_0..x_{i-1}), rescaled to
    ‖x_i‖, for i < min(N, d); later queries stay 0 (as in the code). x [B, N, d] -> [B, N, d]."""
    out = torch.zeros_like(x)
    for i in range(min(x.shape[1], x.shape[2])):
        q = x[:, i : i + 1]  # [B, 1, d]
        if i > 0:
            _, _, vt = torch.linalg.svd(x[:, :i], full_matrices=False)  # [B, i, d]
            q = q - q @ vt.transpose(1, 2) @ vt
        norm = q.norm(dim=2, keepdim=True).clamp_min(1e-12)  # 0 only if x_i lies in the span (truncated dims)
        out[:, i : i + 1] = q * x[:, i : i + 1].norm(dim=2, keepdim=True) / norm
    return out


@TASKS.register("quadrant_linear_regression")
@dataclass(frozen=True)
class QuadrantLinearRegression(OODLinearRegression):
    """`ood_linear_regression` with strategy "random_quadrants" (Grazzi's quadrant evaluation) under its own name.

    In-context xs all lie in one random orthant; every position is queried with the unrestricted x_i.

        >>> b = QuadrantLinearRegression(n_dims=4).sample(2, 6, generator=torch.Generator().manual_seed(0))
        >>> bool((b.xs * b.extras["pattern"].unsqueeze(1) >= 0).all())   # every context x lies in its orthant
        True
    """

    strategy: str = "random_quadrants"
