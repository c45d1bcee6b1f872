"""`icl export` / `icl import`: runs move between stores as bounded files; incomplete runs carry their checkpoint
and resume exactly; complete runs are never replaced."""

import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "training"))
import _toy  # noqa: E402, F401  (registers "toy_regression")

from icllib.cli import main  # noqa: E402
from icllib.config import CurriculumConfig, EvalConfig, ModelConfig, RunConfig, TaskConfig, TrainConfig  # noqa: E402
from icllib.store import RunStore, StoreError  # noqa: E402
from icllib.train import train  # noqa: E402
from icllib.transfer import export_runs, import_runs  # noqa: E402


def _cfg(seed: int, steps: int = 30) -> RunConfig:
    return RunConfig(name=f"toy{seed}", profile="paper", seed=seed, task=TaskConfig("toy_regression", n_dims=4),
                     model=ModelConfig(layers=("mamba",), d_model=16),
                     train=TrainConfig(steps=steps, batch_size=8, lr=3e-3, eval_every=10, ckpt_every=10, log_every=5),
                     curriculum=CurriculumConfig(dims_start=4, dims_end=4, points_start=6, points_end=6),
                     eval=EvalConfig(n_examples=16, batch_size=16))


def test_a_stopped_run_resumes_exactly_after_a_round_trip(tmp_path: Path) -> None:
    gpu = RunStore(tmp_path / "gpu")
    done = train(_cfg(0), gpu, device="cpu", progress=False)
    stopped = train(_cfg(1), gpu, device="cpu", progress=False, stop_after=13)
    files = export_runs(gpu, "paper", tmp_path / "out", checkpoints=True, part_mib=0.05)
    assert [f.name for f in files][:3] == ["records.tgz", "checkpoints.tar.00", "checkpoints.tar.01"]  # split

    laptop = RunStore(tmp_path / "laptop")
    report = import_runs(tmp_path / "out", laptop)
    assert sorted(report.added) == sorted([done.hash, stopped.hash]) and not report.updated
    here = laptop.get(_cfg(0))
    assert here is not None and not (here.dir / "ckpt.pt").exists()  # complete runs travel without checkpoints
    assert here.read_json("eval.json") == done.read_json("eval.json")

    resumed = train(_cfg(1), laptop, device="cpu", progress=False)
    whole = train(_cfg(1), RunStore(tmp_path / "whole"), device="cpu", progress=False)
    assert resumed.complete and resumed.metrics() == whole.metrics()
    assert resumed.read_json("eval.json") == whole.read_json("eval.json")

    again = import_runs(tmp_path / "out", laptop)  # the stored complete runs are kept
    assert sorted(again.skipped) == sorted([done.hash, stopped.hash]) and not again.added


def test_complete_only_leaves_partial_runs_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gpu = RunStore(tmp_path / "gpu")
    done = train(_cfg(0), gpu, device="cpu", progress=False)
    stopped = train(_cfg(1), gpu, device="cpu", progress=False, stop_after=13)
    export_runs(gpu, "paper", tmp_path / "out", checkpoints=True)
    laptop = RunStore(tmp_path / "laptop")
    assert main(["import", str(tmp_path / "out"), "--root", str(tmp_path / "laptop"), "--complete-only"]) == 0
    out = capsys.readouterr().out
    assert "1 added" in out and "1 incomplete left out" in out
    assert laptop.get(_cfg(0)) is not None and not laptop.path(_cfg(1)).exists()
    report = import_runs(tmp_path / "out", laptop)  # without the flag the partial run comes in, resumable
    assert report.added == [stopped.hash] and report.skipped == [done.hash]
    assert (laptop.path(_cfg(1)) / "ckpt.pt").exists()


def test_a_further_incomplete_state_updates_an_earlier_one(tmp_path: Path) -> None:
    gpu, laptop = RunStore(tmp_path / "gpu"), RunStore(tmp_path / "laptop")
    train(_cfg(2), laptop, device="cpu", progress=False, stop_after=5)
    train(_cfg(2), gpu, device="cpu", progress=False, stop_after=17)
    export_runs(gpu, "paper", tmp_path / "out", checkpoints=True)
    report = import_runs(tmp_path / "out", laptop)
    assert len(report.updated) == 1 and laptop.open(_cfg(2)).status()["step"] == 17
    assert not [p for p in (tmp_path / "laptop" / "paper").iterdir() if p.name.startswith(".")]  # no temporaries


def test_a_stored_state_without_its_checkpoint_takes_an_incoming_one(tmp_path: Path) -> None:
    """A store holding a run's records but not its ckpt.pt (git copies of results/ leave the ignored checkpoint behind)
    cannot resume it; an incoming checkpoint, even one at an earlier step, must replace it rather than be skipped."""
    gpu, laptop = RunStore(tmp_path / "gpu"), RunStore(tmp_path / "laptop")
    far = train(_cfg(3), laptop, device="cpu", progress=False, stop_after=17)
    (far.dir / "ckpt.pt").unlink()
    train(_cfg(3), gpu, device="cpu", progress=False, stop_after=13)
    export_runs(gpu, "paper", tmp_path / "out", checkpoints=True)
    report = import_runs(tmp_path / "out", laptop)
    assert report.updated == [far.hash] and not report.skipped
    here = laptop.open(_cfg(3))
    assert here.status()["step"] == 13 and (here.dir / "ckpt.pt").exists()


