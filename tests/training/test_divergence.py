"""No NaN is ever stored: a diverging run stops with its step, keeps only finite checkpoints, is recorded `failed`,
and is refused (not crashed on) when trained again."""

from pathlib import Path

import _toy  # noqa: F401  (registers "toy_regression")
import pytest
import torch

from icllib.config import CurriculumConfig, EvalConfig, ModelConfig, RunConfig, TaskConfig, TrainConfig
from icllib.runs.interleave import train_many
from icllib.store import RunStore
from icllib.training.train import TrainingDiverged, train


def _cfg(lr: float = 3e-3, steps: int = 40, ckpt_every: int = 5, eval_every: int = 20, log_every: int = 5,
         name: str = "toy", **task_kw) -> RunConfig:
    return RunConfig(
        name=name,
        task=TaskConfig("toy_regression", n_dims=4, kwargs=task_kw),
        model=ModelConfig(layers=("attn",), d_model=16, n_heads=2),
        train=TrainConfig(steps=steps, batch_size=16, lr=lr, eval_every=eval_every, ckpt_every=ckpt_every,
                          log_every=log_every),
        curriculum=CurriculumConfig(dims_start=4, dims_end=4, points_start=9, points_end=9),
        eval=EvalConfig(n_examples=32, batch_size=32),
    )


def _assert_finite_checkpoint(store: RunStore, cfg: RunConfig) -> int | None:
    ckpt = store.open(cfg).load_checkpoint()
    if ckpt is None:
        return None
    tensors = list(ckpt["model"].values())
    tensors += [v for st in ckpt["optimizer"]["state"].values() for v in st.values()
                if isinstance(v, torch.Tensor) and v.is_floating_point()]
    assert all(torch.isfinite(t).all() for t in tensors), "a checkpoint holds non-finite values"
    return ckpt["step"]


def test_huge_lr_never_stores_a_nan_checkpoint(tmp_path: Path) -> None:
    """lr 1000 with a checkpoint every 5 steps: the loss is finite when computed but the update makes the
    parameters NaN; the store must keep only a finite checkpoint (or none) and record the step."""
    cfg = _cfg(lr=1000.0)
    store = RunStore(tmp_path)
    with pytest.raises(TrainingDiverged, match=r"non-finite .* at step \d+") as err:
        train(cfg, store, device="cpu", progress=False)
    status = store.open(cfg).status()
    assert status["state"] == "failed" and isinstance(status["step"], int)
    kept = _assert_finite_checkpoint(store, cfg)
    if kept is None:
        assert "no checkpoint was written" in str(err.value)
    else:
        assert f"checkpoint (step {kept}) is kept" in str(err.value) and kept < status["step"]


def test_nan_eval_on_a_checkpoint_step_is_a_divergence_not_a_stuck_run(tmp_path: Path) -> None:
    """Eval and checkpoint on the same step with a NaN eval: `failed` with the step, no NaN checkpoint, and the
    metrics file stays readable JSON; training it again is refused with the recorded error."""
    cfg = _cfg(steps=20, ckpt_every=10, eval_every=10, log_every=10, nan_eval=True)
    store = RunStore(tmp_path)
    with pytest.raises(TrainingDiverged, match="non-finite evaluation at step 10; no checkpoint was written"):
        train(cfg, store, device="cpu", progress=False)
    run = store.open(cfg)
    assert run.status()["state"] == "failed" and run.status()["step"] == 10
    assert run.load_checkpoint() is None
    assert run.metrics() == []
    with pytest.raises(TrainingDiverged, match="failed at step 10 .*non-finite evaluation"):
        train(cfg, store, device="cpu", progress=False)


def test_time_limited_stop_checks_the_losses_before_saving(tmp_path: Path) -> None:
    """`stop_after` between log points saves a checkpoint: a NaN loss since the last log point is caught first."""
    cfg = _cfg(steps=40, ckpt_every=20, eval_every=20, log_every=20, nan_after=3)
    store = RunStore(tmp_path)
    with pytest.raises(TrainingDiverged, match="non-finite loss at step 4; no checkpoint was written"):
        train(cfg, store, device="cpu", progress=False, stop_after=7)
    assert store.open(cfg).load_checkpoint() is None


def test_train_many_records_a_diverged_run_and_finishes_the_others(tmp_path: Path) -> None:
    good, bad = _cfg(steps=10, name="good"), _cfg(lr=1000.0, steps=40, name="bad")
    store = RunStore(tmp_path)
    runs = train_many([bad, good], store, device="cpu", concurrency=2, read_ahead=False)
    assert runs[1].complete
    assert store.open(bad).status()["state"] == "failed"
    _assert_finite_checkpoint(store, bad)
