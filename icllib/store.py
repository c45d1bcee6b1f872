"""The run store: one directory per run, `results/<profile>/<config_hash>/`, written only atomically.

    config.json       the RunConfig (`icllib.config.to_dict`)
    status.json       {"state": "new" | "running" | "complete" | "failed", "step": ..., "error": ...}
    metrics.jsonl     one JSON object per logged step (loss, eval curves)
    eval.json         final evaluation (error per position / length / layer)
    provenance.json   git sha, versions, device, backend (`icllib.repro.provenance`)
    ckpt.pt           last checkpoint (ignored by git)

Every file is written to a temporary name in the same directory, flushed, fsynced and renamed over the target,
so a reader sees either the old file or the new one, never half of one; a process killed mid-write leaves at
most a `.<name>.tmp-<pid>-<id>` file, which is removed by whoever next takes the run's lock. A run is complete only
once `status.json` says so, which `train` writes last: any other state on disk is a partial run (`Run.complete`,
`RunStore.incomplete`).

One process trains a run at a time: the trainer holds the run's lock, `<profile>/.<hash>.lock` next to the run
directory (outside it, so exports and copies of the directory never carry it, and it survives an import that
swaps the directory). `Run.lock` fails at once with a StoreError when another process holds it; the operating
system releases the lock of a process that dies, so a killed trainer never leaves a stale lock behind.

Checkpoints are loaded with `torch.load(weights_only=True)`: a checkpoint holds tensors, numbers, strings and
containers only, and a file that holds anything else (a pickle that would run code) is refused, not executed.
Each checkpoint records the hash of the run that wrote it, so one copied into another run's directory is refused.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock
import torch

from icllib.config import ConfigError, RunConfig, config_hash, from_dict, hash_payload, to_dict
from icllib.paths import RESULTS_DIR

log = logging.getLogger(__name__)

STATES = ("new", "running", "complete", "failed")
CHECKPOINT_HASH_KEY = "config_hash"  # the hash of the run that wrote a checkpoint (`Run.save_checkpoint`)


class StoreError(RuntimeError):
    """The store refuses an operation that would lose or mix up stored results."""


# ----------------------------------------------------------------------------------------------------------------
# atomic writes


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes | Iterable[bytes]) -> None:
    """Write `data` (bytes or an iterable of chunks) to `path` atomically: temp file, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    chunks = [data] if isinstance(data, bytes | bytearray) else data
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON (NaN/inf are refused: they are not JSON)."""
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise StoreError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


# ----------------------------------------------------------------------------------------------------------------
# checkpoint files


def _load_failure(err: BaseException) -> str:
    """One line saying why torch.load failed. A weights-only refusal's own first line suggests loading with
    `weights_only=False`, which is what must not be done with such a file, so only its reason is kept."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        reasons = [line for line in lines[1:] if not line.startswith(("Please file", "Check the documentation"))]
        return "unpickling refused: " + (reasons[0] if reasons else "it holds more than tensors and plain data")
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def load_checkpoint_file(
    src: str | Path | bytes,
    *,
    name: str | None = None,
    expect_hash: str | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load a checkpoint (a path, or the file's bytes) safely and return its dict.

    Loading uses `torch.load(weights_only=True)`, which unpickles tensors, numbers, strings and containers only,
    so a crafted file cannot run code. Any failure (a refused or corrupt pickle, a truncated zip, a payload that is
    not a dict) becomes a one-line StoreError naming the file (`name`, default: the path) and what to do.
    `expect_hash`: refuse a checkpoint written by another run (checkpoints from before the run's hash was recorded
    carry none and are accepted)."""
    label = name if name is not None else ("<checkpoint bytes>" if isinstance(src, bytes | bytearray) else str(src))
    remedy = "delete it and `icl train` will redo the run from step 0"
    try:
        obj = torch.load(io.BytesIO(src) if isinstance(src, bytes | bytearray) else src,
                         map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise StoreError(f"{label}: no such checkpoint file") from None
    except Exception as e:  # torch raises many types here (UnpicklingError, RuntimeError, EOFError, ...)
        raise StoreError(f"{label} is corrupt or not a plain checkpoint ({_load_failure(e)}); {remedy}") from None
    if not isinstance(obj, dict):
        raise StoreError(f"{label} holds a {type(obj).__name__}, not a checkpoint dict; {remedy}")
    stored = obj.get(CHECKPOINT_HASH_KEY)
    if expect_hash is not None and stored is not None and stored != expect_hash:
        raise StoreError(f"{label} belongs to run {stored}, not {expect_hash}; it was copied into the wrong run: "
                         f"move it to its own run or {remedy}")
    return obj


# ----------------------------------------------------------------------------------------------------------------
# locks and temporary files

_TMP_PID = re.compile(r"\.tmp-(\d+)-")
_HELD: set[Path] = set()  # lock files held by this process (to tell "this process" from "another process")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:  # it exists, owned by another user
        return True
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    return True


def _remove_stale_temporaries(directory: Path) -> None:
    """Remove the `.<name>.tmp-<pid>-<id>` files a killed writer left in `directory`. Call only while holding the
    run's lock (no writer of this run is live then); a file whose pid is still alive is kept all the same, in case
    it belongs to a writer that does not take the lock (a reused pid merely keeps a harmless file until later)."""
    for stale in directory.glob(".*.tmp-*"):
        m = _TMP_PID.search(stale.name)
        if m is not None and _pid_alive(int(m.group(1))):
            log.debug("keeping %s: its writer (pid %s) is alive", stale, m.group(1))
            continue
        log.info("removing stale temporary file %s", stale)
        stale.unlink(missing_ok=True)


def lock_path(run_dir: Path) -> Path:
    """The lock file of the run in `run_dir`: `<profile>/.<hash>.lock`, beside the directory."""
    return run_dir.parent / f".{run_dir.name}.lock"


# ----------------------------------------------------------------------------------------------------------------
# one run


@dataclass
class Run:
    """A handle on one run directory. Create it through `RunStore.open`."""

    dir: Path
    cfg: RunConfig

    @property
    def hash(self) -> str:
        return self.dir.name

    # --- lock -----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, timeout: float = 0.0) -> Iterator[Run]:
        """Hold this run's lock for the body of the `with` (train it there): one process trains a run at a time.

        `timeout`: seconds to wait for a lock another process holds; the default 0 fails at once, so a second
        trainer of the same run stops with a one-line StoreError instead of waiting for hours. On entry, with the
        lock held, the temporary files a killed writer left are removed. The OS releases the lock if this process
        dies. Not re-entrant: taking it again in the same process (another `train` of this run) is an error too."""
        path = lock_path(self.dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        key = path.resolve()
        if key in _HELD:
            raise StoreError(f"run {self.hash} is already being trained in this process (lock {path})")
        lock = filelock.FileLock(path, thread_local=False)  # a generator may be finalised on another thread
        try:
            lock.acquire(timeout=timeout)
        except filelock.Timeout:
            raise StoreError(f"run {self.hash} is being trained by another process (lock {path}); "
                             "wait for it to finish or stop it") from None
        _HELD.add(key)
        try:
            if self.dir.is_dir():
                _remove_stale_temporaries(self.dir)
            yield self
        finally:
            _HELD.discard(key)
            lock.release()

    # --- status ---------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """status.json (`{"state": "new"}` before one is written); StoreError if it is corrupt."""
        path = self.dir / "status.json"
        if not path.exists():
            return {"state": "new"}
        status = read_json(path)
        if not isinstance(status, dict) or status.get("state") not in STATES:
            raise StoreError(f"{path} is not a run status (state must be one of {', '.join(STATES)}); delete it "
                             "and `icl train` resumes the run from its checkpoint (or from step 0 without one)")
        return status

    def set_status(self, state: str, **info: Any) -> None:
        if state not in STATES:
            raise ValueError(f"status state {state!r} is not one of {', '.join(STATES)}")
        atomic_write_json(self.dir / "status.json", {"state": state, **info})

    @property
    def complete(self) -> bool:
        return self.status().get("state") == "complete"

    # --- json files -----------------------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.dir / name, obj)

    def read_json(self, name: str) -> Any:
        return read_json(self.dir / name)

    def has(self, name: str) -> bool:
        return (self.dir / name).exists()

    # --- metrics ----------------------------------------------------------------------------------------------
    def metrics(self) -> list[dict[str, Any]]:
        """All logged rows, in order. The file is only ever replaced whole (`write_metrics`), so a line that does
        not parse, the last one included, means the file was damaged after it was written: StoreError, not a
        silently shorter curve."""
        path = self.dir / "metrics.jsonl"
        if not path.exists():
            return []
        rows = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise StoreError(f"{path} is corrupt (line {n}: {e.msg}); {self._redo_hint()}") from None
            if not isinstance(row, dict):
                raise StoreError(f"{path} is corrupt (line {n} is not a JSON object); {self._redo_hint()}")
            rows.append(row)
        return rows

    def _redo_hint(self) -> str:
        try:
            resumable = (self.dir / "ckpt.pt").exists() and not self.complete
        except StoreError:
            resumable = False
        if resumable:
            return "`icl train` rewrites it when it resumes the run from its checkpoint"
        return f"delete {self.dir} and `icl train` will redo the run"

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace metrics.jsonl with `rows` atomically (a resumed run rewrites what its checkpoint knows)."""
        text = "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in rows)
        atomic_write_text(self.dir / "metrics.jsonl", text)

    def append_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Append rows; the file is rewritten atomically, so a crash never leaves a torn line."""
        self.write_metrics(self.metrics() + list(rows))

    # --- checkpoints ------------------------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write `state` (tensors, numbers, strings and containers of them: what `load_checkpoint` accepts) as
        ckpt.pt atomically, tagged with this run's config hash (key `config_hash`) so it cannot pass for another
        run's checkpoint."""
        buf = io.BytesIO()
        torch.save({**state, CHECKPOINT_HASH_KEY: config_hash(self.cfg)}, buf)
        atomic_write_bytes(self.dir / "ckpt.pt", buf.getvalue())

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """ckpt.pt as saved (with its `config_hash` key), or None if there is none. Loaded safely
        (`load_checkpoint_file`); a corrupt or unsafe file, or one written by another run, raises a one-line
        StoreError. A checkpoint without `config_hash` (written before runs tagged theirs) is accepted."""
        path = self.dir / "ckpt.pt"
        if not path.exists():
            return None
        return load_checkpoint_file(path, expect_hash=config_hash(self.cfg), map_location=map_location)


# ----------------------------------------------------------------------------------------------------------------
# the store


class RunStore:
    """Run directories under `root` (default `results/`), keyed by profile and config hash."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else RESULTS_DIR

    def path(self, cfg: RunConfig) -> Path:
        return self.root / cfg.profile / config_hash(cfg)

    def _check_config(self, directory: Path, cfg: RunConfig) -> None:
        """Refuse a directory whose config.json is unreadable or describes another run."""
        try:
            stored = from_dict(RunConfig, read_json(directory / "config.json"))
        except (StoreError, ConfigError) as e:
            msg = f"{directory}: config.json is unreadable ({e}); refusing to reuse this directory"
            raise StoreError(msg) from None
        if hash_payload(stored) != hash_payload(cfg):
            raise StoreError(
                f"{directory} holds a different config (stored run {stored.name!r}, "
                f"hash {config_hash(stored)}); refusing to overwrite it with {cfg.name!r} (hash {config_hash(cfg)})"
            )

    def open(self, cfg: RunConfig) -> Run:
        """The run directory of `cfg`, created if needed. A directory holding another config raises StoreError.
        Stale temporary files are removed only if no other process holds the run's lock (never a live writer's)."""
        directory = self.path(cfg)
        if (directory / "config.json").exists():
            self._check_config(directory, cfg)
        else:
            directory.mkdir(parents=True, exist_ok=True)
            atomic_write_json(directory / "config.json", to_dict(cfg))
        sweep = filelock.FileLock(lock_path(directory))
        try:
            sweep.acquire(timeout=0)
        except filelock.Timeout:  # a trainer holds the run: its temporary files may be live, leave them
            log.debug("%s is locked; leaving its temporary files", directory)
        else:
            try:
                _remove_stale_temporaries(directory)  # left by a writer killed mid-write
            finally:
                sweep.release()
        return Run(directory, cfg)

    @contextlib.contextmanager
    def lock(self, cfg: RunConfig, timeout: float = 0.0) -> Iterator[Run]:
        """`open(cfg)` and hold the run's lock for the body of the `with` (`Run.lock`): the way to train a run."""
        with self.open(cfg).lock(timeout) as run:
            yield run

    def get(self, cfg: RunConfig) -> Run | None:
        """The stored run of `cfg` if it exists and is complete, else None."""
        directory = self.path(cfg)
        if not (directory / "config.json").exists():
            return None
        self._check_config(directory, cfg)
        run = Run(directory, cfg)
        return run if run.complete else None

    def listing(self, profile: str | None = None, *, metrics: bool = True) -> list[RunEntry]:
        """Every run directory (optionally of one profile), broken ones included, for `icl runs`: an entry's
        `problem` says what is wrong (no or unreadable config.json, a config that does not hash to the directory's
        name, an unreadable status.json, with `metrics` a corrupt metrics.jsonl), and None for a sound run.
        Directories starting with "." (an import's temporaries) and plain files (locks) are not runs."""
        if profile:
            profiles = [profile]
        elif self.root.is_dir():
            profiles = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        else:
            profiles = []
        entries = []
        for prof in profiles:
            base = self.root / prof
            if not base.is_dir():
                continue
            for directory in sorted(base.iterdir()):
                if directory.is_dir() and not directory.name.startswith("."):
                    entries.append(_examine(directory, metrics=metrics))
        return entries

    def runs(self, profile: str | None = None) -> Iterator[Run]:
        """Every sound run (optionally of one profile); a broken one (`listing` says why) is skipped with a
        warning, so one damaged directory does not stop a figure or notebook that reads the others."""
        for entry in self.listing(profile, metrics=False):
            if entry.problem is not None:
                if entry.problem != _NO_CONFIG:  # an empty or foreign directory: not a run at all
                    log.warning("skipping %s: %s", entry.dir, entry.problem)
                continue
            assert entry.cfg is not None
            yield Run(entry.dir, entry.cfg)

    def incomplete(self, profile: str | None = None) -> list[Run]:
        """Runs that were started but never marked complete (killed, failed or still running)."""
        return [r for r in self.runs(profile) if not r.complete]


# ----------------------------------------------------------------------------------------------------------------
# listing

_NO_CONFIG = "no config.json"


@dataclass(frozen=True)
class RunEntry:
    """One directory of a store listing (`RunStore.listing`): the run, or what makes it unusable."""

    dir: Path
    cfg: RunConfig | None  # None when config.json is missing or unreadable
    status: dict[str, Any] | None  # None when status.json is unreadable (or the config is)
    problem: str | None  # one line; None for a sound run

    @property
    def hash(self) -> str:
        return self.dir.name

    @property
    def profile(self) -> str:
        return self.dir.parent.name

    @property
    def state(self) -> str:
        """The status state, or "broken" for an entry with a problem."""
        return "broken" if self.problem is not None or self.status is None else str(self.status["state"])

    @property
    def run(self) -> Run | None:
        return Run(self.dir, self.cfg) if self.cfg is not None else None


def _examine(directory: Path, *, metrics: bool) -> RunEntry:
    """The listing entry of one run directory: it checks the config, its hash, the status and (`metrics`) the
    metrics file, and turns the first problem found into a one-line `problem`."""
    if not (directory / "config.json").exists():
        return RunEntry(directory, None, None, _NO_CONFIG)
    try:
        cfg = from_dict(RunConfig, read_json(directory / "config.json"))
    except (StoreError, ConfigError) as e:
        return RunEntry(directory, None, None, f"config.json is unreadable ({e})")
    if (h := config_hash(cfg)) != directory.name:
        return RunEntry(directory, cfg, None, f"config.json hashes to {h}, not to the directory's name; it holds "
                                              "another run's config or was edited")
    run = Run(directory, cfg)
    try:
        status = run.status()
    except StoreError as e:
        return RunEntry(directory, cfg, None, str(e))
    if metrics:
        try:
            run.metrics()
        except StoreError as e:
            return RunEntry(directory, cfg, status, str(e))
    return RunEntry(directory, cfg, status, None)
