"""Move runs between stores (a GPU machine and a laptop, a cluster and a clone) as a few bounded files.

    export_runs(store, "paper", out_dir)                 # out_dir/records.tgz: every run's files but checkpoints
    export_runs(store, "paper", out_dir, checkpoints=True, part_mib=15)
                                                         # + out_dir/checkpoints.tar.00, .01, ...: the ckpt.pt of
                                                         #   every incomplete run, gzipped one by one (8-17% smaller),
                                                         #   split into parts of <= part_mib
    import_runs(out_dir, store)                          # -> ImportReport(added, updated, skipped, not_imported)
    import_runs(out_dir, store, complete_only=True)      # into a git checkout's results/: leave partial runs out

Complete runs need no checkpoint (`status.json` says complete; the figures read the JSON files), so records stay
small enough to commit. Incomplete runs travel with their checkpoint so that training resumes where it stopped.

Importing is all or nothing for what is wrong with the archive: every member, run and checkpoint is checked before
anything is written to the store, and a problem (a member outside `<run>/<file>`, a config that does not hash to its
directory, a checkpoint without its run, a truncated records.tgz or part, a checkpoint that the safe loader refuses)
raises StoreError with the file to copy again or re-export, leaving the store untouched. What the archive is allowed
to lack (a checkpoint part left behind by a file limit, partial runs under `complete_only`) costs only the runs
concerned, each listed in `ImportReport.not_imported` with the reason. Importing never replaces a complete run, never
takes a run directory that holds another config (StoreError, also before anything is written), holds the lock of
every run it writes (so a run being trained here is refused, not swapped under its trainer), and writes each run
into a temporary directory that is renamed into place, so an interrupted import leaves whole runs.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from icllib.config import ConfigError, RunConfig, config_hash, from_dict
from icllib.store import STATES, Run, RunStore, StoreError, load_checkpoint_file, read_json

log = logging.getLogger(__name__)

RECORDS = "records.tgz"
CHECKPOINT_PARTS = "checkpoints.tar."
PACKED_CKPT = "ckpt.pt.gz"  # a checkpoint inside the parts; exports before 2026-12-03 hold plain ckpt.pt members
_END_OF_ARCHIVE = bytes(1024)  # two zero blocks: how a tar written to the end finishes


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)  # runs new to the store
    updated: list[str] = field(default_factory=list)  # incomplete runs replaced by a further (or complete) state
    skipped: list[str] = field(default_factory=list)  # complete here already
    lost: list[str] = field(default_factory=list)  # incomplete runs whose checkpoint part did not arrive
    partial: list[str] = field(default_factory=list)  # incomplete runs left out by `complete_only`
    not_imported: dict[str, str] = field(default_factory=dict)  # every run of `lost` and `partial`: hash -> why


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
    records travel with the working tree but its git-ignored checkpoint does not.

    Everything is checked first (StoreError, nothing written); then the runs are written one by one."""
    src_dir = Path(src_dir)
    if not (src_dir / RECORDS).is_file():
        raise StoreError(f"import: {src_dir} holds no {RECORDS} (write one with `icl export`)")
    report = ImportReport()
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp)
        configs = _stage_records(src_dir / RECORDS, staged)
        missing_ckpt = _stage_checkpoints(src_dir, staged, configs)  # None: no parts; else why a checkpoint is absent
        plan: list[tuple[Path, RunConfig, str]] = []
        for name, cfg in sorted(configs.items()):
            run_dir = staged / name
            complete = _is_complete(run_dir)
            if complete_only and not complete:
                report.partial.append(name)
                report.not_imported[name] = "incomplete, left out by --complete-only"
                continue
            if (missing_ckpt is not None and not (run_dir / "ckpt.pt").exists() and not complete
                    and store.get(cfg) is None):
                # its checkpoint was in a part that did not arrive: importing the records alone would claim a step
                # that no checkpoint can resume from
                report.lost.append(name)
                report.not_imported[name] = ("incomplete, and its checkpoint did not arrive: "
                                             + (missing_ckpt or "it was exported without one (left out under "
                                                "--max-mib, or it had none)"))
                continue
            plan.append((run_dir, cfg, _plan_merge(run_dir, cfg, store)))  # raises before anything is written
        with contextlib.ExitStack() as locks:
            for _, cfg, action in plan:  # a run being trained here is not swapped under its trainer (StoreError)
                if action != "skip":
                    locks.enter_context(Run(store.path(cfg), cfg).lock())
            for run_dir, cfg, action in plan:
                if action == "skip":
                    report.skipped.append(run_dir.name)
                else:
                    _write_run(run_dir, store.path(cfg))
                    (report.updated if action == "update" else report.added).append(run_dir.name)
    for name, why in report.not_imported.items():  # `icl import` prints these; a warning would say it twice
        log.info("import: %s not imported: %s", name, why)
    return report


# ----------------------------------------------------------------------------------------------------------------
# reading and checking the archive (nothing is written to the store here)


