"""A model's weights round-trip exactly through the run store's checkpoint file."""

from pathlib import Path

import torch

from icllib.config import RunConfig, TaskConfig
from icllib.models import build_model, presets
from icllib.store import RunStore
from icllib.tasks import build_task


def test_model_weights_round_trip_through_the_store(tmp_path: Path) -> None:
    task = build_task(TaskConfig("linear_regression", n_dims=5))
    model = build_model(presets.mambaformer("smoke"), task.io(), seed=3)
    run = RunStore(tmp_path).open(RunConfig(name="rt", task=TaskConfig("linear_regression", n_dims=5)))
    run.save_checkpoint({"model": model.state_dict()})
    other = build_model(presets.mambaformer("smoke"), task.io(), seed=4)
    other.load_state_dict(run.load_checkpoint()["model"])
    batch = task.sample(4, 7, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(batch), other(batch))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values(),
                                                  strict=True))
