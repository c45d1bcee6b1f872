"""Move runs between stores (a GPU machine and a laptop, a cluster and a clone) as a few bounded files.

    export_runs(store, "paper", out_dir)                 # out_dir/records.tgz: every run's files but checkpoints
    export_runs(store, "paper", out_dir, checkpoints=True, part_mib=15)
                                                         # + out_dir/checkpoints.tar.00, .01, ...: the ckpt.pt of
                                                         #   every incomplete run, gzipped one by one (8-17% smaller),
                                                         #   split into parts of <= part_mib
    import_runs(out_dir, store)                          # -> ImportReport(added, updated, skipped)
    import_runs(out_dir, store, complete_only=True)      # into a git checkout's results/: leave partial runs out

Complete runs need no checkpoint (`status.json` says complete; the figures read the JSON files), so records stay
small enough to commit. Incomplete runs travel with their checkpoint so that training resumes where it stopped.
Importing never replaces a complete run, never takes a run directory that holds another config (StoreError), and
writes each run into a temporary directory that is renamed into place, so an interrupted import leaves whole runs.
"""

from __future__ import annotations

import gzip
import io
import logging
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from icllib.config import RunConfig, from_dict
from icllib.store import RunStore, StoreError, read_json

log = logging.getLogger(__name__)

RECORDS = "records.tgz"
CHECKPOINT_PARTS = "checkpoints.tar."
PACKED_CKPT = "ckpt.pt.gz"  # a checkpoint inside the parts; exports before 2026-12-03 hold plain ckpt.pt members


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)  # runs new to the store
    updated: list[str] = field(default_factory=list)  # incomplete runs replaced by a further (or complete) state
    skipped: list[str] = field(default_factory=list)  # complete here already
    lost: list[str] = field(default_factory=list)  # incomplete runs whose checkpoint part did not arrive
    partial: list[str] = field(default_factory=list)  # incomplete runs left out by `complete_only`


