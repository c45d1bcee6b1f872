"""CoT-I/O, vector MQAR, selective copying, induction heads: shapes, sampling, targets, losses, a model end to end."""

from __future__ import annotations

import pytest
import torch

from icllib.batch import Batch
from icllib.config import TaskConfig
from icllib.models import build_model, presets
from icllib.tasks import TASKS, build_task
from icllib.tasks.base import Task
from icllib.tasks.cot import CoTIO
from icllib.tasks.mqar import VectorMQAR
from icllib.tasks.synthetic import InductionHeads, SelectiveCopying


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# (task, n_points) small enough for CPU
CASES = {
    "cot_io": (CoTIO(n_dims=6, hidden=4), 7),
    "vector_mqar": (VectorMQAR(n_dims=8, n_queries=3), 5),
    "selective_copying": (SelectiveCopying(n_dims=0, n_tokens=6, n_memorize=4), 12),
    "induction_heads": (InductionHeads(n_dims=0, n_tokens=6), 10),
}


def perfect_pred(task: Task, b: Batch) -> torch.Tensor:
    """A prediction that is exactly right wherever it counts."""
    if isinstance(task, CoTIO):
        return torch.cat((b.extras["s"], b.ys.unsqueeze(-1)), dim=-1)
    if isinstance(task, VectorMQAR):
        return b.ys.clone()
    return torch.nn.functional.one_hot(b.ys, task.io().d_out).float() * 50.0


def test_registered_and_buildable() -> None:
    for name in CASES:
        assert name in TASKS
    task = build_task(TaskConfig("vector_mqar", n_dims=20, kwargs={"n_queries": 4}))
    assert task.n_queries == 4 and task.metric_name == "accuracy" and task.higher_is_better
    assert build_task(TaskConfig("cot_io", n_dims=10)).io().d_mid == 4


@pytest.mark.parametrize("name", list(CASES))
def test_deterministic_and_global_rng_untouched(name: str) -> None:
    task, n = CASES[name]
    state = torch.get_rng_state()
    a, b = task.sample(3, n, generator=gen(1)), task.sample(3, n, generator=gen(1))
    c = task.sample(3, n, generator=gen(2))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.xs, b.xs) and torch.equal(a.ys, b.ys) and torch.equal(a.loss_mask, b.loss_mask)
    assert all(torch.equal(a.extras[k], b.extras[k]) for k in a.extras)
    assert not torch.equal(a.xs, c.xs)


@pytest.mark.parametrize("name", list(CASES))
def test_perfect_predictor(name: str) -> None:
    task, n = CASES[name]
    b = task.sample(4, n, generator=gen())
    pred = perfect_pred(task, b)
    assert task.loss(pred, b).item() == pytest.approx(0.0, abs=1e-6)
    m = task.metric(pred, b)
    assert m.shape == b.loss_mask.shape
    if task.higher_is_better:
        assert torch.all(m[b.loss_mask] == 1)
    else:
        assert torch.all(m[b.loss_mask] == 0)


def test_cot_shapes_and_values() -> None:
    task = CoTIO(n_dims=6, hidden=3)
    b = task.sample(5, 7, n_dims_active=4, generator=gen())
    assert b.xs.shape == (5, 7, 6) and b.extras["s"].shape == (5, 7, 3) and b.ys.shape == (5, 7)
    assert b.xs.dtype == b.ys.dtype == torch.float32 and b.loss_mask.all()
    assert torch.all(b.xs[..., 4:] == 0)
    W, v = b.extras["W"], b.extras["v"]  # [B, d, k], [B, k]
    s = (2 / 3) ** 0.5 * torch.relu(torch.einsum("bnd,bdk->bnk", b.xs, W))
    torch.testing.assert_close(b.extras["s"], s)
    torch.testing.assert_close(b.ys, torch.einsum("bnk,bk->bn", s, v))
    io = task.io()
    assert (io.format, io.d_in, io.d_out, io.d_mid) == ("triples", 6, 1, 3)
    # metric normalisation: E[y²] = d_active, so the zero predictor scores about 1
    big = task.sample(2000, 10, n_dims_active=4, generator=gen(3))
    zero = torch.zeros(*big.ys.shape, 4)
    assert task.metric(zero, big).mean().item() == pytest.approx(1.0, abs=0.15)


def test_mqar_structure() -> None:
    task = VectorMQAR(n_dims=8, n_queries=3)
    K, d = 5, 8
    b = task.sample(6, K, generator=gen())
    T = 2 * K + 3
    assert b.xs.shape == b.ys.shape == (6, T, d) and b.loss_mask.shape == (6, T)
    keys, values, idx = b.extras["keys"], b.extras["values"], b.extras["query_index"]
    torch.testing.assert_close(keys.norm(dim=-1), torch.full((6, K), d**0.5))
    torch.testing.assert_close(values.norm(dim=-1), torch.full((6, K), d**0.5))
    assert torch.equal(b.xs[:, 0:2 * K:2], keys) and torch.equal(b.xs[:, 1:2 * K:2], values)
    assert torch.equal(b.loss_mask[:, 2 * K:], torch.ones(6, 3, dtype=torch.bool)) and not b.loss_mask[:, :2 * K].any()
    assert torch.all(b.ys[:, :2 * K] == 0)
    for i in range(6):
        assert len(set(idx[i].tolist())) == 3  # distinct keys
        for j in range(3):
            assert torch.equal(b.xs[i, 2 * K + j], keys[i, idx[i, j]])
            assert torch.equal(b.ys[i, 2 * K + j], values[i, idx[i, j]])
    # a predictor that returns a wrong value scores 0
    wrong = b.ys.clone()
    wrong[:, 2 * K:] = values.gather(1, ((idx + 1) % K).unsqueeze(-1).expand(-1, -1, d))
    assert task.metric(wrong, b)[b.loss_mask].sum() == 0
    with pytest.raises(ValueError):
        task.sample(2, 2, generator=gen())  # Q = 3 > K = 2


