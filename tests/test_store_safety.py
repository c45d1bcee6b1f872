"""The store refuses unsafe, corrupt or misplaced files with one-line errors, and a listing survives broken runs."""

import json
import logging
import os
from pathlib import Path

import pytest
import torch

from icllib.config import RunConfig, TaskConfig, config_hash
from icllib.store import RunStore, StoreError, load_checkpoint_file


def _cfg(**kw) -> RunConfig:
    return RunConfig(name="t", task=TaskConfig("linear_regression"), **kw)


class _Payload:
    """Unpickling this calls os.mkdir(marker): code execution through a checkpoint file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_checkpoint_that_would_run_code_is_refused_unexecuted(tmp_path: Path) -> None:
    run = RunStore(tmp_path / "store").open(_cfg())
    marker = tmp_path / "payload-ran"
    torch.save({"step": 3, "model": {}, "evil": _Payload(marker)}, run.dir / "ckpt.pt")
    with pytest.raises(StoreError) as e:
        run.load_checkpoint()
    assert "ckpt.pt is corrupt or not a plain checkpoint (unpickling refused" in _one_line(e)
    assert "icl train" in str(e.value) and "weights_only" not in str(e.value)  # no advice to load it unsafely
    with pytest.raises(StoreError):
        load_checkpoint_file((run.dir / "ckpt.pt").read_bytes(), name="upload/ckpt.pt")
    assert not marker.exists()
    torch.load(run.dir / "ckpt.pt", weights_only=False)  # the payload is live: an unsafe load runs it
    assert marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not_a_dict"])
def test_corrupt_checkpoint_is_a_one_line_store_error(tmp_path: Path, damage: str) -> None:
    run = RunStore(tmp_path).open(_cfg())
    run.save_checkpoint({"step": 2, "w": torch.arange(1000.0), "rng": torch.get_rng_state()})
    path = run.dir / "ckpt.pt"
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a checkpoint" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save([1, 2], path)
    with pytest.raises(StoreError) as e:
        run.load_checkpoint()
    assert str(path) in _one_line(e) and "icl train" in str(e.value)


def test_checkpoint_round_trips_rng_state_and_records_its_run(tmp_path: Path) -> None:
    run = RunStore(tmp_path).open(_cfg())
    state = {"step": 2, "rows": [{"step": 1, "loss": 0.5, "tag": "x"}], "torch_rng": torch.get_rng_state()}
    run.save_checkpoint(state)
    loaded = run.load_checkpoint()
    assert loaded["config_hash"] == config_hash(_cfg()) and loaded["rows"] == state["rows"]
    assert torch.equal(loaded["torch_rng"], state["torch_rng"])


def test_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    a, b = store.open(_cfg()), store.open(_cfg(seed=1))
    a.save_checkpoint({"step": 5})
    (b.dir / "ckpt.pt").write_bytes((a.dir / "ckpt.pt").read_bytes())
    with pytest.raises(StoreError) as e:
        b.load_checkpoint()
    assert f"belongs to run {a.hash}, not {b.hash}" in _one_line(e)
    with pytest.raises(StoreError, match="belongs to run"):
        load_checkpoint_file(b.dir / "ckpt.pt", expect_hash=b.hash)
    assert a.load_checkpoint()["step"] == 5


def test_checkpoint_without_a_run_hash_is_accepted(tmp_path: Path) -> None:
    """Checkpoints written before runs tagged theirs carry no hash and still resume."""
    run = RunStore(tmp_path).open(_cfg())
    torch.save({"step": 4, "w": torch.ones(2)}, run.dir / "ckpt.pt")
    assert run.load_checkpoint()["step"] == 4


def test_torn_metrics_file_is_a_store_error(tmp_path: Path) -> None:
    run = RunStore(tmp_path).open(_cfg())
    run.write_metrics([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}])
    path = run.dir / "metrics.jsonl"
    path.write_text(path.read_text()[:-8])  # the last line cut off
    with pytest.raises(StoreError) as e:
        run.metrics()
    assert f"{path} is corrupt (line 2" in _one_line(e) and f"delete {run.dir}" in str(e.value)
    run.save_checkpoint({"step": 2})  # an incomplete run with a checkpoint: resuming rewrites the file
    with pytest.raises(StoreError, match="rewrites it when it resumes"):
        run.metrics()


def test_listing_marks_broken_runs_and_runs_skips_them(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = RunStore(tmp_path)
    good, bad_status, bad_metrics = store.open(_cfg()), store.open(_cfg(seed=1)), store.open(_cfg(seed=2))
    good.set_status("complete", step=3)
    (bad_status.dir / "status.json").write_text('{"state": "runn')
    bad_metrics.set_status("running", step=1)
    (bad_metrics.dir / "metrics.jsonl").write_text('{"step": 1}\n{"st\n')
    moved = store.open(_cfg(seed=3))  # a directory whose config is another run's
    moved.dir.rename(moved.dir.with_name("0123456789abcdef"))
    (tmp_path / "smoke" / "empty").mkdir()

    entries = {e.hash: e for e in store.listing()}
    assert entries[good.hash].problem is None and entries[good.hash].state == "complete"
    assert "status.json" in entries[bad_status.hash].problem and entries[bad_status.hash].state == "broken"
    assert "metrics.jsonl is corrupt" in entries[bad_metrics.hash].problem
    assert f"hashes to {moved.hash}" in entries["0123456789abcdef"].problem
    assert entries["empty"].problem == "no config.json"
    assert all("\n" not in e.problem for e in entries.values() if e.problem)
    assert not any(name.endswith(".lock") for name in entries)  # lock files are not runs

    with caplog.at_level(logging.WARNING, logger="icllib.store"):
        hashes = {r.hash for r in store.runs()}
    assert hashes == {good.hash, bad_metrics.hash}  # runs() does not read metrics files
    assert bad_status.hash in caplog.text and "0123456789abcdef" in caplog.text
    assert [r.hash for r in store.incomplete()] == [bad_metrics.hash]


def test_invalid_status_state_is_a_store_error(tmp_path: Path) -> None:
    run = RunStore(tmp_path).open(_cfg())
    (run.dir / "status.json").write_text(json.dumps(["complete"]))
    with pytest.raises(StoreError, match="is not a run status"):
        run.status()