def export_runs(store: RunStore, profile: str, out_dir: str | Path, *, checkpoints: bool = False,
                part_mib: float = 15.0, max_mib: float | None = None) -> list[Path]:
    """Write `profile`'s runs to `out_dir` (module docstring); returns the files written.

    `max_mib`: keep everything written under this many MiB (a device call's limit on the files that come back):
    checkpoints go in the order of most steps done first, and those that do not fit are left out and named in a
    warning (their runs then restart on import elsewhere)."""
    if part_mib <= 0 or (max_mib is not None and max_mib <= 0):
        raise StoreError(f"export: part_mib and max_mib must be > 0 MiB (got {part_mib}, {max_mib})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = list(store.runs(profile))
    records = out_dir / RECORDS
    with tarfile.open(records, "w:gz") as tar:
        for run in runs:
            for path in sorted(run.dir.iterdir()):
                if path.is_file() and path.name != "ckpt.pt" and ".tmp-" not in path.name:
                    tar.add(path, arcname=f"{run.hash}/{path.name}")
    written = [records]
    if checkpoints:
        buf = io.BytesIO()
        stopped = [run for run in runs if not run.complete and (run.dir / "ckpt.pt").exists()]
        stopped.sort(key=lambda run: -int(run.status().get("step", 0)))  # the most work to redo goes first
        room = None if max_mib is None else max_mib * 2**20 - records.stat().st_size
        left_out = []
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for run in stopped:
                packed = gzip.compress((run.dir / "ckpt.pt").read_bytes(), compresslevel=6, mtime=0)
                # a tar member costs its size rounded up to 512 bytes, plus a 512-byte header (+ 10 KiB at the end)
                cost = -(-len(packed) // 512) * 512 + 512
                if room is not None and buf.tell() + cost + 10240 > room:
                    left_out.append(run.hash)
                    continue
                member = tarfile.TarInfo(f"{run.hash}/{PACKED_CKPT}")
                member.size, member.mode = len(packed), 0o644
                tar.addfile(member, io.BytesIO(packed))
        if left_out:
            log.warning("export: %d checkpoints do not fit in %s MiB and are left out: %s", len(left_out), max_mib,
                        " ".join(left_out))
        data, size = buf.getvalue(), max(1, int(part_mib * 2**20))
        for i in range(0, len(data), size):
            part = out_dir / f"{CHECKPOINT_PARTS}{i // size:02d}"
            part.write_bytes(data[i : i + size])
            written.append(part)
    log.info("exported %d runs of %s to %s (%d files)", len(runs), profile, out_dir, len(written))
    return written


def import_runs(src_dir: str | Path, store: RunStore, *, complete_only: bool = False) -> ImportReport:
    """Merge what `export_runs` wrote in `src_dir` into `store` (module docstring). `complete_only` leaves incomplete
    runs out (`report.partial`): a git checkout's `results/` should hold only runs to commit, since a partial run's
    records travel with the working tree but its git-ignored checkpoint does not."""
    src_dir = Path(src_dir)
    if not (src_dir / RECORDS).is_file():
        raise StoreError(f"import: {src_dir} holds no {RECORDS} (write one with `icl export`)")
    report = ImportReport()
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp)
        with tarfile.open(src_dir / RECORDS, "r:gz") as tar:
            tar.extractall(staged, filter="data")
        parts = _consecutive_parts(src_dir)
        if parts:
            _extract_whole_members(b"".join(p.read_bytes() for p in parts), staged)
            _unpack_checkpoints(staged)
        for run_dir in sorted(p for p in staged.iterdir() if p.is_dir()):
            if complete_only and not _is_complete(run_dir):
                report.partial.append(run_dir.name)
                continue
            if (parts and not (run_dir / "ckpt.pt").exists() and not _is_complete(run_dir)
                    and store.get(from_dict(RunConfig, read_json(run_dir / "config.json"))) is None):
                # its checkpoint was in a part that did not arrive: importing the records alone would claim a step
                # that no checkpoint can resume from
                log.warning("import: %s is incomplete and its checkpoint did not arrive whole; not imported",
                            run_dir.name)
                report.lost.append(run_dir.name)
                continue
            _merge(run_dir, store, report)
    return report


def _consecutive_parts(src_dir: Path) -> list[Path]:
    """checkpoints.tar.00, .01, ... up to the first gap (parts after a gap cannot be joined to what came before)."""
    found = {p.name[len(CHECKPOINT_PARTS):]: p for p in src_dir.glob(f"{CHECKPOINT_PARTS}*")}
    parts = []
    while f"{len(parts):02d}" in found:
        parts.append(found[f"{len(parts):02d}"])
    if len(parts) < len(found):
        log.warning("import: checkpoint parts after %s%02d are missing; later parts are ignored",
                    CHECKPOINT_PARTS, len(parts))
    return parts


def _extract_whole_members(data: bytes, dest: Path) -> None:
    """Extract the tar in `data` member by member; a member cut off by a missing last part is dropped whole."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        while True:
            member = None
            try:
                member = tar.next()
                if member is None:
                    return
                tar.extract(member, dest, filter="data")
            except (tarfile.ReadError, EOFError):
                log.warning("import: the checkpoint parts end inside an archive member (a part is missing); "
                            "the members that arrived whole are kept")
                if member is not None and member.isfile():
                    (dest / member.name).unlink(missing_ok=True)
                return


def _unpack_checkpoints(staged: Path) -> None:
    """Each run's ckpt.pt.gz becomes its ckpt.pt; one that does not decompress is dropped (its run counts as lost)."""
    for packed in staged.glob(f"*/{PACKED_CKPT}"):
        try:
            data = gzip.decompress(packed.read_bytes())
        except (OSError, EOFError) as err:
            log.warning("import: %s does not decompress (%s); dropped", packed.relative_to(staged), err)
        else:
            (packed.parent / "ckpt.pt").write_bytes(data)
        packed.unlink()


def _is_complete(run_dir: Path) -> bool:
    return (run_dir / "status.json").exists() and read_json(run_dir / "status.json").get("state") == "complete"


def _merge(run_dir: Path, store: RunStore, report: ImportReport) -> None:
    cfg = from_dict(RunConfig, read_json(run_dir / "config.json"))
    incoming_complete = _is_complete(run_dir)
    if store.get(cfg) is not None:  # complete here (also checks that the directory holds this config)
        report.skipped.append(run_dir.name)
        return
    target = store.path(cfg)
    if target.name != run_dir.name:
        raise StoreError(f"import: {run_dir.name}/config.json hashes to {target.name}; the export is corrupt")
    if target.exists() and not incoming_complete:
        # a stored state without its checkpoint (records copied without the ignored ckpt.pt, say) resumes from step 0
        resumable = (target / "status.json").exists() and (target / "ckpt.pt").exists()
        here = read_json(target / "status.json").get("step", 0) if resumable else 0
        there = read_json(run_dir / "status.json").get("step", 0) if (run_dir / "status.json").exists() else 0
        if not (run_dir / "ckpt.pt").exists() or there <= here:
            report.skipped.append(run_dir.name)  # without its checkpoint, or not further than ours: adds nothing
            return
    existed = target.exists()
    if existed:
        store.open(cfg)  # raises StoreError if the directory holds another config
    target.parent.mkdir(parents=True, exist_ok=True)
    incoming = target.with_name(f".{target.name}.import")
    shutil.rmtree(incoming, ignore_errors=True)
    shutil.copytree(run_dir, incoming)
    if existed:
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        incoming.rename(target)
        shutil.rmtree(old)
        report.updated.append(run_dir.name)
    else:
        incoming.rename(target)
        report.added.append(run_dir.name)
