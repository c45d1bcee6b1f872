import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from icllib.config import ModelConfig, RunConfig, TaskConfig, config_hash, to_dict
from icllib.store import RunStore, StoreError, atomic_write_json


def _cfg(**kw) -> RunConfig:
    return RunConfig(name="t", task=TaskConfig("linear_regression"), **kw)


def test_open_writes_config_and_reopens(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run = store.open(_cfg())
    assert run.dir == tmp_path / "smoke" / config_hash(_cfg())
    assert json.loads((run.dir / "config.json").read_text()) == to_dict(_cfg())
    assert run.status() == {"state": "new"} and not run.complete
    again = store.open(_cfg())  # same config: same directory, nothing rewritten
    assert again.dir == run.dir


def test_directory_holding_another_config_is_refused_and_kept(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run = store.open(_cfg())
    run.write_json("eval.json", {"err": [1.0, 0.5]})
    run.set_status("complete", step=10)
    # simulate a collision: the directory of config B holds config A
    other = _cfg(seed=7)
    target = store.path(other)
    target.parent.mkdir(parents=True, exist_ok=True)
    run.dir.rename(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(StoreError) as e:
        store.open(other)
    assert "holds a different config" in str(e.value) and "\n" not in str(e.value)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before  # nothing lost or touched


def test_unreadable_config_is_refused(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    d = store.path(_cfg())
    d.mkdir(parents=True)
    (d / "config.json").write_text('{"name": "t", "task": ')
    with pytest.raises(StoreError, match="config.json is unreadable"):
        store.open(_cfg())
    assert (d / "config.json").read_text() == '{"name": "t", "task": '


def test_status_metrics_checkpoint_and_incomplete_runs(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    done, partial = store.open(_cfg()), store.open(_cfg(seed=1))
    done.append_metrics([{"step": 1, "loss": 2.0}])
    done.append_metrics([{"step": 2, "loss": 1.5}])
    assert [r["loss"] for r in done.metrics()] == [2.0, 1.5]
    done.save_checkpoint({"step": 2, "w": torch.arange(3.0)})
    assert torch.equal(done.load_checkpoint()["w"], torch.arange(3.0))
    done.set_status("complete", step=2)
    partial.set_status("running", step=1)
    assert store.get(_cfg()) is not None and store.get(_cfg(seed=1)) is None
    assert [r.cfg.seed for r in store.incomplete()] == [1]
    with pytest.raises(ValueError, match="not one of"):
        done.set_status("finished")


def test_nan_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(ValueError):
        atomic_write_json(path, {"a": float("nan")})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_write_killed_halfway_leaves_old_file(tmp_path: Path) -> None:
    """SIGKILL a writer in the middle of an atomic write: the target keeps its old, complete content."""
    target = tmp_path / "run" / "eval.json"
    atomic_write_json(target, {"version": "old"})
    code = textwrap.dedent(
        f"""
        import sys, time
        from icllib.store import atomic_write_bytes
        def chunks():
            yield b'{{"version": "new", "data": ['
            print("writing", flush=True)
            while True:
                time.sleep(0.05)
                yield b"1," * 1000
        atomic_write_bytes({str(target)!r}, chunks())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert json.loads(target.read_text()) == {"version": "old"}
    leftovers = [p for p in target.parent.iterdir() if p.name != "eval.json"]
    assert leftovers and all(p.name.startswith(".eval.json.tmp-") for p in leftovers)


def test_open_removes_stale_temporary_files(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run = store.open(_cfg())
    stale = run.dir / ".metrics.jsonl.tmp-999999999-abcd"  # a pid no process can have
    stale.write_text("half")
    store.open(_cfg())
    assert not stale.exists()


def test_runs_lists_by_profile(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.open(_cfg())
    store.open(RunConfig(name="p", task=TaskConfig("linear_regression"), profile="paper",
                         model=ModelConfig(d_model=64)))
    assert [r.cfg.profile for r in store.runs()] == ["paper", "smoke"]
    assert [r.cfg.name for r in store.runs("paper")] == ["p"]
