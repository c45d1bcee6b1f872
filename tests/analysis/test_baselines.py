"""Classical baselines: causality, shapes, and their known error curves on the tasks they are references for; then
the exact reference solvers: GF(2) elimination and k-subset elimination for parity, least squares on clean pairs for
outlier tasks, and RNG hygiene of the fitted baselines."""

import pytest
import torch

from icllib.analysis.baselines import BASELINES, applicable
from icllib.config import TaskConfig
from icllib.registry import UnknownNameError
from icllib.tasks import TASKS, build_task


def _batch(name: str, b: int, n: int, d: int = 10, seed: int = 0, active: int | None = None, **kwargs):
    task = build_task(TaskConfig(name, n_dims=d, kwargs=kwargs))
    return task, task.sample(b, n, active, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["least_squares", "ridge", "averaging", "knn", "zero", "lasso"])
def test_regression_baselines_causal(name: str) -> None:
    _, b = _batch("linear_regression", 3, 12)
    pred = BASELINES.build(name)(b)
    assert pred.shape == (3, 12, 1) and pred.dtype == torch.float32
    assert bool((pred[:, 0] == 0).all())  # no examples yet
    i = 6  # changing y_i and everything after position i must not move predictions at positions <= i
    b.ys[:, i:] += 5.0
    b.xs[:, i + 1 :] += 1.0
    pred2 = BASELINES.build(name)(b)
    assert torch.allclose(pred[:, : i + 1], pred2[:, : i + 1], atol=1e-6)


def test_least_squares_curve() -> None:
    d = 10
    task, b = _batch("linear_regression", 1024, 16, d=d)
    err = task.metric(BASELINES.build("least_squares")(b), b).mean(0)  # [N]
    for i in range(d):
        expected = (d - i) / d
        assert abs(err[i].item() - expected) < 0.15 * expected + 0.02, (i, err[i].item())
    assert err[d:].max().item() < 1e-6


def test_ridge_averaging_knn_reference() -> None:
    _, b = _batch("linear_regression", 4, 30, d=5)
    ls = BASELINES.build("least_squares")(b)
    assert torch.allclose(BASELINES.build("ridge", alpha=1e-8)(b)[:, 10:], ls[:, 10:], atol=1e-4)
    i = 7
    w = (b.ys[:, :i, None] * b.xs[:, :i]).mean(1)  # [B, d]
    assert torch.allclose(BASELINES.build("averaging")(b)[:, i, 0], (w * b.xs[:, i]).sum(-1), atol=1e-5)
    dist = (b.xs[0, :i] - b.xs[0, i]).norm(dim=-1)
    near = dist.argsort()[:3]
    assert abs(BASELINES.build("knn", k=3)(b)[0, i, 0].item() - b.ys[0, near].mean().item()) < 1e-5
    assert BASELINES.build("knn", k=1)(b)[0, 1, 0].item() == pytest.approx(b.ys[0, 0].item(), abs=1e-6)


def test_lasso_beats_least_squares_on_sparse() -> None:
    task, b = _batch("sparse_linear_regression", 4, 16, d=20)
    lasso = task.metric(BASELINES.build("lasso", alpha=0.01)(b), b)[:, 12:].mean().item()
    ls = task.metric(BASELINES.build("least_squares")(b), b)[:, 12:].mean().item()
    assert lasso < 0.05 and ls > 0.2


def test_parity_solver() -> None:
    task, b = _batch("sparse_parity", 64, 60, d=10)
    pred = BASELINES.build("parity_solver")(b)
    acc = task.metric(pred, b).mean(0)  # [N]
    assert acc[30:].min().item() == 1.0
    assert acc[:2].mean().item() < 0.9  # not identifiable yet
    _, b1 = _batch("sparse_parity", 64, 5, d=2, k=1)  # hypotheses {x_0}, {x_1}: a tie at i=0 iff they differ
    pred1 = BASELINES.build("parity_solver")(b1)
    assert torch.equal(pred1[:, 0, 0] == 0, b1.xs[:, 0, 0] != b1.xs[:, 0, 1])
    _, b3 = _batch("sparse_parity", 16, 60, d=8, k=3)
    acc3 = task.metric(BASELINES.build("parity_solver")(b3), b3).mean(0)
    assert acc3[40:].min().item() == 1.0


def test_applicable() -> None:
    for name in applicable("sparse_linear_regression") + applicable("sparse_parity"):
        assert name in BASELINES
    assert "lasso" in applicable("sparse_linear_regression") and applicable("sparse_parity")[0] == "parity_solver"
    assert applicable("vector_mqar") == []
    assert "nn_gd" in applicable("relu_2nn_regression")
    assert {"greedy_tree", "gradient_boosting"} <= set(applicable("decision_tree"))
    for task_name in TASKS.names():
        assert all(n in BASELINES for n in applicable(task_name))
    with pytest.raises(UnknownNameError):
        BASELINES.get("ols")


