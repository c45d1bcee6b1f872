"""The `icl` command: user errors are one line on stderr with exit status 2, and nothing stored is touched."""

import json
import os
import sys
from pathlib import Path

import pytest

from icllib.cli import main, resolve_executor
from icllib.config import RunConfig, TaskConfig, config_hash, to_dict
from icllib.store import RunStore, StoreError


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_hash_prints_the_config_hash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = RunConfig(name="x", task=TaskConfig("linear_regression"))
    path = tmp_path / "c.json"
    path.write_text(json.dumps(to_dict(cfg)))
    assert main(["hash", str(path)]) == 0
    assert capsys.readouterr().out.strip() == config_hash(cfg)


@pytest.mark.parametrize(
    "text, needle",
    [
        ('{"name": "x", "task": {"name": "lr"}', "malformed"),
        ('{"name": "x", "task": {"name": "lr"}, "modle": {}}', "unknown field 'modle'"),
        ('{"name": "x", "task": {"name": "lr"}, "model": {"d_model": 100, "n_heads": 8}}', "model.d_model"),
    ],
)
def test_bad_config_json_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                     needle: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(text)
    assert main(["hash", str(path)]) == 2
    err = _one_line_error(capsys)
    assert err.startswith("icl: error:") and needle in err


def test_unknown_profile_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["figures", "--profile", "huge"])
    assert e.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_unknown_notebook_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["figures", "--profile", "smoke", "--only", "99"]) == 2
    err = _one_line_error(capsys)
    assert "no notebook '99'" in err and "00_tour" in err


def test_runs_lists_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = RunStore(tmp_path)
    store.open(RunConfig(name="first", task=TaskConfig("linear_regression"))).set_status("running", step=5)
    assert main(["runs", "--root", str(tmp_path), "--incomplete"]) == 0
    out = capsys.readouterr().out
    assert "running" in out and "step=5" in out and "first" in out and "1 run(s)" in out


