"""A config that training would reject is rejected before anything is written: no stub run directory."""

from pathlib import Path

import pytest

from icllib.cli import main
from icllib.config import ConfigError, CurriculumConfig, ModelConfig, RunConfig, TaskConfig, TrainConfig, to_dict
from icllib.runs.interleave import train_many
from icllib.store import RunStore, atomic_write_json
from icllib.training.train import train


def _cfg(**task_kwargs) -> RunConfig:
    return RunConfig(name="bad", task=TaskConfig("linear_regression", n_dims=4, kwargs=task_kwargs),
                     model=ModelConfig(layers=("attn",), d_model=16, n_heads=2), train=TrainConfig(steps=4),
                     curriculum=CurriculumConfig(dims_start=4, dims_end=4, points_start=5, points_end=5))


@pytest.mark.parametrize("how", ["train", "train_many"])
def test_a_bad_task_kwarg_writes_no_run_directory(tmp_path: Path, how: str) -> None:
    store = RunStore(tmp_path / "store")
    with pytest.raises(ConfigError, match=r"^task\.kwargs"):
        if how == "train":
            train(_cfg(no_such_option=3), store, device="cpu", progress=False)
        else:
            train_many([_cfg(), _cfg(no_such_option=3)], store, device="cpu")
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("config.json"))


def test_icl_train_of_a_bad_config_is_one_line_and_writes_nothing(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cfg.json"
    atomic_write_json(path, to_dict(_cfg(no_such_option=3)))
    assert main(["train", str(path), "--device", "cpu", "--root", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("icl: error: task.kwargs")
    assert not (tmp_path / "store").exists()
