"""Classical in-context baselines: each maps a `Batch` (format "pairs") to predictions [B, N, 1], like a model.

The prediction at position i uses only the pairs (x_j, y_j), j < i, and the query x_i, exactly like a causal model
read at x_i; with no examples (i = 0) a regression baseline predicts 0. Baselines are built by name with kwargs:

    ls = BASELINES.build("least_squares")
    pred = task.predict(ls, batch)                       # [B, N, 1], scored with task.metric like a model
    ridge = BASELINES.build("ridge", alpha=0.1)
    applicable("sparse_linear_regression")               # ["least_squares", ..., "lasso"]
    curves = baseline_curves(task, ["least_squares", "knn"], n_points=41, n_examples=1280, generator=g)

Registered: zero, least_squares (min-norm), least_squares_clean (outlier tasks, clean pairs only), ridge, averaging,
knn, lasso (sklearn), nn_gd (2-layer ReLU net by Adam, batched in torch), greedy_tree (sklearn DecisionTreeRegressor),
gradient_boosting (sklearn), xgboost (optional package), parity_solver (k-sparse hypothesis elimination),
parity_gf2 (Gaussian elimination over GF(2)).

Linear-algebra baselines compute in float64 (min-norm least squares at i = d is badly conditioned in float32) and
return the dtype of `batch.xs`. sklearn baselines fit B·(N-1) models in a Python loop: use few prompts.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from icllib.batch import Batch
from icllib.registry import Registry

BASELINES: Registry[type] = Registry("baseline")


def _context(batch: Batch) -> tuple[Tensor, Tensor]:
    """xs [B, N, d] and ys [B, N] in float64."""
    return batch.xs.double(), batch.ys.double()


def _out(pred: Tensor, batch: Batch) -> Tensor:
    return pred.unsqueeze(-1).to(batch.xs.dtype)  # [B, N, 1]


@BASELINES.register("zero")
@dataclass
class Zero:
    """Predicts 0 everywhere (the "trivial" level of the regression plots)."""

    def __call__(self, batch: Batch) -> Tensor:
        return torch.zeros(*batch.ys.shape[:2], 1, dtype=batch.xs.dtype, device=batch.xs.device)


@BASELINES.register("least_squares")
@dataclass
class LeastSquares:
    """Min-norm least squares on the prefix: w_i = pinv(X_{<i}) y_{<i}, ŷ_i = x_iᵀ w_i (batched over prompts).

        >>> pred = LeastSquares()(batch)   # [B, N, 1]; error (d - i)/d before i = d on noiseless LR, ~0 after
    """

    clean_only: bool = False  # fit only the pairs where batch.loss_mask is set (an oracle that knows the outliers)

    def __call__(self, batch: Batch) -> Tensor:
        xs, ys = _context(batch)
        if self.clean_only:  # zero rows leave the min-norm solution unchanged, so masking = dropping the pairs
            keep = batch.loss_mask.to(xs.dtype)  # [B, N]
            xs_fit, ys_fit = xs * keep.unsqueeze(-1), ys * keep
        else:
            xs_fit, ys_fit = xs, ys
        pred = torch.zeros_like(ys)  # [B, N]
        for i in range(1, xs.shape[1]):
            w = torch.linalg.pinv(xs_fit[:, :i]) @ ys_fit[:, :i].unsqueeze(-1)  # [B, d, 1]
            pred[:, i] = (xs[:, i : i + 1] @ w)[:, 0, 0]
        return _out(pred, batch)


@BASELINES.register("least_squares_clean")
@dataclass
class LeastSquaresClean(LeastSquares):
    """Least squares on the clean pairs only (outlier tasks): the reference a model could reach if it ignored every
    outlier perfectly. Plain `least_squares` fits all pairs, outliers included (Park's OLS baseline).

        >>> pred = LeastSquaresClean()(batch)   # [B, N, 1]
    """

    clean_only: bool = True


@BASELINES.register("ridge")
@dataclass
class Ridge:
    """Ridge regression on the prefix: w_i = (XᵀX + αI)⁻¹ Xᵀy over j < i.

        >>> pred = Ridge(alpha=0.1)(batch)   # [B, N, 1]
    """

    alpha: float = 0.1

    def __call__(self, batch: Batch) -> Tensor:
        xs, ys = _context(batch)
        d = xs.shape[-1]
        eye = torch.eye(d, dtype=xs.dtype, device=xs.device)
        pred = torch.zeros_like(ys)
        for i in range(1, xs.shape[1]):
            x, y = xs[:, :i], ys[:, :i].unsqueeze(-1)  # [B, i, d], [B, i, 1]
            w = torch.linalg.solve(x.transpose(1, 2) @ x + self.alpha * eye, x.transpose(1, 2) @ y)  # [B, d, 1]
            pred[:, i] = (xs[:, i : i + 1] @ w)[:, 0, 0]
        return _out(pred, batch)


@BASELINES.register("averaging")
@dataclass
class Averaging:
    """w_i = mean_{j<i} y_j x_j, ŷ_i = x_iᵀ w_i (Garg's "averaging" estimator); fully vectorised.

        >>> pred = Averaging()(batch)   # [B, N, 1]
    """

    def __call__(self, batch: Batch) -> Tensor:
        xs, ys = _context(batch)
        s = torch.cumsum(ys.unsqueeze(-1) * xs, dim=1)  # [B, N, d], inclusive sums
        s = torch.cat([torch.zeros_like(s[:, :1]), s[:, :-1]], dim=1)  # exclusive: sum over j < i
        count = torch.arange(xs.shape[1], dtype=xs.dtype, device=xs.device).clamp(min=1)  # [N]
        w = s / count[None, :, None]
        return _out((w * xs).sum(-1), batch)


@BASELINES.register("knn")
@dataclass
class KNN:
    """Mean y of the k nearest previous x (Euclidean, uniform weights; fewer than k when i < k); vectorised.

        >>> pred = KNN(k=3)(batch)   # [B, N, 1]
    """

    k: int = 3

    def __call__(self, batch: Batch) -> Tensor:
        xs, ys = _context(batch)
        n = xs.shape[1]
        dist = torch.cdist(xs, xs)  # [B, N(query i), N(example j)]
        later = torch.ones(n, n, dtype=torch.bool, device=xs.device).triu()  # [i, j]: j >= i is not visible
        dist = dist.masked_fill(later, float("inf"))
        vals, idx = dist.topk(min(self.k, n), dim=-1, largest=False)  # [B, N, k]
        valid = torch.isfinite(vals).to(ys.dtype)  # fewer than k examples before position k
        near_y = ys.unsqueeze(1).expand(-1, n, -1).gather(2, idx)  # [B, N, k]
        pred = (near_y * valid).sum(-1) / valid.sum(-1).clamp(min=1)  # [B, N]; 0 at i = 0
        return _out(pred, batch)


@BASELINES.register("lasso")
@dataclass
class Lasso:
    """sklearn Lasso (fit_intercept=False) on each prompt's prefix; a Python loop over prompts and positions.

        >>> pred = Lasso(alpha=0.01)(batch)   # [B, N, 1]; slow: B·N fits
    """

    alpha: float = 0.01
    max_iter: int = 100_000

    def __call__(self, batch: Batch) -> Tensor:
        from sklearn.linear_model import Lasso as SkLasso

        return _per_prompt_sklearn(
            batch, lambda: SkLasso(alpha=self.alpha, fit_intercept=False, max_iter=self.max_iter)
        )


@BASELINES.register("parity_solver")
@dataclass
class ParitySolver:
    """Exact reference for k-sparse parity: keep the k-subsets consistent with all pairs j < i and predict their
    majority vote at x_i, as a logit ±`confidence` (0 on a tie). k comes from `batch.meta["k"]`, else from `k`.

        >>> pred = ParitySolver()(batch)   # [B, N, 1]; accuracy 1 once one subset remains (~6-10 examples, d=10)
    """

    k: int = 2
    confidence: float = 10.0

    def __call__(self, batch: Batch) -> Tensor:
        xs, ys = batch.xs, batch.ys
        d, k = xs.shape[-1], int(batch.meta.get("k", self.k))
        subsets = torch.tensor(list(itertools.combinations(range(d), k)), device=xs.device)  # [H, k]
        labels = xs[..., subsets].prod(-1)  # [B, N, H]: each hypothesis' label for each x
        wrong = (labels != ys.unsqueeze(-1)).long()  # [B, N, H]
        n_wrong_before = torch.cumsum(wrong, dim=1) - wrong  # [B, N, H], mismatches among j < i
        consistent = n_wrong_before == 0
        vote = (labels * consistent).sum(-1)  # [B, N]
        return (torch.sign(vote) * self.confidence).unsqueeze(-1).to(xs.dtype)


def _per_prompt_sklearn(batch: Batch, make: Callable[[], Any]) -> Tensor:
    """Fit a fresh sklearn regressor on every prefix of every prompt (B·(N-1) fits) and predict at x_i: [B, N, 1]."""
    xs, ys = (t.detach().cpu().double().numpy() for t in (batch.xs, batch.ys))
    pred = torch.zeros(ys.shape, dtype=torch.float64)
    for b in range(xs.shape[0]):
        for i in range(1, xs.shape[1]):
            model = make().fit(xs[b, :i], ys[b, :i])
            pred[b, i] = float(model.predict(xs[b, i : i + 1])[0])
    return _out(pred.to(batch.xs.device), batch)


@BASELINES.register("greedy_tree")
@dataclass
class DecisionTreeBaseline:
    """sklearn DecisionTreeRegressor per prefix ("greedy tree learning" in Garg/Park, max_depth 4 or None).

        >>> pred = DecisionTreeBaseline(max_depth=4)(batch)   # [B, N, 1]; B·N fits
    """

    max_depth: int | None = 4

    def __call__(self, batch: Batch) -> Tensor:
        from sklearn.tree import DecisionTreeRegressor

        return _per_prompt_sklearn(batch, lambda: DecisionTreeRegressor(max_depth=self.max_depth, random_state=0))


@BASELINES.register("gradient_boosting")
@dataclass
class GradientBoosting:
    """sklearn GradientBoostingRegressor per prefix: the tree-ensemble reference for decision trees (Park/Grazzi plot
    XGBoost with default settings; `xgboost` runs that when the package is installed).

        >>> pred = GradientBoosting(n_estimators=100)(batch)   # [B, N, 1]; B·N fits, slow
    """

    n_estimators: int = 100
    max_depth: int = 3
    learning_rate: float = 0.1

    def __call__(self, batch: Batch) -> Tensor:
        from sklearn.ensemble import GradientBoostingRegressor

        def make() -> Any:
            return GradientBoostingRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                             learning_rate=self.learning_rate, random_state=0)

        return _per_prompt_sklearn(batch, make)


@BASELINES.register("xgboost")
@dataclass
class XGBoost:
    """xgboost.XGBRegressor with default settings per prefix, as in Garg/Park/Grazzi; needs the optional `xgboost`.

        >>> pred = XGBoost()(batch)   # [B, N, 1]; raises ImportError with an install hint when xgboost is missing
    """

    def __call__(self, batch: Batch) -> Tensor:
        try:
            import xgboost
        except ImportError as e:
            raise ImportError("the xgboost baseline needs the optional package: pip install xgboost") from e
        return _per_prompt_sklearn(batch, lambda: xgboost.XGBRegressor(random_state=0))


def xgboost_available() -> bool:
    return importlib.util.find_spec("xgboost") is not None


@BASELINES.register("nn_gd")
@dataclass
class TwoLayerNNGD:
    """A fresh 2-layer ReLU network (d → hidden → 1) fitted by Adam on each prefix, predicting at x_i.

    Garg et al.'s "2-layer NN, GD" baseline (dtsip src/models.py `GDModel` with `NeuralNetwork`, used by Park and
    Grazzi for relu_2nn_regression): hidden 100, Adam lr 5e-3, 100 steps, PyTorch's default Linear init, MSE.
    The official code samples minibatches of 100 pairs from the prefix; prefixes here are ≤ 100 pairs in the papers'
    settings, so we take the full prefix (identical there). All B·(N-1) networks train at once as batched tensors
    (Adam is elementwise, so summing their losses trains each on its own); `chunk` bounds memory. The init draws from
    a local generator seeded with `seed`, never the global RNG.

        >>> pred = TwoLayerNNGD(hidden=100, steps=100)(batch)   # [B, N, 1]
    """

    hidden: int = 100
    steps: int = 100
    lr: float = 5e-3
    seed: int = 0
    chunk: int = 8_000_000  # max hidden activations (B·P·N·h) held at once

    def __call__(self, batch: Batch) -> Tensor:
        xs, ys = batch.xs.float(), batch.ys.float()
        B, N, d = xs.shape
        h, dev = self.hidden, xs.device
        g = torch.Generator(device=dev).manual_seed(self.seed)
        pred = torch.zeros(B, N, device=dev)
        per_pos = max(1, self.chunk // max(1, B * N * h))
        with torch.enable_grad():
            for lo in range(1, N, per_pos):
                pos = torch.arange(lo, min(N, lo + per_pos), device=dev)  # [P] prefix lengths i
                pred[:, pos] = self._fit_predict(xs, ys, pos, g)
        return _out(pred, batch)

    def _fit_predict(self, xs: Tensor, ys: Tensor, pos: Tensor, g: torch.Generator) -> Tensor:
        """Train one network per (prompt, i in pos) on pairs j < i; return its predictions at x_i: [B, P]."""
        (B, N, d), P, h = xs.shape, len(pos), self.hidden

        def uniform(*shape: int, fan_in: int) -> Tensor:
            bound = 1 / math.sqrt(fan_in)
            return ((torch.rand(*shape, generator=g, device=xs.device) * 2 - 1) * bound).requires_grad_()

        w1, b1 = uniform(B, P, d, h, fan_in=d), uniform(B, P, 1, h, fan_in=d)  # [B, P, d, h], [B, P, 1, h]
        w2, b2 = uniform(B, P, h, fan_in=h), uniform(B, P, 1, fan_in=h)  # [B, P, h], [B, P, 1]
        mask = (torch.arange(N, device=xs.device)[None, :] < pos[:, None]).float()  # [P, N]: j < i
        count = mask.sum(-1)  # [P]

        def forward(x: Tensor) -> Tensor:  # x [B, M, d] shared by the P networks -> [B, P, M]
            hid = torch.relu(torch.einsum("bmd,bpdh->bpmh", x, w1) + b1)  # [B, P, M, h]
            return torch.einsum("bpmh,bph->bpm", hid, w2) + b2

        opt = torch.optim.Adam([w1, b1, w2, b2], lr=self.lr)
        for _ in range(self.steps):
            err = (forward(xs) - ys.unsqueeze(1)).pow(2)  # [B, P, N]
            loss = ((err * mask).sum(-1) / count).sum()  # each network's own MSE on its prefix, summed
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            out = forward(xs)  # [B, P, N]
            return out.gather(2, pos.view(1, P, 1).expand(B, P, 1)).squeeze(-1)  # [B, P] at x_i


@BASELINES.register("parity_gf2")
@dataclass
class ParityGF2:
    """Exact parity solver by Gaussian elimination over GF(2), knowing nothing about the sparsity k.

    With bits b = (1 - x)/2 ∈ {0, 1}^d, any parity label is y = (-1)^{⟨a, b⟩ mod 2} for an unknown a ∈ GF(2)^d.
    The prefix j < i fixes ⟨a, b_i⟩ exactly when b_i lies in the GF(2) span of b_1..b_{i-1}; then we predict it
    (logit ±`confidence`), else 0 (a coin flip). Every solver must guess on those x_i, so this is the
    information-theoretic reference for a learner that assumes only "some parity"; `parity_solver` (hypotheses of
    size k) is the Bayes reference for k-sparse parity. Rows are int64 bitmasks (d ≤ 62), eliminated with a basis
    indexed by leading bit, vectorised over the batch (a Python loop over positions and bits only).

        >>> pred = ParityGF2()(batch)   # [B, N, 1]; exact from about d + 2 examples on
    """

    confidence: float = 10.0

    def __call__(self, batch: Batch) -> Tensor:
        xs, ys = batch.xs, batch.ys
        B, N, d = xs.shape
        if d > 62:
            raise ValueError(f"parity_gf2: d={d} does not fit an int64 bitmask (d <= 62)")
        dev = xs.device
        weights = 2 ** torch.arange(d, device=dev)  # [d]
        feats = ((xs < 0).long() * weights).sum(-1)  # [B, N] bitmask of b
        labels = (ys < 0).long()  # [B, N] label bit
        basis = torch.zeros(B, d, dtype=torch.long, device=dev)  # basis[:, p]: a row whose leading bit is p (or 0)
        feat_mask = (1 << d) - 1
        rows = torch.arange(B, device=dev)
        pred = torch.zeros(B, N, device=dev)

        def reduce(v: Tensor) -> Tensor:  # [B] rows, label bit at position d
            for p in reversed(range(d)):
                row = basis[:, p]
                use = ((v >> p) & 1).bool() & (row != 0)
                v = torch.where(use, v ^ row, v)
            return v

        for i in range(N):
            q = reduce(feats[:, i])  # the query without its label
            known = (q & feat_mask) == 0
            bit = (q >> d) & 1  # XOR of the labels of the combination that spans b_i
            pred[:, i] = torch.where(known, (1 - 2 * bit).float() * self.confidence, torch.zeros_like(pred[:, i]))
            r = reduce(feats[:, i] | (labels[:, i] << d))  # insert the labelled pair
            f = r & feat_mask
            top = ((f.unsqueeze(-1) >> torch.arange(d, device=dev)) > 0).sum(-1) - 1  # [B] leading bit, -1 if none
            new = f != 0
            basis[rows[new], top[new]] = r[new]
        return pred.unsqueeze(-1).to(xs.dtype)

_LR_LIKE = ["least_squares", "ridge", "averaging", "knn", "zero"]
_APPLICABLE: dict[str, list[str]] = {
    "linear_regression": _LR_LIKE,
    "skewed_linear_regression": _LR_LIKE,
    "noisy_linear_regression": _LR_LIKE,
    "quadrant_linear_regression": _LR_LIKE,  # scored through task.predict's per-position re-queries
    "ood_linear_regression": _LR_LIKE,
    "sparse_linear_regression": [*_LR_LIKE, "lasso"],
    "relu_2nn_regression": ["least_squares", "averaging", "knn", "nn_gd", "zero"],
    "decision_tree": ["least_squares", "averaging", "knn", "greedy_tree", "gradient_boosting", "xgboost", "zero"],
    "orthogonal_outlier_regression": ["least_squares", "least_squares_clean", "zero"],
    "many_outlier_regression": ["least_squares", "least_squares_clean", "zero"],
    "sparse_parity": ["parity_solver", "parity_gf2"],
}


def applicable(task_name: str) -> list[str]:
    """Baseline names that make sense for a task family (Park/Garg's `get_relevant_baselines`, plus zero/ridge);
    [] for families without a classical reference (CoT, MQAR, token tasks). `xgboost` is listed only when the
    optional package is installed.

        >>> applicable("sparse_parity")
        ['parity_solver', 'parity_gf2']
    """
    names = list(_APPLICABLE.get(task_name, []))
    return [n for n in names if n != "xgboost" or xgboost_available()]