def test_sweep_dry_run_merges_experiments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs shared by several experiments are listed (and trained) once: 03's runs are a subset of 04's."""
    assert main(["sweep", "parity_s4_vs_s6", "parity_training_speed", "--profile", "smoke", "--dry-run",
                 "--root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"23 configs, 15 to train, {15 * 120} run-steps to go"
    assert len(lines) == 16 and len({line.split()[0] for line in lines[:-1]}) == 15


def test_sweep_unknown_experiment_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "tour", "no_such_experiment", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no_such_experiment" in err and len(err.splitlines()) == 1


def _broken_store(root: Path) -> dict[str, str]:
    """A store with one sound run and one of each kind of damage; returns hash -> what `icl runs` should show."""
    store = RunStore(root)
    cfgs = [RunConfig(name=f"r{seed}", task=TaskConfig("linear_regression"), seed=seed) for seed in range(5)]
    runs = [store.open(cfg) for cfg in cfgs]
    for run in runs:
        run.set_status("running", step=3)
        run.write_metrics([{"step": 3, "loss": 1.0}])
    (runs[1].dir / "status.json").write_text('{"state": "runn')  # a status cut short
    (runs[2].dir / "config.json").write_text("{not json")
    (runs[3].dir / "config.json").write_text(json.dumps(to_dict(cfgs[0])))  # another run's config
    (runs[4].dir / "metrics.jsonl").write_text('{"step": 3, "lo')  # a metrics file cut short
    return {runs[0].hash: "running", runs[1].hash: "status.json", runs[2].hash: "config.json",
            runs[3].hash: "hashes to", runs[4].hash: "metrics.jsonl"}


def test_runs_marks_broken_runs_and_lists_the_others(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect = _broken_store(tmp_path)
    for flags in ([], ["--incomplete"]):
        assert main(["runs", "--root", str(tmp_path), *flags]) == 0
        captured = capsys.readouterr()
        lines = captured.out.strip().splitlines()
        assert lines[-1] == "5 run(s), 4 broken" and "Traceback" not in captured.err
        for run_hash, needle in expect.items():
            (line,) = [line for line in lines[:-1] if line.split()[1] == run_hash]
            assert needle in line and ("broken" in line) == (needle != "running"), line


def test_runs_into_a_closed_pipe_is_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`icl runs | head`: the reader goes away; no BrokenPipeError traceback, and stdout is left pointing at
    /dev/null so the interpreter's last flush stays quiet too. (In process: a subprocess pays torch's import.)"""
    RunStore(tmp_path).open(RunConfig(name="x", task=TaskConfig("linear_regression"))).set_status("new")
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to the pipe now fails with EPIPE
    with open(write_end, "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        assert main(["runs", "--root", str(tmp_path)]) == 141
        stdout.write("still buffered\n")
        stdout.flush()  # would raise BrokenPipeError again, were stdout not /dev/null now
    assert capsys.readouterr().err == ""


def test_a_store_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise StoreError(f"{tmp_path}/x: broken\nsecond line")

    monkeypatch.setattr(RunStore, "listing", fail)
    assert main(["runs", "--root", str(tmp_path)]) == 2
    assert _one_line_error(capsys) == f"icl: error: {tmp_path}/x: broken second line"


@pytest.mark.parametrize(
    "executor, concurrency, n_gpus, expect",
    [
        ("auto", None, 0, ("inline", 1)),  # CPU only: one run at a time in this process
        ("auto", None, 1, ("inline", 8)),  # one GPU: 8 runs at once on CUDA streams, the fast way
        ("auto", 3, 1, ("inline", 3)),  # --concurrency given wins
        ("auto", None, 2, ("local", 8)),  # two or more GPUs: one job per GPU, 8 runs each
        ("auto", None, 8, ("local", 8)),
        ("local", None, 0, ("local", 1)),  # CPU jobs
        ("inline", None, 4, ("inline", 8)),
        ("slurm", None, 0, ("slurm", 8)),  # slurm jobs get a GPU each, whatever the submitting host has
    ],
)
def test_sweep_executor_auto_resolution(executor: str, concurrency: int | None, n_gpus: int,
                                        expect: tuple[str, int]) -> None:
    assert resolve_executor(executor, concurrency, n_gpus) == expect


def test_help_shows_defaults_once_and_describes_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default: paper)" in out and "(default: auto)" in out and "(default: 1)" in out
    assert "smoke: CPU-sized, minutes; paper: the reduced profile whose runs are committed; full: the papers' " \
           "sizes, for a cluster" in out
    assert "store root; default: the repository's results/" in out
    assert "default: None" not in out and "default: False" not in out and "(default: results/)" not in out
    assert "--progress, --no-progress" in out and "auto: inline with --concurrency 8 on one GPU" in out


class _Job:
    def __init__(self, job_id: str, hashes: list[str]) -> None:
        self.job_id, self.hashes = job_id, hashes

    def result(self) -> list[str]:
        return self.hashes


def test_sweep_waits_for_jobs_with_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    from icllib.runs.sweep import wait_jobs

    jobs = [_Job("11", ["aaaa", "bbbb"]), _Job("12", [])]
    assert wait_jobs(jobs, {"aaaa": "run-a", "bbbb": "run-b"}, progress=True) == ["aaaa", "bbbb"]
    err = capsys.readouterr().err.splitlines()
    assert err == ["[1/2] job 11 finished: 2 run(s) complete: run-a, run-b", "[2/2] job 12 finished: 0 run(s) complete"]


def test_sweep_passes_the_resolved_executor_and_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from icllib.runs import sweep

    seen: dict[str, object] = {}

    def fake_run(configs: list[RunConfig], executor: str, **kw: object) -> sweep.SweepResult:
        seen.update(executor=executor, concurrency=kw["concurrency"], progress=kw["progress"])
        return sweep.SweepResult(skipped=[], trained=[], jobs=0)

    monkeypatch.setattr(sweep, "run", fake_run)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main(["sweep", "parity_s4_vs_s6", "--profile", "smoke", "--root", str(tmp_path), "--no-progress"]) == 0
    assert seen == {"executor": "inline", "concurrency": 8, "progress": False}
    assert "executor inline, concurrency 8 (1 GPU(s))" in capsys.readouterr().err
    assert main(["sweep", "parity_s4_vs_s6", "--profile", "smoke", "--root", str(tmp_path), "--gpus", "0"]) == 0
    assert seen == {"executor": "inline", "concurrency": 1, "progress": None}