def test_a_missing_last_part_loses_only_the_runs_it_held(tmp_path: Path) -> None:
    gpu = RunStore(tmp_path / "gpu")
    stopped = [train(_cfg(seed), gpu, device="cpu", progress=False, stop_after=13) for seed in (4, 5, 6)]
    files = export_runs(gpu, "paper", tmp_path / "out", checkpoints=True, part_mib=0.05)
    parts = [f for f in files if f.name.startswith("checkpoints.tar.")]
    assert len(parts) >= 3
    parts[-1].unlink()  # the file limit of a device call left the last part behind

    laptop = RunStore(tmp_path / "laptop")
    report = import_runs(tmp_path / "out", laptop)
    assert report.lost and report.added  # some runs arrived whole, at least the last did not
    assert sorted(report.lost + report.added) == sorted(r.hash for r in stopped)
    for run in stopped:
        here = tmp_path / "laptop" / "paper" / run.hash
        assert here.exists() == (run.hash in report.added)
        if here.exists():  # what arrived is a whole checkpoint that resumes at the stored step
            assert (here / "ckpt.pt").read_bytes() == (run.dir / "ckpt.pt").read_bytes()


def test_export_under_a_size_cap_keeps_the_runs_furthest_along(tmp_path: Path) -> None:
    gpu = RunStore(tmp_path / "gpu")
    near = train(_cfg(7), gpu, device="cpu", progress=False, stop_after=23)
    far = [train(_cfg(seed), gpu, device="cpu", progress=False, stop_after=7) for seed in (8, 9)]
    ckpt_mib = (near.dir / "ckpt.pt").stat().st_size / 2**20
    records_mib = export_runs(gpu, "paper", tmp_path / "rec")[0].stat().st_size / 2**20
    cap = records_mib + 1.5 * ckpt_mib  # room for one checkpoint (and the tar's overhead), not two
    files = export_runs(gpu, "paper", tmp_path / "out", checkpoints=True, part_mib=0.01, max_mib=cap)
    assert sum(f.stat().st_size for f in files) <= cap * 2**20
    report = import_runs(tmp_path / "out", RunStore(tmp_path / "laptop"))
    assert report.added == [near.hash] and sorted(report.lost) == sorted(r.hash for r in far)
    with pytest.raises(StoreError, match="max_mib"):
        export_runs(gpu, "paper", tmp_path / "o2", checkpoints=True, max_mib=0)


def test_checkpoints_travel_gzipped_and_old_plain_parts_still_import(tmp_path: Path) -> None:
    """Parts hold each checkpoint gzipped (smaller than the file, restored byte for byte); parts written before that
    change, with plain ckpt.pt members, import as before."""
    gpu = RunStore(tmp_path / "gpu")
    stopped = train(_cfg(10), gpu, device="cpu", progress=False, stop_after=13)
    ckpt = (stopped.dir / "ckpt.pt").read_bytes()
    files = export_runs(gpu, "paper", tmp_path / "out", checkpoints=True)
    with tarfile.open(files[1]) as tar:
        (member,) = tar.getmembers()
    assert member.name == f"{stopped.hash}/ckpt.pt.gz" and member.size < len(ckpt)
    report = import_runs(tmp_path / "out", RunStore(tmp_path / "laptop"))
    assert report.added == [stopped.hash]
    assert (tmp_path / "laptop" / "paper" / stopped.hash / "ckpt.pt").read_bytes() == ckpt
    assert not list((tmp_path / "laptop").rglob("*.gz"))

    with tarfile.open(files[1], "w") as tar:  # the old format: the checkpoint file itself
        tar.add(stopped.dir / "ckpt.pt", arcname=f"{stopped.hash}/ckpt.pt")
    report = import_runs(tmp_path / "out", RunStore(tmp_path / "old"))
    assert report.added == [stopped.hash]
    assert (tmp_path / "old" / "paper" / stopped.hash / "ckpt.pt").read_bytes() == ckpt


def test_import_refuses_a_folder_without_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(StoreError, match="no records.tgz"):
        import_runs(tmp_path, RunStore(tmp_path / "s"))
    assert main(["import", str(tmp_path), "--root", str(tmp_path / "s")]) == 2
    assert "no records.tgz" in capsys.readouterr().err


def test_cli_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train(_cfg(3, steps=10), RunStore(tmp_path / "a"), device="cpu", progress=False)
    assert main(["export", "--profile", "paper", "--out", str(tmp_path / "o"), "--root", str(tmp_path / "a")]) == 0
    assert main(["import", str(tmp_path / "o"), "--root", str(tmp_path / "b")]) == 0
    assert "1 added, 0 updated, 0 skipped" in capsys.readouterr().out
    assert RunStore(tmp_path / "b").get(_cfg(3, steps=10)) is not None