def _corrupt(what: str, why: object, fix: str) -> StoreError:
    return StoreError(f"import: {what} is truncated or corrupt ({why}); {fix}")


def _run_and_file(name: str, source: str) -> tuple[str, str]:
    """The (run, file) of an archive member named `<run>/<file>`; any other name (absolute, `..`, deeper, hidden)
    raises StoreError: an export writes no such member, and extracting it could write outside the store."""
    path = PurePosixPath(name)
    if (path.is_absolute() or len(path.parts) != 2 or "\\" in name
            or any(part in (".", "..") or part.startswith(".") for part in path.parts)):
        raise StoreError(f"import: {source} holds a member named {name!r}, not <run>/<file>; it was not written by "
                         "`icl export` or is damaged (export again); nothing was imported")
    return path.parts[0], path.parts[1]


def _tar_members(data: bytes) -> tuple[list[tuple[tarfile.TarInfo, bytes | None]], bool]:
    """Every member of the tar in `data` with its bytes (None for non-files), and whether the tar ends properly; a
    member whose data is cut off is left out. Read errors past the start mean the data stops early."""
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        try:
            while (member := tar.next()) is not None:
                fileobj = tar.extractfile(member) if member.isfile() else None
                members.append((member, fileobj.read() if fileobj is not None else None))
        except (tarfile.ReadError, EOFError):
            return members, False
        # tarfile stops quietly at a header it cannot read; only the end-of-archive blocks mean "all of it"
        return members, data[tar.offset : tar.offset + len(_END_OF_ARCHIVE)] == _END_OF_ARCHIVE


def _stage_records(path: Path, staged: Path) -> dict[str, RunConfig]:
    """Check records.tgz whole and write its runs under `staged`; returns each run's config by directory name."""
    fix = f"copy {path.name} again from where it was exported, or export again"
    try:
        members, whole = _tar_members(gzip.decompress(path.read_bytes()))  # the gzip CRC covers every byte
    except (OSError, EOFError, zlib.error, tarfile.TarError) as e:
        raise _corrupt(str(path), e, fix) from None
    if not whole:
        raise _corrupt(str(path), "the tar inside ends early", fix)
    seen: set[tuple[str, str]] = set()
    for member, data in members:
        if member.isdir() and len(PurePosixPath(member.name).parts) == 1 and not member.name.startswith((".", "/")):
            continue  # a run directory's own entry (harmless; `icl export` writes none)
        run, name = _run_and_file(member.name, RECORDS)
        if data is None:
            raise StoreError(f"import: {RECORDS} member {member.name} is not a regular file; export again")
        if (run, name) in seen:
            raise StoreError(f"import: {RECORDS} holds {member.name} twice; export again")
        seen.add((run, name))
        (staged / run).mkdir(exist_ok=True)
        (staged / run / name).write_bytes(data)
    return {run_dir.name: _check_run(run_dir) for run_dir in sorted(staged.iterdir())}


def _check_run(run_dir: Path) -> RunConfig:
    """The config of a staged run, after checking that it parses and hashes to the directory name and that the
    run's JSON files parse; StoreError otherwise."""
    where = f"{RECORDS}: {run_dir.name}"
    if not (run_dir / "config.json").exists():
        raise StoreError(f"import: {where} has no config.json; export again")
    for path in sorted(run_dir.iterdir()):
        if path.suffix not in (".json", ".jsonl"):
            continue
        try:
            text = path.read_text()
            for line in [text] if path.suffix == ".json" else filter(None, text.splitlines()):
                json.loads(line)
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise StoreError(f"import: {where}/{path.name} does not parse ({' '.join(str(e).split())}); "
                             "export again") from None
    try:
        cfg = from_dict(RunConfig, read_json(run_dir / "config.json"))
    except ConfigError as e:
        raise StoreError(f"import: {where}/config.json is not a run config ({e}); export again") from None
    if config_hash(cfg) != run_dir.name:
        raise StoreError(f"import: {where}/config.json hashes to {config_hash(cfg)}, not {run_dir.name}; the export "
                         "is corrupt (export again); nothing was imported")
    status = read_json(run_dir / "status.json") if (run_dir / "status.json").exists() else {"state": "new"}
    if not isinstance(status, dict) or status.get("state") not in STATES:
        raise StoreError(f"import: {where}/status.json is not a run status ({str(status)[:80]}); export again")
    return cfg


def _parts(src_dir: Path) -> tuple[list[Path], dict[str, Path]]:
    """checkpoints.tar.00, .01, ... up to the first gap (parts after a gap cannot be joined to what came before),
    and every part found by its suffix."""
    found = {p.name[len(CHECKPOINT_PARTS):]: p for p in src_dir.glob(f"{CHECKPOINT_PARTS}*")}
    parts: list[Path] = []
    while f"{len(parts):02d}" in found:
        parts.append(found[f"{len(parts):02d}"])
    return parts, found


