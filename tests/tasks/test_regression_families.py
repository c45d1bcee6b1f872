"""Regression families: shapes, determinism, RNG hygiene, truncation, family-specific structure."""

import math

import pytest
import torch

from icllib.config import ConfigError, TaskConfig
from icllib.tasks import build_task
from icllib.tasks.regression import tree_predict

NAMES = ["linear_regression", "sparse_linear_regression", "relu_2nn_regression", "decision_tree",
         "skewed_linear_regression", "noisy_linear_regression"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_determinism_rng(name: str) -> None:
    task = build_task(TaskConfig(name, n_dims=20))
    assert task.io().format == "pairs" and task.io().d_out == 1
    state = torch.get_rng_state()
    b1 = task.sample(8, 11, 5, generator=_gen(0))
    b2 = task.sample(8, 11, 5, generator=_gen(0))
    b3 = task.sample(8, 11, 5, generator=_gen(1))
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    assert b1.xs.shape == (8, 11, 20) and b1.ys.shape == (8, 11) and b1.loss_mask.shape == (8, 11)
    assert b1.xs.dtype == torch.float32 and b1.ys.dtype == torch.float32 and b1.loss_mask.dtype == torch.bool
    assert bool(b1.loss_mask.all())
    assert torch.equal(b1.xs, b2.xs) and torch.equal(b1.ys, b2.ys)
    assert not torch.equal(b1.ys, b3.ys)
    assert bool((b1.xs[..., 5:] == 0).all())  # truncation zeroes the inactive dims
    assert bool((b1.xs[..., :5] != 0).all())
    # a perfect predictor scores 0; the loss is a scalar
    pred = b1.ys.unsqueeze(-1)
    assert task.loss(pred, b1).item() == 0 and task.metric(pred, b1).shape == (8, 11)
    assert float(task.metric(pred, b1).abs().max()) == 0


def test_sparse_support_within_active_dims() -> None:
    task = build_task(TaskConfig("sparse_linear_regression", kwargs={"sparsity": 3}))
    b = task.sample(256, 11, 7, generator=_gen(0))
    w = b.extras["w"]
    assert bool(((w != 0).sum(1) == 3).all())
    assert bool((w[:, 7:] == 0).all())
    assert torch.allclose(b.ys, (b.xs @ w.unsqueeze(-1)).squeeze(-1), atol=1e-5)
    assert set((w != 0).nonzero()[:, 1].tolist()) == set(range(7))  # all active dims used over 256 prompts
    # zero predictor: E y² / k = 1 (each of the k active coords has unit variance)
    zero = task.metric(torch.zeros(256, 11, 1), b).mean().item()
    assert abs(zero - 1) < 0.15


def test_relu_2nn_formula() -> None:
    task = build_task(TaskConfig("relu_2nn_regression"))
    b = task.sample(4, 9, None, generator=_gen(3))
    w1, w2 = b.extras["w1"], b.extras["w2"]
    ref = math.sqrt(2 / 100) * torch.relu(b.xs[1] @ w1[1]) @ w2[1]
    assert torch.allclose(b.ys[1], ref, atol=1e-5)


def test_decision_tree_matches_slow_reference() -> None:
    task = build_task(TaskConfig("decision_tree", n_dims=20))
    b = task.sample(6, 13, 5, generator=_gen(0))
    coords, values = b.extras["coords"], b.extras["values"]
    for i in range(6):
        for n in range(13):
            node = 0
            for _ in range(4):
                node = 2 * node + 2 if b.xs[i, n, coords[i, node]] > 0 else 2 * node + 1
            assert b.ys[i, n].item() == values[i, node].item()
    assert int(coords.max()) >= 5  # coords come from all d dims, not only the active ones
    assert torch.equal(tree_predict(b.xs, coords, values, 4), b.ys)


def test_skewed_covariance() -> None:
    task = build_task(TaskConfig("skewed_linear_regression", n_dims=20))
    b = task.sample(64, 256, None, generator=_gen(0))
    t = b.extras["T"]
    assert torch.allclose(t, t.T, atol=1e-5)
    eig = torch.linalg.eigvalsh(t).flip(0)
    lam = 1 / torch.arange(1, 21)
    assert torch.allclose(eig, lam * math.sqrt(20 / lam.pow(2).sum()), rtol=1e-3, atol=1e-4)
    assert abs(b.xs.pow(2).sum(-1).mean().item() - 20) < 1.0  # E‖x‖² = d (64·256 samples)
    b2 = task.sample(64, 4, None, generator=_gen(0))
    assert torch.equal(b2.extras["T"], t)


def test_noisy_lr_trivial_level() -> None:
    task = build_task(TaskConfig("noisy_linear_regression", kwargs={"noise_std": 1.0}))
    b = task.sample(256, 41, None, generator=_gen(0))
    clean = b.ys - b.extras["noise"]
    assert torch.allclose(clean, (b.xs @ b.extras["w"].unsqueeze(-1)).squeeze(-1), atol=1e-4)
    assert abs(b.extras["noise"].std().item() - 1) < 0.03
    zero = task.metric(torch.zeros(256, 41, 1), b).mean().item()
    assert abs(zero - (1 + 1 / 20)) < 0.1


@pytest.mark.parametrize("name,kwargs", [
    ("sparse_linear_regression", {"sparsity": 0}),
    ("sparse_linear_regression", {"sparsity": 21}),
    ("sparse_linear_regression", {"k": 3}),
    ("relu_2nn_regression", {"hidden_size": 0}),
    ("decision_tree", {"depth": 0}),
    ("noisy_linear_regression", {"noise_std": -1.0}),
])
def test_bad_kwargs(name: str, kwargs: dict) -> None:
    with pytest.raises(ConfigError) as e:
        build_task(TaskConfig(name, n_dims=20, kwargs=kwargs))
    assert "\n" not in str(e.value)


def test_skewed_fixed_transform() -> None:
    task = build_task(TaskConfig("skewed_linear_regression", n_dims=8, kwargs={"transform_seed": 5}))
    g = _gen(0)
    t1, t2 = (task.sample(2, 3, None, generator=g).extras["T"] for _ in range(2))
    assert torch.equal(t1, t2)  # one T for every call (Garg's "skewed" eval)
    per_call = build_task(TaskConfig("skewed_linear_regression", n_dims=8))
    g = _gen(0)
    assert not torch.equal(*(per_call.sample(2, 3, None, generator=g).extras["T"] for _ in range(2)))


@pytest.mark.parametrize("strategy", ["random_quadrants", "opposite_quadrants", "orthogonal_train_test",
                                      "overlapping_train_test", "scale_x", "scale_y"])
def test_ood_strategies(strategy: str) -> None:
    from icllib.analysis.baselines import BASELINES

    d, n = 6, 10
    task = build_task(TaskConfig("ood_linear_regression", n_dims=d, kwargs={"strategy": strategy, "scale": 3.0}))
    b = task.sample(64, n, None, generator=_gen(0))
    assert torch.equal(b.xs, task.sample(64, n, None, generator=_gen(0)).xs)
    w = b.extras["w"]
    assert torch.allclose(b.ys, (3.0 if strategy == "scale_y" else 1.0) * (b.xs @ w.unsqueeze(-1)).squeeze(-1),
                          atol=1e-4)
    ls = task.metric(task.predict(BASELINES.build("least_squares"), b), b).mean(0)  # [N]
    if strategy == "scale_x":
        assert abs(b.xs.pow(2).mean().item() - 9.0) < 0.5
    if strategy in ("scale_x", "scale_y", "random_quadrants", "opposite_quadrants"):
        assert ls[d + 1 :].max().item() < 1e-6  # w is identified from d context points, whatever the query
        return
    xq = b.extras["xs_query"]
    assert torch.allclose(b.extras["ys_query"], (xq @ w.unsqueeze(-1)).squeeze(-1), atol=1e-4)
    if strategy == "orthogonal_train_test":
        for i in range(1, d):
            assert (xq[:, i : i + 1] @ b.xs[:, :i].transpose(1, 2)).abs().max().item() < 1e-3  # ⟂ earlier points
        assert torch.allclose(xq[:, :d].norm(dim=-1), b.xs[:, :d].norm(dim=-1), atol=1e-4)
        assert bool((xq[:, d:] == 0).all())  # the code fills only min(N, d) queries
        assert ls[1:d].mean().item() > 0.5  # least squares knows nothing about w off the span: about chance
    else:  # overlapping: every query is an earlier context point, which min-norm least squares interpolates
        earlier = (xq.unsqueeze(2) == b.xs.unsqueeze(1)).all(-1)  # [B, N(query), N(context)]
        assert bool(torch.tril(earlier, diagonal=-1)[:, 1:].any(-1).all())
        assert ls[1:].max().item() < 1e-6


def test_half_subspace_spectrum() -> None:
    task = build_task(TaskConfig("skewed_linear_regression", n_dims=8,
                                 kwargs={"spectrum": "half_subspace", "transform_seed": 0}))
    b = task.sample(16, 20, None, generator=_gen(0))
    assert torch.linalg.matrix_rank(b.xs.reshape(-1, 8)).item() == 4
    assert abs(b.xs.pow(2).sum(-1).mean().item() - 8) < 1.0
    with pytest.raises(ConfigError, match="spectrum"):
        build_task(TaskConfig("skewed_linear_regression", kwargs={"spectrum": "flat"}))
    with pytest.raises(ConfigError, match="strategy"):
        build_task(TaskConfig("ood_linear_regression", kwargs={"strategy": "quadrants"}))
