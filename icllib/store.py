"""The run store: one directory per run, `results/<profile>/<config_hash>/`, written only atomically.

    config.json       the RunConfig (`icllib.config.to_dict`)
    status.json       {"state": "new" | "running" | "complete" | "failed", "step": ..., "error": ...}
    metrics.jsonl     one JSON object per logged step (loss, eval curves)
    eval.json         final evaluation (error per position / length / layer)
    provenance.json   git sha, versions, device, backend (`icllib.repro.provenance`)
    ckpt.pt           last checkpoint (ignored by git)

Every file is written to a temporary name in the same directory, flushed, fsynced and renamed over the target,
so a reader sees either the old file or the new one, never half of one; a process killed mid-write leaves at
most a `.<name>.tmp-*` file, which `RunStore.open` removes. A run is complete only once `status.json` says so,
which `train` writes last: any other state on disk is a partial run (`Run.complete`, `RunStore.incomplete`).
"""

from __future__ import annotations

import io
import json
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from icllib.config import ConfigError, RunConfig, config_hash, from_dict, hash_payload, to_dict
from icllib.paths import RESULTS_DIR

log = logging.getLogger(__name__)

STATES = ("new", "running", "complete", "failed")


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
# one run


@dataclass
class Run:
    """A handle on one run directory. Create it through `RunStore.open`."""

    dir: Path
    cfg: RunConfig

    @property
    def hash(self) -> str:
        return self.dir.name

    # --- status ---------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        path = self.dir / "status.json"
        return read_json(path) if path.exists() else {"state": "new"}

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
        """All logged rows, in order."""
        path = self.dir / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace metrics.jsonl with `rows` atomically (a resumed run rewrites what its checkpoint knows)."""
        text = "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in rows)
        atomic_write_text(self.dir / "metrics.jsonl", text)

    def append_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Append rows; the file is rewritten atomically, so a crash never leaves a torn line."""
        self.write_metrics(self.metrics() + list(rows))

    # --- checkpoints ------------------------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.dir / "ckpt.pt", buf.getvalue())

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        path = self.dir / "ckpt.pt"
        if not path.exists():
            return None
        return torch.load(path, map_location=map_location, weights_only=False)


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
        """The run directory of `cfg`, created if needed. A directory holding another config raises StoreError."""
        directory = self.path(cfg)
        if (directory / "config.json").exists():
            self._check_config(directory, cfg)
        else:
            directory.mkdir(parents=True, exist_ok=True)
            atomic_write_json(directory / "config.json", to_dict(cfg))
        for stale in directory.glob(".*.tmp-*"):  # left by a writer killed mid-write
            log.info("removing stale temporary file %s", stale)
            stale.unlink(missing_ok=True)
        return Run(directory, cfg)

    def get(self, cfg: RunConfig) -> Run | None:
        """The stored run of `cfg` if it exists and is complete, else None."""
        directory = self.path(cfg)
        if not (directory / "config.json").exists():
            return None
        self._check_config(directory, cfg)
        run = Run(directory, cfg)
        return run if run.complete else None

    def runs(self, profile: str | None = None) -> Iterator[Run]:
        """Every run directory with a readable config, optionally of one profile."""
        profiles = [profile] if profile else sorted(p.name for p in self.root.iterdir() if p.is_dir())
        for prof in profiles:
            base = self.root / prof
            if not base.is_dir():
                continue
            for directory in sorted(base.iterdir()):
                if not directory.name.startswith(".") and (directory / "config.json").exists():  # .x: temporaries
                    try:
                        cfg = from_dict(RunConfig, read_json(directory / "config.json"))
                    except (StoreError, ConfigError) as e:
                        log.warning("skipping %s: %s", directory, e)
                        continue
                    yield Run(directory, cfg)

    def incomplete(self, profile: str | None = None) -> list[Run]:
        """Runs that were started but never marked complete (killed, failed or still running)."""
        return [r for r in self.runs(profile) if not r.complete]
