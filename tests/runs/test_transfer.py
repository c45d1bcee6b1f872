"""`icl export` / `icl import`: runs move between stores as bounded files; incomplete runs carry their checkpoint
and resume exactly; complete runs are never replaced."""

import gzip
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/, where _toy.py lives
import _toy  # noqa: E402, F401  (registers "toy_regression")

from icllib.cli import main  # noqa: E402
from icllib.config import (  # noqa: E402
    CurriculumConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    TaskConfig,
    TrainConfig,
    config_hash,
    to_dict,
)
from icllib.runs.transfer import export_runs, import_runs  # noqa: E402
from icllib.store import RunStore, StoreError  # noqa: E402
from icllib.training.train import train  # noqa: E402


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
    temporaries = [p for p in (tmp_path / "laptop" / "paper").iterdir() if p.name.startswith(".")]
    assert not [p for p in temporaries if p.suffix != ".lock"]  # no temporaries (run locks stay beside their runs)


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


# ----------------------------------------------------------------------------------------------------------------
# a damaged or crafted archive imports nothing; what it merely lacks costs only its runs, each reported
# (hand-made runs: a config, a status and, for a stopped run, a small random checkpoint; no training)


def _hand_cfg(seed: int) -> RunConfig:
    return RunConfig(name=f"hand{seed}", profile="paper", seed=seed, task=TaskConfig("linear_regression"))


def _hand_store(root: Path, complete: tuple[int, ...] = (), stopped: tuple[int, ...] = ()) -> RunStore:
    """Runs of `_hand_cfg(seed)`: complete ones with an eval.json, stopped ones at step 5 with an incompressible
    ~80 KB checkpoint (so that small `part_mib` splits it)."""
    store = RunStore(root)
    for seed in complete:
        run = store.open(_hand_cfg(seed))
        run.write_metrics([{"step": 10, "loss": 0.5}])
        run.write_json("eval.json", {"error": [0.1, 0.2]})
        run.set_status("complete", step=10)
    for seed in stopped:
        run = store.open(_hand_cfg(seed))
        run.write_metrics([{"step": 5, "loss": 0.9}])
        run.save_checkpoint({"step": 5, "w": torch.randn(20000, generator=torch.Generator().manual_seed(seed))})
        run.set_status("running", step=5)
    return store