def test_selective_copying_targets() -> None:
    task = SelectiveCopying(n_dims=0, n_tokens=6, n_memorize=4)
    b = task.sample(8, 12, generator=gen())
    assert b.xs.shape == b.ys.shape == (8, 16) and b.xs.dtype == b.ys.dtype == torch.int64
    noise, marker = 6, 7
    assert torch.all(b.xs[:, 12:] == marker) and torch.all(b.loss_mask[:, 12:]) and not b.loss_mask[:, :12].any()
    for i in range(8):
        data = b.xs[i, :12][b.xs[i, :12] != noise]  # data tokens in order of position
        pos = b.extras["data_positions"][i]
        assert torch.equal(b.xs[i, pos], b.ys[i, 12:])
        assert torch.all(b.xs[i, pos] < noise) and (b.xs[i, :12] != noise).sum() == 4
        assert torch.equal(data, b.ys[i, 12:])
    assert task.io().d_in == task.io().d_out == 8
    assert task.sample(2, 40, generator=gen()).xs.shape == (2, 44)  # other lengths work


def test_induction_heads_targets() -> None:
    task = InductionHeads(n_dims=0, n_tokens=6)
    b = task.sample(16, 10, generator=gen())
    assert b.xs.shape == b.ys.shape == (16, 10) and b.xs.dtype == torch.int64
    trigger = 6
    assert torch.all(b.xs[:, -1] == trigger) and torch.all((b.xs == trigger).sum(1) == 2)
    assert torch.equal(b.loss_mask, torch.arange(10).expand(16, 10) == 9)
    for i in range(16):
        p = int((b.xs[i] == trigger).nonzero()[0])
        assert p == int(b.extras["trigger_position"][i]) and p <= 7
        assert b.ys[i, -1] == b.xs[i, p + 1] and b.ys[i, -1] < trigger
    assert task.io().d_in == task.io().d_out == 7
    assert task.sample(2, 33, generator=gen()).xs.shape == (2, 33)


@pytest.mark.parametrize("name", list(CASES))
def test_mamba_end_to_end(name: str) -> None:
    task, n = CASES[name]
    model = build_model(presets.mamba(scale="smoke"), task.io(), seed=0)
    b = task.sample(2, n, generator=gen())
    pred = model(b)
    loss = task.loss(pred, b)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert task.metric(pred.detach(), b).shape == b.loss_mask.shape
    out = task.predict(model, b)
    assert out.shape == pred.shape and torch.isfinite(out).all()
    if isinstance(task, CoTIO):
        assert not torch.allclose(out[..., -1], pred[..., -1])  # ŷ was read with ŝ in the prompt


def test_mqar_code_semantics() -> None:
    task = VectorMQAR(n_dims=8, code_semantics=True)
    K = 3  # a fresh query with probability 1/(K+1)
    b = task.sample(400, K, generator=gen())
    q, keys, values, idx = b.xs[:, -1], b.extras["keys"], b.extras["values"], b.extras["query_index"][:, 0]
    copied = (q.unsqueeze(1) == keys).all(-1).any(-1)  # [B]
    assert 0.15 < 1 - copied.float().mean().item() < 0.35  # ~1/4 fresh queries
    nearest = torch.einsum("bd,bkd->bk", q, keys).argmax(-1)
    assert torch.equal(idx, nearest) and torch.equal(b.ys[:, -1], values[torch.arange(400), idx])
    with pytest.raises(ValueError, match="n_queries"):
        VectorMQAR(n_dims=8, n_queries=2, code_semantics=True)


def test_cot_diagnostics_separate_the_two_steps() -> None:
    """A predictor with the true s but ŷ = 0 scores (0, ≈1); one with ŝ = 0 but the true y scores (≈1, 0)."""
    task = CoTIO(n_dims=6, hidden=3)
    b = task.sample(3000, 8, generator=gen(5))
    s, y = b.extras["s"], b.ys.unsqueeze(-1)

    def knows_s(batch):
        return torch.cat([s, torch.zeros_like(y)], dim=-1)

    def knows_y(batch):
        return torch.cat([torch.zeros_like(s), y], dim=-1)

    d1, d2 = task.diagnostics(knows_s, b), task.diagnostics(knows_y, b)
    assert d1["s_error"].abs().max().item() == 0 and d2["y_error_given_s"].abs().max().item() == 0
    assert d1["y_error_given_s"].mean().item() == pytest.approx(1.0, abs=0.1)  # E[y²] = d
    assert d2["s_error"].mean().item() == pytest.approx(1.0, abs=0.1)  # E‖s‖² = d
    assert CoTIO.__mro__[1].diagnostics(task, knows_s, b) == {}  # the base class reports nothing
