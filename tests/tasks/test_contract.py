"""Every registered family against the Task contract: shapes and dtypes per IO format, determinism, RNG hygiene,
a perfect predictor, E[y²] against the family's definition, and bad input raising one-line errors naming the field."""

import pytest
import torch

from icllib.analysis.baselines import BASELINES
from icllib.batch import Batch
from icllib.config import ConfigError, TaskConfig
from icllib.registry import UnknownNameError
from icllib.tasks import TASKS, Task, build_task

FAMILIES = {  # name -> (TaskConfig, n_points, n_dims_active used in the generic tests)
    "linear_regression": (TaskConfig("linear_regression", n_dims=8), 9, 5),
    "sparse_linear_regression": (TaskConfig("sparse_linear_regression", n_dims=8), 9, 5),
    "relu_2nn_regression": (TaskConfig("relu_2nn_regression", n_dims=8, kwargs={"hidden_size": 16}), 9, 5),
    "decision_tree": (TaskConfig("decision_tree", n_dims=8), 9, 5),
    "skewed_linear_regression": (TaskConfig("skewed_linear_regression", n_dims=8), 9, 5),
    "noisy_linear_regression": (TaskConfig("noisy_linear_regression", n_dims=8), 9, 5),
    "quadrant_linear_regression": (TaskConfig("quadrant_linear_regression", n_dims=8), 9, 5),
    "ood_linear_regression": (TaskConfig("ood_linear_regression", n_dims=8,
                                         kwargs={"strategy": "overlapping_train_test"}), 9, 5),
    "orthogonal_outlier_regression": (TaskConfig("orthogonal_outlier_regression", n_dims=8), 9, 5),
    "many_outlier_regression": (TaskConfig("many_outlier_regression", n_dims=8), 9, 5),
    "sparse_parity": (TaskConfig("sparse_parity", n_dims=10), 9, None),
    "cot_io": (TaskConfig("cot_io", n_dims=6), 9, 4),
    "vector_mqar": (TaskConfig("vector_mqar", n_dims=8, kwargs={"n_queries": 2}), 4, None),
    "selective_copying": (TaskConfig("selective_copying", n_dims=1, kwargs={"n_memorize": 3}), 9, None),
    "induction_heads": (TaskConfig("induction_heads", n_dims=1), 9, None),
}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def perfect(task: Task, b: Batch) -> torch.Tensor:
    """A teacher-forced prediction that is right wherever the loss counts."""
    fmt = task.io().format
    if fmt == "tokens":
        return torch.nn.functional.one_hot(b.ys, task.io().d_out).float() * 50.0
    if fmt == "sequence":
        return b.ys.clone()
    if fmt == "triples":
        return torch.cat((b.extras["s"], b.ys.unsqueeze(-1)), dim=-1)
    scale = 20.0 if task.higher_is_better else 1.0  # parity: a confident logit
    return (scale * b.ys).unsqueeze(-1)


def oracle(task: Task, b: Batch):
    """A Predictor that returns the truth of whatever prompt it is given (used through task.predict)."""
    def predict(prompt: Batch) -> torch.Tensor:
        if "ys_query" in prompt.extras:  # quadrant re-queries: the last position holds the unrestricted query
            return prompt.ys.unsqueeze(-1)
        return perfect(task, prompt)
    return predict


def test_every_family_is_registered() -> None:
    ours = {n for n in TASKS.names() if TASKS.get(n).__module__.startswith("icllib.")}  # not tests' toy tasks
    assert set(FAMILIES) == ours
    with pytest.raises(UnknownNameError, match="linear_regression"):
        build_task(TaskConfig("linear_regresion"))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_shapes_dtypes_determinism_rng(name: str) -> None:
    cfg, n, active = FAMILIES[name]
    task = build_task(cfg)
    io = task.io()
    state = torch.get_rng_state()
    b1 = task.sample(4, n, active, generator=gen(0))
    b2 = task.sample(4, n, active, generator=gen(0))
    b3 = task.sample(4, n, active, generator=gen(1))
    assert torch.equal(torch.get_rng_state(), state), "sampling touched the global RNG"
    for k in ("xs", "ys", "loss_mask"):
        assert torch.equal(getattr(b1, k), getattr(b2, k)), k
    assert b1.extras.keys() == b2.extras.keys() and all(torch.equal(b1.extras[k], b2.extras[k]) for k in b1.extras)
    assert not torch.equal(b1.xs, b3.xs) or not torch.equal(b1.ys, b3.ys)
    assert b1.loss_mask.dtype == torch.bool and b1.loss_mask.shape[0] == 4 and b1.loss_mask.any()
    T = b1.loss_mask.shape[1]
    if io.format == "tokens":
        assert b1.xs.shape == b1.ys.shape == (4, T) and b1.xs.dtype == b1.ys.dtype == torch.int64
        assert int(b1.xs.max()) < io.d_in
    elif io.format == "sequence":
        assert b1.xs.shape == (4, T, io.d_in) and b1.ys.shape == (4, T, io.d_out) and b1.xs.dtype == torch.float32
    else:  # pairs / triples: one prediction per example
        assert T == n and b1.xs.shape == (4, n, io.d_in) and b1.ys.shape == (4, n) and b1.xs.dtype == torch.float32
        if io.format == "triples":
            assert b1.extras["s"].shape == (4, n, io.d_mid)
        if active is not None and "many_outlier" not in name and "orthogonal" not in name:
            assert bool((b1.xs[..., active:] == 0).all()), "coordinates beyond the active dims must be zero"