def json_bytes(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _records(out: Path) -> dict[str, bytes]:
    with tarfile.open(out / "records.tgz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def _write_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> None:
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _nothing_stored(root: Path) -> bool:
    return not root.exists() or not [p for p in root.rglob("*") if p.suffix != ".lock" and p.is_file()]


@pytest.mark.parametrize("bad", ["/tmp/icl-import-escape/config.json", "../escape/config.json", "a/b/config.json"])
def test_a_member_outside_run_dirs_imports_nothing(tmp_path: Path, bad: str) -> None:
    """Such a member sorted after good runs used to fail after those runs were merged."""
    _hand_store(tmp_path / "gpu", complete=(0, 1, 2))
    export_runs(RunStore(tmp_path / "gpu"), "paper", tmp_path / "out")
    members = _records(tmp_path / "out")
    _write_tar(tmp_path / "out" / "records.tgz", {**members, bad: b"{}"})
    with pytest.raises(StoreError, match="not <run>/<file>"):
        import_runs(tmp_path / "out", RunStore(tmp_path / "laptop"))
    assert _nothing_stored(tmp_path / "laptop") and not Path("/tmp/icl-import-escape").exists()


def test_a_checkpoint_without_its_run_imports_nothing(tmp_path: Path) -> None:
    gpu = _hand_store(tmp_path / "gpu", complete=(0, 1), stopped=(2,))
    export_runs(gpu, "paper", tmp_path / "out", checkpoints=True)
    orphan = config_hash(_hand_cfg(2))
    members = {k: v for k, v in _records(tmp_path / "out").items() if not k.startswith(orphan)}
    _write_tar(tmp_path / "out" / "records.tgz", members)  # the parts still hold run 2's checkpoint
    with pytest.raises(StoreError, match=f"no run {orphan}"):
        import_runs(tmp_path / "out", RunStore(tmp_path / "laptop"))
    assert _nothing_stored(tmp_path / "laptop")


def test_a_config_that_does_not_hash_to_its_directory_imports_nothing(tmp_path: Path) -> None:
    gpu = _hand_store(tmp_path / "gpu", complete=(0, 1, 2))
    export_runs(gpu, "paper", tmp_path / "out")
    last = max(config_hash(_hand_cfg(seed)) for seed in (0, 1, 2))  # merged last: the others came in first
    members = _records(tmp_path / "out")
    members[f"{last}/config.json"] = json_bytes(to_dict(_hand_cfg(99)))
    _write_tar(tmp_path / "out" / "records.tgz", members)
    with pytest.raises(StoreError, match=f"hashes to {config_hash(_hand_cfg(99))}, not {last}"):
        import_runs(tmp_path / "out", RunStore(tmp_path / "laptop"))
    assert _nothing_stored(tmp_path / "laptop")


def test_a_store_directory_holding_another_config_imports_nothing(tmp_path: Path) -> None:
    gpu = _hand_store(tmp_path / "gpu", complete=(0, 1, 2))
    export_runs(gpu, "paper", tmp_path / "out")
    last = max(config_hash(_hand_cfg(seed)) for seed in (0, 1, 2))
    squatted = tmp_path / "laptop" / "paper" / last
    squatted.mkdir(parents=True)
    (squatted / "config.json").write_text(json_bytes(to_dict(_hand_cfg(99))).decode())
    with pytest.raises(StoreError, match="different config"):
        import_runs(tmp_path / "out", RunStore(tmp_path / "laptop"))
    assert sorted(p.name for p in (tmp_path / "laptop" / "paper").iterdir() if p.suffix != ".lock") == [last]


def test_a_missing_first_part_reports_the_runs_it_held(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With .00 gone and .01 present the stopped run used to come in as `running` without a checkpoint, unreported."""
    gpu = _hand_store(tmp_path / "gpu", complete=(0,), stopped=(1,))
    files = export_runs(gpu, "paper", tmp_path / "out", checkpoints=True, part_mib=0.03)
    assert [f.name for f in files][1:3] == ["checkpoints.tar.00", "checkpoints.tar.01"]
    files[1].unlink()
    stopped = config_hash(_hand_cfg(1))
    assert main(["import", str(tmp_path / "out"), "--root", str(tmp_path / "laptop")]) == 0
    out = capsys.readouterr().out
    assert "1 added" in out and f"not imported: {stopped}: " in out and "checkpoints.tar.00 is missing" in out
    laptop = RunStore(tmp_path / "laptop")
    assert laptop.get(_hand_cfg(0)) is not None and not laptop.path(_hand_cfg(1)).exists()
    report = import_runs(tmp_path / "out", laptop)
    assert report.lost == [stopped] and "checkpoints.tar.00 is missing" in report.not_imported[stopped]


class _Payload:
    """Unpickling this opens (creates) `marker`: the code a crafted checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def _payload_checkpoint(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save({"step": 5, "w": torch.zeros(3), "x": _Payload(marker)}, buf)
    return buf.getvalue()


@pytest.mark.parametrize("member", ["ckpt.pt.gz", "ckpt.pt"])
def test_a_checkpoint_with_a_pickle_payload_is_refused_unrun(tmp_path: Path, member: str) -> None:
    live = tmp_path / "live-marker"
    torch.load(io.BytesIO(_payload_checkpoint(live)), weights_only=False)
    assert live.exists()  # the payload is live: an unsafe load runs it

    gpu = _hand_store(tmp_path / "gpu", complete=(0,), stopped=(1,))
    files = export_runs(gpu, "paper", tmp_path / "out", checkpoints=True)
    marker = tmp_path / "marker"
    data = _payload_checkpoint(marker)
    _write_tar(files[1], {f"{config_hash(_hand_cfg(1))}/{member}":
                          gzip.compress(data) if member.endswith(".gz") else data}, mode="w")
    with pytest.raises(StoreError, match="nothing was imported"):
        import_runs(tmp_path / "out", RunStore(tmp_path / "laptop"))
    assert not marker.exists() and _nothing_stored(tmp_path / "laptop")


@pytest.mark.parametrize("damaged, whole", [("records.tgz", False), ("checkpoints.tar.01", True),
                                            ("checkpoints.tar.02", False)])
def test_a_truncated_file_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str], damaged: str,
                                                whole: bool) -> None:
    """A file cut short (a middle part, the short last part, or records.tgz) is named with what to do, in one line;
    `whole`: cut at the size of a full part (a middle part one byte short), else to half its size."""
    gpu = _hand_store(tmp_path / "gpu", complete=(0, 1), stopped=(2, 3))
    files = export_runs(gpu, "paper", tmp_path / "out", checkpoints=True, part_mib=0.05)
    assert len(files) == 4  # records and three parts, the last one short
    path = tmp_path / "out" / damaged
    data = path.read_bytes()
    path.write_bytes(data[:-1] if whole else data[: len(data) // 2])
    assert main(["import", str(tmp_path / "out"), "--root", str(tmp_path / "laptop")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("icl: error: import:"), err
    assert damaged in err and "truncated" in err and "again" in err
    assert _nothing_stored(tmp_path / "laptop")


def test_hand_made_runs_round_trip(tmp_path: Path) -> None:
    """The checks let a sound export through: complete runs and a resumable checkpoint, byte for byte."""
    gpu = _hand_store(tmp_path / "gpu", complete=(0, 1), stopped=(2,))
    export_runs(gpu, "paper", tmp_path / "out", checkpoints=True, part_mib=0.03)
    report = import_runs(tmp_path / "out", RunStore(tmp_path / "laptop"))
    assert sorted(report.added) == sorted(config_hash(_hand_cfg(s)) for s in (0, 1, 2)) and not report.not_imported
    stopped = RunStore(tmp_path / "laptop").open(_hand_cfg(2))
    assert stopped.read_json("status.json")["step"] == 5
    assert (stopped.dir / "ckpt.pt").read_bytes() == (gpu.path(_hand_cfg(2)) / "ckpt.pt").read_bytes()