@pytest.mark.parametrize("name", ["nn_gd", "greedy_tree", "gradient_boosting"])
def test_fitted_baselines_causal(name: str) -> None:
    _, b = _batch("decision_tree", 2, 10, d=5)
    pred = BASELINES.build(name)(b)
    assert pred.shape == (2, 10, 1) and bool((pred[:, 0] == 0).all())
    i = 5
    b.ys[:, i:] += 5.0
    b.xs[:, i + 1 :] += 1.0
    assert torch.allclose(pred[:, : i + 1], BASELINES.build(name)(b)[:, : i + 1], atol=1e-6)


def test_nn_gd_beats_zero_on_2nn() -> None:
    task, b = _batch("relu_2nn_regression", 4, 12, d=2)
    err = task.metric(BASELINES.build("nn_gd")(b), b)[:, 8:].mean().item()
    zero = task.metric(BASELINES.build("zero")(b), b)[:, 8:].mean().item()
    assert err < 0.5 * zero, (err, zero)


@pytest.mark.parametrize("name", ["greedy_tree", "gradient_boosting"])
def test_tree_baselines_beat_zero_on_dt(name: str) -> None:
    task, b = _batch("decision_tree", 8, 24, d=2)  # d=2: the tree is a function of x's quadrant
    err = task.metric(BASELINES.build(name)(b), b)[:, 16:].mean().item()
    zero = task.metric(BASELINES.build("zero")(b), b)[:, 16:].mean().item()
    assert err < 0.7 * zero, (err, zero)


@pytest.mark.parametrize("d,k", [(10, 2), (10, 3), (10, 1), (6, 2)])
def test_parity_blind_accuracy_is_the_solver_before_any_example(d: int, k: int) -> None:
    """At i = 0 every subset is consistent, so the solver's vote is the subset-blind majority: its accuracy there
    must match `SparseParity.blind_accuracy` (20k prompts: σ ≈ 0.0035, tolerance 0.015), which exceeds 1/2."""
    task, b = _batch("sparse_parity", 20_000, 1, d=d, seed=1, k=k)
    acc0 = task.metric(BASELINES.build("parity_solver")(b), b).mean().item()
    blind = task.blind_accuracy()
    assert abs(acc0 - blind) < 0.015
    assert blind > 0.52
    if (d, k) == (10, 2):  # the level the non-learning models of notebooks 03/04 sit at
        assert abs(blind - 71 / 128) < 1e-12


# ---- exact reference solvers ----------------------------------------------------------------------------------------


def test_gf2_is_never_wrong_and_exact_after_enough_examples() -> None:
    task, b = _batch("sparse_parity", 128, 40, d=10)
    pred = BASELINES.build("parity_gf2")(b)  # [B, N, 1]
    decided = pred[..., 0] != 0
    assert bool((torch.sign(pred[..., 0]) == b.ys)[decided].all())  # a decided position is always right
    acc = task.metric(pred, b).mean(0)  # [N]; ties count 1/2
    assert acc[0].item() == 0.5  # nothing seen: every query is a coin flip
    assert acc[25:].min().item() == 1.0  # 10 random ±1 vectors span GF(2)^10 long before 25 examples
    # it needs no sparsity: a dense parity over all 10 bits is solved just as well
    dense, bd = _batch("sparse_parity", 64, 40, d=10, k=10)
    assert dense.metric(BASELINES.build("parity_gf2")(bd), bd)[:, 25:].min().item() == 1.0


def test_k_subset_solver_needs_fewer_examples_than_gf2() -> None:
    task, b = _batch("sparse_parity", 256, 20, d=10)
    sparse = task.metric(BASELINES.build("parity_solver")(b), b).mean(0)
    gf2 = task.metric(BASELINES.build("parity_gf2")(b), b).mean(0)
    assert sparse[:10].mean().item() > gf2[:10].mean().item() + 0.2  # knowing k = 2 (45 hypotheses) helps early
    assert sparse[12:].min().item() > 0.99


def test_least_squares_clean_on_many_outliers() -> None:
    task, b = _batch("many_outlier_regression", 32, 80, d=8, p=0.5)  # no truncation: 1_d lies in the span of x
    clean = task.metric(BASELINES.build("least_squares_clean")(b), b)
    plain = task.metric(BASELINES.build("least_squares")(b), b)
    late = b.loss_mask.clone()
    late[:, :50] = False  # by then every prompt has seen >= 8 clean pairs (~25 on average)
    assert clean[late].max().item() < 1e-6
    assert plain[late].mean().item() > 0.05  # the constant outlier pairs (1_d, 1) bias plain least squares


def test_fitted_baselines_leave_global_rng_alone_and_are_deterministic() -> None:
    _, b = _batch("relu_2nn_regression", 2, 6, d=4, hidden_size=8)
    state = torch.get_rng_state()
    p1 = BASELINES.build("nn_gd", steps=5)(b)
    p2 = BASELINES.build("nn_gd", steps=5)(b)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(p1, p2) and not torch.equal(p1, BASELINES.build("nn_gd", steps=5, seed=1)(b))
