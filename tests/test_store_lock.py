"""One process trains a run at a time: a second one is refused and leaves the first one's files alone."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from icllib.config import RunConfig, TaskConfig
from icllib.store import RunStore, StoreError

DEAD_PID = 999_999_999  # above any kernel's pid_max: never a live process


def _cfg() -> RunConfig:
    return RunConfig(name="t", task=TaskConfig("linear_regression"))


def test_second_process_on_a_run_is_refused_and_first_files_survive(tmp_path: Path) -> None:
    """Process A holds the run's lock and is mid-write; B's open and lock must not touch A's temporary files
    (not even one named after a dead pid: the lock alone protects it) and B's lock fails at once."""
    code = textwrap.dedent(
        f"""
        import sys
        from icllib.config import RunConfig, TaskConfig
        from icllib.store import RunStore, atomic_write_bytes
        cfg = RunConfig(name="t", task=TaskConfig("linear_regression"))
        with RunStore({str(tmp_path)!r}).lock(cfg) as run:
            (run.dir / ".eval.json.tmp-{DEAD_PID}-abcd").write_text("other writer")
            def chunks():
                yield b'{{"partial": '
                print("writing", flush=True)
                sys.stdin.readline()  # hold the write open until the test says so
                yield b'1}}'
            atomic_write_bytes(run.dir / "eval.json", chunks())
        print("done", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        store = RunStore(tmp_path)
        run_dir = store.path(_cfg())
        live = sorted(p.name for p in run_dir.glob(".*.tmp-*"))
        assert len(live) == 2
        run = store.open(_cfg())  # must not sweep: A holds the lock
        with pytest.raises(StoreError) as e:
            with run.lock():
                pass
        msg = str(e.value)
        assert f"run {run.hash} is being trained by another process (lock " in msg and "\n" not in msg
        with pytest.raises(StoreError, match="being trained by another process"):
            with store.lock(_cfg()):
                pass
        assert sorted(p.name for p in run_dir.glob(".*.tmp-*")) == live
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    store = RunStore(tmp_path)
    assert store.open(_cfg()).read_json("eval.json") == {"partial": 1}  # A's write landed whole
    with store.lock(_cfg()) as run:  # A is gone: the lock is free, and the dead writer's file is swept
        assert not list(run.dir.glob(".*.tmp-*"))


def test_lock_is_not_reentrant_in_one_process_and_is_released(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with store.lock(_cfg()) as run:
        with pytest.raises(StoreError, match="already being trained in this process"):
            with run.lock():
                pass
        stale = run.dir / f".eval.json.tmp-{DEAD_PID}-abcd"
        stale.write_text("half")
        assert store.open(_cfg()).dir == run.dir and stale.exists()  # opening a locked run sweeps nothing
    with store.lock(_cfg()):  # released on exit; whoever takes it next sweeps
        assert not stale.exists()
    lock_file = tmp_path / "smoke" / f".{run.hash}.lock"
    assert lock_file.exists() and not (run.dir / ".lock").exists()  # beside the run directory, not in it
    assert [r.hash for r in store.runs()] == [run.hash]


def test_lock_sweeps_stale_files_but_keeps_those_of_live_writers(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run = store.open(_cfg())
    dead = run.dir / f".metrics.jsonl.tmp-{DEAD_PID}-abcd"
    alive = run.dir / f".metrics.jsonl.tmp-{os.getpid()}-abcd"
    dead.write_text("half")
    alive.write_text("half")
    with run.lock():
        pass
    assert not dead.exists() and alive.exists()