def _stage_checkpoints(src_dir: Path, staged: Path, configs: dict[str, RunConfig]) -> str | None:
    """Check the checkpoint parts and write each whole checkpoint as `staged/<run>/ckpt.pt`.

    Returns None when there are no parts (records only: nothing was meant to come), "" when every part arrived,
    else why some checkpoints are missing (a part left behind); a part shorter than the others or a last part that
    does not end the archive is truncated, and any checkpoint that does not decompress, belongs to no run of the
    records, or that the safe loader refuses raises StoreError (the payload of a crafted pickle never runs). A lone
    part .00 that does not end the archive cannot be told from one whose successors were left behind: its runs are
    reported lost rather than the part named truncated."""
    parts, found = _parts(src_dir)
    if not found:
        return None
    fix = "copy the checkpoints.tar.* parts again from where they were exported, or export again"
    sizes = [p.stat().st_size for p in parts]
    for part, size in zip(parts[:-1], sizes[:-1], strict=False):
        if size != sizes[0]:  # an export cuts every part but the last at the same size
            raise _corrupt(str(part), f"{size} bytes where checkpoints.tar.00 has {sizes[0]}", fix)
    try:
        members, whole = _tar_members(b"".join(p.read_bytes() for p in parts)) if parts else ([], False)
    except tarfile.TarError as e:  # the first header does not read
        raise _corrupt(str(parts[0]), e, fix) from None
    missing = ""
    if len(parts) < len(found):
        missing = f"{CHECKPOINT_PARTS}{len(parts):02d} is missing, so the parts after it cannot be read"
    elif not whole:
        if len(parts) > 1 and sizes[-1] < sizes[0]:  # the export's short last part, yet the archive does not end
            raise _corrupt(str(parts[-1]), "the checkpoint archive ends inside it", fix)
        missing = f"the parts end inside the archive: {CHECKPOINT_PARTS}{len(parts):02d} or later is missing"
    if missing:
        log.warning("import: %s; only the checkpoints that arrived whole are imported", missing)
    seen: set[str] = set()
    for member, data in members:
        run, name = _run_and_file(member.name, "the checkpoint parts")
        if data is None or name not in (PACKED_CKPT, "ckpt.pt"):
            raise StoreError(f"import: the checkpoint parts hold {member.name}, not a checkpoint; export again")
        if run not in configs:
            raise StoreError(f"import: the checkpoint parts hold {member.name}, but {RECORDS} has no run {run}; "
                             f"they come from different exports (copy both from the same one); nothing was imported")
        if run in seen:
            raise StoreError(f"import: the checkpoint parts hold two checkpoints of run {run}; export again")
        seen.add(run)
        if name == PACKED_CKPT:
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError, zlib.error) as e:
                raise _corrupt(f"{member.name} in the checkpoint parts", e, fix) from None
        try:  # it must load without running any code in it, and be this run's (a checkpoint records its run)
            load_checkpoint_file(data, name=f"{member.name} in the checkpoint parts", expect_hash=run)
        except StoreError as e:
            why = str(e).split("; ")[0]  # the loader's remedy is for a stored file; this one is not stored yet
            raise StoreError(f"import: {why}; nothing was imported (export again from a store you trust)") from None
        (staged / run / "ckpt.pt").write_bytes(data)
    return missing


def _is_complete(run_dir: Path) -> bool:
    return (run_dir / "status.json").exists() and read_json(run_dir / "status.json").get("state") == "complete"


# ----------------------------------------------------------------------------------------------------------------
# merging into the store


def _plan_merge(run_dir: Path, cfg: RunConfig, store: RunStore) -> str:
    """"skip", "add" or "update" for one checked run; StoreError when the store's directory holds another config or
    is unreadable. Reads the store only."""
    if store.get(cfg) is not None:  # complete here (also checks that the directory holds this config)
        return "skip"
    target = store.path(cfg)
    if not target.exists():
        return "add"
    if not _is_complete(run_dir):
        # a stored state without its checkpoint (records copied without the ignored ckpt.pt, say) resumes from step 0
        resumable = (target / "status.json").exists() and (target / "ckpt.pt").exists()
        here = read_json(target / "status.json").get("step", 0) if resumable else 0
        there = read_json(run_dir / "status.json").get("step", 0) if (run_dir / "status.json").exists() else 0
        if not (run_dir / "ckpt.pt").exists() or there <= here:
            return "skip"  # without its checkpoint, or not further than ours: adds nothing
    return "update"


def _write_run(run_dir: Path, target: Path) -> None:
    """Put the staged `run_dir` at `target` through a temporary sibling and renames, so a reader (or an interrupted
    import) sees the old run or the new one, never a mix."""
    target.parent.mkdir(parents=True, exist_ok=True)
    incoming = target.with_name(f".{target.name}.import")
    shutil.rmtree(incoming, ignore_errors=True)
    shutil.copytree(run_dir, incoming)
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        incoming.rename(target)
        shutil.rmtree(old)
    else:
        incoming.rename(target)