@pytest.mark.parametrize("name", list(FAMILIES))
def test_perfect_predictor(name: str) -> None:
    cfg, n, active = FAMILIES[name]
    task = build_task(cfg)
    b = task.sample(4, n, active, generator=gen(0))
    assert task.loss(perfect(task, b), b).item() == pytest.approx(0.0, abs=1e-5)
    m = task.metric(task.predict(oracle(task, b), b), b)
    assert m.shape == b.loss_mask.shape
    expected = 1.0 if task.higher_is_better else 0.0
    assert m[b.loss_mask].sub(expected).abs().max().item() < 1e-5


# E[y²] of each family's targets (scored positions), from its definition; d = 20, active dims 8 unless noted.
# LR-type: E[(wᵀx)²] = E‖x‖² = active; sparse: k = 3; 2NN: (2/h)·h·E[ReLU(z)²], z ~ N(0, ‖x‖²), = active;
# tree: leaves ~ N(0, 1); noisy: active + σ²; skewed (no truncation): E‖x‖² = d; parity: 1; CoT: active;
# MQAR: ‖v‖² = d at the queries (mean over coordinates: 1).
SECOND_MOMENTS = {
    "linear_regression": (8, 8.0),
    "sparse_linear_regression": (8, 3.0),
    "relu_2nn_regression": (8, 8.0),
    "decision_tree": (8, 1.0),
    "noisy_linear_regression": (8, 9.0),
    "skewed_linear_regression": (None, 20.0),
    "quadrant_linear_regression": (8, 8.0),
    "orthogonal_outlier_regression": (8, 8.0),
    "many_outlier_regression": (8, 8.0),
    "sparse_parity": (None, 1.0),
    "cot_io": (8, 8.0),
    "vector_mqar": (None, 1.0),
}


@pytest.mark.parametrize("name", list(SECOND_MOMENTS))
def test_second_moment_of_targets(name: str) -> None:
    active, expected = SECOND_MOMENTS[name]
    d = 10 if name == "sparse_parity" else 20
    task = build_task(TaskConfig(name, n_dims=d))
    b = task.sample(2048, 8 if name == "vector_mqar" else 16, active, generator=gen(3))
    y2 = b.ys.pow(2) if b.ys.dim() == 2 else b.ys.pow(2).mean(-1)  # [B, T]
    got = y2[b.loss_mask].mean().item()
    assert got == pytest.approx(expected, rel=0.08), (name, got, expected)


def test_quadrant_orthant_and_requery() -> None:
    task = build_task(TaskConfig("quadrant_linear_regression", n_dims=6))
    b = task.sample(64, 14, 5, generator=gen(0))
    s, xq = b.extras["pattern"], b.extras["xs_query"]
    assert bool((b.xs * s.unsqueeze(1) >= 0).all()) and torch.equal(b.xs.abs(), xq.abs())
    assert torch.allclose(b.extras["ys_query"], (xq @ b.extras["w"].unsqueeze(-1)).squeeze(-1), atol=1e-5)
    lengths = []

    def spy(prompt: Batch) -> torch.Tensor:  # sees only in-orthant pairs before the query
        i = prompt.xs.shape[1] - 1
        lengths.append(i + 1)
        assert torch.equal(prompt.xs[:, :i], b.xs[:, :i]) and torch.equal(prompt.xs[:, i], xq[:, i])
        return torch.zeros(*prompt.xs.shape[:2], 1)

    assert task.predict(spy, b).shape == (64, 14, 1) and lengths == list(range(1, 15))
    # least squares recovers w from 5 in-orthant points (active dims 5) and extrapolates to the other orthants
    err = task.metric(task.predict(BASELINES.build("least_squares"), b), b).mean(0)
    assert err[6:].max().item() < 1e-6 and err[0].item() > 0.1


@pytest.mark.parametrize("name", list(FAMILIES))
def test_bad_sample_arguments(name: str) -> None:
    cfg, n, active = FAMILIES[name]
    task = build_task(cfg)
    for kwargs, field in [({"batch_size": 0}, "batch_size"), ({"n_points": 0}, "n_points")]:
        args = {"batch_size": 2, "n_points": n, **kwargs}
        with pytest.raises(ConfigError, match=field) as e:
            task.sample(args["batch_size"], args["n_points"], active, generator=gen())
        assert "\n" not in str(e.value)
    if active is not None:
        with pytest.raises(ConfigError, match="n_dims_active"):
            task.sample(2, n, task.n_dims + 1, generator=gen())


@pytest.mark.parametrize("name,kwargs,field", [
    ("cot_io", {"hidden": 0}, "hidden"),
    ("vector_mqar", {"n_queries": 0}, "n_queries"),
    ("selective_copying", {"n_memorize": 0}, "n_memorize"),
    ("induction_heads", {"n_tokens": 0}, "n_tokens"),
    ("orthogonal_outlier_regression", {"p": 1.0}, "p"),
    ("linear_regression", {"sparsity": 3}, "sparsity"),
])
def test_bad_kwargs_name_the_field(name: str, kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field) as e:
        build_task(TaskConfig(name, n_dims=8, kwargs=kwargs))
    assert "\n" not in str(e.value)


def test_token_lengths_can_differ_between_train_and_test() -> None:
    for cfg, short, long in [(FAMILIES["selective_copying"][0], 9, 200), (FAMILIES["induction_heads"][0], 9, 300)]:
        task = build_task(cfg)
        assert task.sample(2, long, generator=gen()).xs.shape[1] > task.sample(2, short, generator=gen()).xs.shape[1]
