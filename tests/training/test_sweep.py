"""Sweeps: inline and submitit-local (CPU jobs) train what is missing and skip what is stored; the SLURM script
submitit would write asks for what we configured."""

import sys
from pathlib import Path

import _toy  # noqa: F401
import pytest

from icllib import sweep
from icllib.config import ConfigError, CurriculumConfig, EvalConfig, ModelConfig, RunConfig, TaskConfig, TrainConfig
from icllib.store import RunStore

HERE = Path(__file__).parent


def _cfgs(n: int) -> list[RunConfig]:
    return [
        RunConfig(name=f"toy{seed}", task=TaskConfig("toy_regression", n_dims=3),
                  model=ModelConfig(layers=("attn",), d_model=8, n_heads=2),
                  train=TrainConfig(steps=6, batch_size=4, eval_every=3, ckpt_every=3, log_every=3),
                  curriculum=CurriculumConfig(dims_start=3, dims_end=3, points_start=4, points_end=4),
                  eval=EvalConfig(n_examples=8, batch_size=8), seed=seed)
        for seed in range(n)
    ]


def test_inline_trains_missing_runs_once_and_skips_stored_ones(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    cfgs = _cfgs(3)
    first = sweep.run(cfgs[:1], "inline", store=store)
    assert len(first.trained) == 1 and first.skipped == []
    second = sweep.run(cfgs + cfgs, "inline", store=store)  # duplicates run once
    assert len(second.trained) == 2 and len(second.skipped) == 1
    assert all(r is not None and r.complete for r in sweep.results(cfgs, store))


def test_local_executor_runs_cpu_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", f"{HERE}:{':'.join(sys.path)}")
    store = RunStore(tmp_path / "store")
    cfgs = _cfgs(3)
    result = sweep.run(cfgs, "local", store=store, cpu_jobs=2, folder=tmp_path / "jobs", imports=("_toy",))
    assert result.jobs == 2 and len(result.trained) == 3
    assert all(r is not None for r in sweep.results(cfgs, store))
    assert sweep.run(cfgs, "local", store=store, folder=tmp_path / "jobs").trained == []


def test_local_jobs_honour_the_time_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A time limit of 0 s: each job checkpoints its runs after their first step instead of finishing them."""
    monkeypatch.setenv("PYTHONPATH", f"{HERE}:{':'.join(sys.path)}")
    store = RunStore(tmp_path / "store")
    cfgs = _cfgs(2)
    result = sweep.run(cfgs, "local", store=store, cpu_jobs=2, folder=tmp_path / "jobs", imports=("_toy",),
                       time_limit_s=0.0)
    assert result.jobs == 2 and result.trained == []
    assert all(store.open(c).status()["step"] < c.train.steps for c in cfgs)


def test_deal_is_round_robin() -> None:
    cfgs = _cfgs(5)
    slots = sweep.deal(cfgs, 2)
    assert [[c.seed for c in s] for s in slots] == [[0, 2, 4], [1, 3]]
    assert len(sweep.deal(cfgs[:1], 4)) == 1


def test_slurm_submission_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import submitit

    fake = tmp_path / "bin"  # submitit only checks that an `srun` is on PATH; nothing is submitted
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    ex = sweep.slurm_executor(submitit, tmp_path, 90, {"partition": "gpu", "account": "icl"})
    script = ex._make_submission_file_text("python -m submitit.core._submit", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=icl", "#SBATCH --time=90",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=8"):
        assert line in script, line


def test_bad_sweep_requests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="executor: 'ray'"):
        sweep.run(_cfgs(1), "ray", store=RunStore(tmp_path))
    with pytest.raises(sweep.SweepError, match="gpus: 2 requested but 0 visible"):
        sweep.run(_cfgs(1), "local", store=RunStore(tmp_path), gpus=2, folder=tmp_path / "jobs")


def test_inline_with_concurrency_trains_runs_together(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    result = sweep.run(_cfgs(3), "inline", store=store, concurrency=2)
    assert len(result.trained) == 3 and all(store.get(c) is not None for c in _cfgs(3))
    with pytest.raises(ConfigError, match="concurrency: must be >= 1"):
        sweep.run(_cfgs(1), "inline", store=RunStore(tmp_path / "x"), concurrency=0)
