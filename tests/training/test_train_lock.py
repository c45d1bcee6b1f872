"""Two trainers of one run: the second is refused with one line while the first holds the run, and the first
finishes with exactly the result of an undisturbed run."""

from pathlib import Path

import _toy  # noqa: F401  (registers "toy_regression")
import pytest
import torch

from icllib.config import CurriculumConfig, EvalConfig, ModelConfig, RunConfig, TaskConfig, TrainConfig
from icllib.store import RunStore, StoreError
from icllib.training.train import run_steps, train


def _cfg() -> RunConfig:
    return RunConfig(
        name="toy", task=TaskConfig("toy_regression", n_dims=4),
        model=ModelConfig(layers=("attn",), d_model=16, n_heads=2),
        train=TrainConfig(steps=20, batch_size=16, lr=3e-3, eval_every=10, ckpt_every=5, log_every=5),
        curriculum=CurriculumConfig(dims_start=4, dims_end=4, points_start=9, points_end=9),
        eval=EvalConfig(n_examples=32, batch_size=32),
    )


def test_a_second_trainer_of_a_running_run_is_refused(tmp_path: Path) -> None:
    cfg = _cfg()
    reference = train(cfg, RunStore(tmp_path / "ref"), device="cpu", progress=False)
    store = RunStore(tmp_path / "shared")
    first = run_steps(cfg, store.open(cfg), torch.device("cpu"), progress=False)
    for _ in range(7):  # the first trainer is mid-run (a checkpoint at step 5 is on disk), holding the lock
        next(first)
    with pytest.raises(StoreError, match="being trained"):
        train(cfg, store, device="cpu", progress=False)
    for _ in first:  # ... and finishes undisturbed
        pass
    run = store.get(cfg)
    assert run is not None and run.metrics() == reference.metrics()
    assert run.read_json("eval.json") == reference.read_json("eval.json")
    assert train(cfg, store, device="cpu", progress=False).complete  # the lock was released
