"""Sweeps: inline and submitit-local (CPU jobs) train what is missing and skip what is stored; local jobs are dealt
round-robin over the GPUs and each job sees its own GPU by physical id (GPUs faked on CPU); the SLURM script submitit
would write asks for what we configured."""

import sys
from pathlib import Path

import _toy  # noqa: F401
import pytest
import torch

from icllib.config import ConfigError, CurriculumConfig, EvalConfig, ModelConfig, RunConfig, TaskConfig, TrainConfig
from icllib.runs import sweep
from icllib.store import RunStore

HERE = Path(__file__).parents[1]  # tests/, where _toy.py lives


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


def test_local_slots_deal_configs_round_robin_over_the_gpus() -> None:
    cfgs = _cfgs(7)
    slots = sweep.local_slots(cfgs, n_gpus=2, jobs_per_gpu=2, cpu_jobs=1)
    assert [gpu for _, gpu in slots] == [0, 1, 0, 1]
    assert [[c.seed for c in s] for s, _ in slots] == [[0, 4], [1, 5], [2, 6], [3]]  # each config exactly once
    assert [gpu for _, gpu in sweep.local_slots(cfgs[:3], 2, 2, 1)] == [0, 1, 0]  # fewer configs than slots
    assert sweep.local_slots(cfgs, 0, 2, 3) == [(s, None) for s in sweep.deal(cfgs, 3)]  # no GPU: `cpu_jobs` slots


def test_physical_gpus_follow_the_parents_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert sweep.physical_gpus(2) == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert sweep.physical_gpus(2) == ["2", "5"] and sweep.physical_gpus(1) == ["2"]
    assert sweep.physical_gpus(1, "GPU-8f3a,GPU-77c1") == ["GPU-8f3a"]
    with pytest.raises(sweep.SweepError, match="names 1 GPU"):
        sweep.physical_gpus(2, "3")


def test_each_local_job_sees_its_own_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         request: pytest.FixtureRequest) -> None:
    """Real LocalExecutor jobs on a faked two-GPU parent, whose body reports the CUDA_VISIBLE_DEVICES it saw: job i
    gets GPU i % 2, by physical id under the parent's CUDA_VISIBLE_DEVICES (integer ids through submitit's
    `visible_gpus`, UUIDs set by the job itself). All jobs are submitted first and then awaited, so they run at once;
    icllib.runs.sweep is pickled by value, so that the jobs (which only read their environment) need not import
    torch."""
    import cloudpickle
    import submitit

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cloudpickle.register_pickle_by_value(sweep)
    request.addfinalizer(lambda: cloudpickle.unregister_pickle_by_value(sweep))
    cases = {None: (4, 2, ["0", "1", "0", "1"]), "3,7": (2, 1, ["3", "7"]),
             "GPU-8f3a,MIG-77c1": (2, 1, ["GPU-8f3a", "MIG-77c1"])}  # parent's CUDA_VISIBLE_DEVICES: configs, jobs/GPU
    jobs = {}
    for visible, (n, per_gpu, _) in cases.items():
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        jobs[visible] = sweep._submit_local(submitit, _cfgs(n), RunStore(tmp_path / "store"), tmp_path / "jobs",
                                            per_gpu, None, 1, 1, (), 1, None, body=sweep.probe_slot)
    for visible, (_, _, expected) in cases.items():
        assert [job.result()[0] for job in jobs[visible]] == expected, visible


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
