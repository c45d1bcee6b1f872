"""Run a list of RunConfigs: inline, on the local machine's GPUs, or on SLURM, through submitit.

    sweep.run(experiments.results_grid("paper"), executor="inline", concurrency=8)   # one GPU: the fastest way
    sweep.run(experiments.results_grid("paper"), executor="local", jobs_per_gpu=1, concurrency=8)   # every GPU

Runs already complete in the store are skipped, duplicates (same config hash) are run once, and the remaining configs
are dealt round-robin into slots: `inline` trains them one after another in this process; `local` starts one submitit
LocalExecutor job per slot, `jobs_per_gpu` slots per visible GPU, slot i on GPU i % n_gpus, each job pinned to its GPU
through CUDA_VISIBLE_DEVICES by physical id (`local_slots`, `physical_gpus`: started under CUDA_VISIBLE_DEVICES=2,5, the
jobs get 2 and 5, not 0 and 1). On a CPU-only machine, `cpu_jobs` slots run on CPU; on a two-GPU host,
`executor="local", concurrency=8` trains 8 runs on each GPU. `slurm` submits a job array with `runs_per_job` runs per
element through submitit's SlurmExecutor, one GPU each. `time_limit_s` makes every job checkpoint and stop its
unfinished runs after that many seconds (a sweep inside a time-boxed call; started again, it resumes them).
`concurrency` > 1 makes every job (and `inline`) train that many runs at once on its GPU, one CUDA stream each
(`icllib.runs.interleave.train_many`): small runs share a GPU faster this way than one after another, and much
faster than as one process each, which the GPU time-slices (kernels/README.md, "Sharing one GPU"). Every job trains
through `icllib.training.train.train`, so a killed sweep resumes from the runs' checkpoints when started again.
We write no scheduler of our own.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from icllib.config import ConfigError, RunConfig, config_hash
from icllib.paths import RESULTS_DIR
from icllib.store import Run, RunStore

log = logging.getLogger(__name__)

EXECUTORS = ("inline", "local", "slurm")


class SweepError(RuntimeError):
    """A sweep could not start (missing submitit, no GPUs where GPUs were asked for, ...)."""


@dataclass
class SweepResult:
    """What a sweep did: the runs it found complete, the runs it trained, and the jobs it started."""

    skipped: list[str]
    trained: list[str]
    jobs: int


def pending(configs: list[RunConfig], store: RunStore) -> list[RunConfig]:
    """Configs not yet complete in `store`, without duplicates (first occurrence kept, input order)."""
    seen: set[str] = set()
    todo = []
    for cfg in configs:
        h = config_hash(cfg)
        if h in seen or store.get(cfg) is not None:
            continue
        seen.add(h)
        todo.append(cfg)
    return todo


def deal(configs: list[RunConfig], n_slots: int) -> list[list[RunConfig]]:
    """Round-robin `configs` into at most `n_slots` non-empty slots."""
    slots: list[list[RunConfig]] = [[] for _ in range(max(1, n_slots))]
    for i, cfg in enumerate(configs):
        slots[i % len(slots)].append(cfg)
    return [s for s in slots if s]


def train_slot(
    configs: list[RunConfig], store_root: str, device: str | None = None, imports: tuple[str, ...] = (),
    concurrency: int = 1,
    time_limit_s: float | None = None,
    progress: bool | None = False,
) -> list[str]:
    """The body of one job: train each config in turn (resuming partial runs); returns their hashes.

    `imports` names modules to import first, so tasks or mixers registered outside icllib exist in the job.
    `concurrency` > 1 trains that many runs at once through `train_many` (one CUDA stream each); `time_limit_s`
    (with it) checkpoints and stops every run still training after that many seconds. Returns the hashes of the
    runs this job completed. `progress` (None: when stderr is a terminal): `train_many`'s bar and per-run lines
    (through `train_many` even at `concurrency` 1).
    """
    import importlib

    from icllib.runs.interleave import train_many
    from icllib.training.train import train

    for module in imports:
        importlib.import_module(module)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    store = RunStore(store_root)
    if progress is None:
        progress = sys.stderr.isatty()
    if concurrency > 1 or time_limit_s is not None or progress:
        runs = train_many(configs, store, device=device, concurrency=concurrency, time_limit_s=time_limit_s,
                          progress=progress)
        return [config_hash(cfg) for cfg, run in zip(configs, runs, strict=True) if run.complete]
    done = []
    for cfg in configs:
        train(cfg, store, device=device, progress=False)
        done.append(config_hash(cfg))
    return done


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        msg = "executor: 'local' and 'slurm' need submitit; install it with `pip install icllib[sweep]`"
        raise SweepError(msg) from None
    return submitit


def run(
    configs: list[RunConfig],
    executor: str = "inline",
    *,
    store: RunStore | None = None,
    jobs_per_gpu: int = 1,
    runs_per_job: int = 1,
    gpus: int | None = None,
    cpu_jobs: int = 1,
    folder: str | Path | None = None,
    timeout_min: int = 240,
    slurm: dict[str, Any] | None = None,
    wait: bool = True,
    imports: tuple[str, ...] = (),
    concurrency: int = 1,
    time_limit_s: float | None = None,
    progress: bool | None = False,
) -> SweepResult:
    """Train every config of `configs` that is not complete in `store` (module docstring).

    `progress` (None: when stderr is a terminal): `inline` shows `train_many`'s bar and one line per run finished;
    `local` and `slurm` (waiting) write one line per job finished to stderr, as its result comes back."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor: {executor!r} is not one of {', '.join(EXECUTORS)}")
    if min(jobs_per_gpu, cpu_jobs, runs_per_job, concurrency) < 1:
        raise ConfigError("jobs_per_gpu / cpu_jobs / runs_per_job / concurrency: must be >= 1")
    store = store or RunStore()
    todo = pending(configs, store)
    skipped = sorted({config_hash(c) for c in configs} - {config_hash(c) for c in todo})
    log.info("sweep: %d configs, %d already complete, %d to train", len(configs), len(skipped), len(todo))
    if not todo:
        return SweepResult(skipped=skipped, trained=[], jobs=0)
    if executor == "inline":
        trained = train_slot(todo, str(store.root), None, imports, concurrency, time_limit_s, progress)
        return SweepResult(skipped=skipped, trained=trained, jobs=0)

    submitit = _submitit()
    folder = Path(folder) if folder is not None else RESULTS_DIR / "tmp" / "submitit"
    if executor == "local":
        jobs = _submit_local(submitit, todo, store, folder, jobs_per_gpu, gpus, cpu_jobs, timeout_min, imports,
                             concurrency, time_limit_s)
    else:
        jobs = _submit_slurm(submitit, todo, store, folder, runs_per_job, timeout_min, slurm or {}, imports,
                             concurrency, time_limit_s)
    if not wait:
        return SweepResult(skipped=skipped, trained=[], jobs=len(jobs))
    trained = wait_jobs(jobs, {config_hash(c): c.name for c in todo},
                        sys.stderr.isatty() if progress is None else progress)
    return SweepResult(skipped=skipped, trained=trained, jobs=len(jobs))


def wait_jobs(jobs: list[Any], names: dict[str, str], progress: bool) -> list[str]:
    """The hashes of the runs the `jobs` completed, waiting for each in turn (a job's exception is raised here).
    One line per job finished (jobs done, job id, runs completed and their names): on stderr through tqdm with
    `progress`, in the log (INFO) without."""
    from tqdm.auto import tqdm

    trained: list[str] = []
    for i, job in enumerate(jobs, 1):
        done = job.result()
        trained += done
        shown = ", ".join(names.get(h, h) for h in done[:8]) + (f", ... ({len(done) - 8} more)" if len(done) > 8
                                                                 else "")
        line = f"[{i}/{len(jobs)}] job {getattr(job, 'job_id', '?')} finished: {len(done)} run(s) complete" + (
            f": {shown}" if done else "")
        if progress:
            tqdm.write(line, file=sys.stderr)
        else:
            log.info("%s", line)
    return trained


def local_slots(configs: list[RunConfig], n_gpus: int, jobs_per_gpu: int,
                cpu_jobs: int) -> list[tuple[list[RunConfig], int | None]]:
    """The jobs of `executor="local"`: each job's configs and the torch index of its GPU (None: a CPU job).

    `n_gpus * jobs_per_gpu` slots (`cpu_jobs` without GPUs), dealt round-robin; slot i goes to GPU i % n_gpus, so the
    GPUs are filled evenly. Pure, so that the assignment is tested without GPUs.
    """
    if n_gpus < 1:
        return [(slot, None) for slot in deal(configs, cpu_jobs)]
    return [(slot, i % n_gpus) for i, slot in enumerate(deal(configs, n_gpus * jobs_per_gpu))]


def physical_gpus(n: int, visible: str | None = None) -> list[str]:
    """The physical ids (what CUDA_VISIBLE_DEVICES takes) of torch's first `n` CUDA devices in this process.

    `visible` is this process's CUDA_VISIBLE_DEVICES (read from the environment when None and set): torch device i is
    its i-th entry (an index, or a GPU-/MIG- UUID), so under CUDA_VISIBLE_DEVICES=2,5 device 0 is physical GPU 2.
    Unset, device i is physical GPU i. A job must be given the physical id: a child's CUDA_VISIBLE_DEVICES is read
    against the whole machine, not against its parent's.
    """
    if visible is None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(i) for i in range(n)]
    ids = [s.strip() for s in visible.split(",") if s.strip()]
    if len(ids) < n:
        raise SweepError(f"CUDA_VISIBLE_DEVICES={visible!r} names {len(ids)} GPU(s) but torch sees {n}")
    return ids[:n]


def local_job(gpu: str | None, body: Callable[..., list[str]], *args: Any) -> list[str]:
    """The entry point of one local submitit job: pin it to physical GPU `gpu`, then run `body(*args)`.

    submitit's LocalExecutor sets CUDA_VISIBLE_DEVICES for integer GPU ids only (`visible_gpus`); a UUID id (a MIG
    slice, or a parent started with CUDA_VISIBLE_DEVICES=GPU-...) is set here, before anything in the job touches
    CUDA. Setting it again for integer ids is harmless and keeps one path. `gpu=None` (a CPU job) keeps the
    CUDA_VISIBLE_DEVICES="" that submitit gives jobs without GPUs.
    """
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log.info("local job (submitit id %s): CUDA_VISIBLE_DEVICES=%r", os.environ.get("SUBMITIT_LOCAL_JOB_ID", "?"),
             os.environ.get("CUDA_VISIBLE_DEVICES"))
    return body(*args)


def probe_slot(configs: list[RunConfig], *_: Any) -> list[str]:
    """A stand-in for `train_slot` in tests of the job-to-GPU assignment: returns the CUDA_VISIBLE_DEVICES the job
    saw (one entry per config, "<unset>" if unset) and trains nothing. Module-level: submitit pickles by reference."""
    return [os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")] * len(configs)


def _submit_local(submitit, todo, store, folder, jobs_per_gpu, gpus, cpu_jobs, timeout_min, imports,
                  concurrency, time_limit_s, body: Callable[..., list[str]] = train_slot) -> list[Any]:
    """One LocalExecutor job per slot of `local_slots`, each pinned to its physical GPU (`physical_gpus`)."""
    available = torch.cuda.device_count()
    n_gpus = available if gpus is None else gpus
    if n_gpus > available:
        raise SweepError(f"gpus: {n_gpus} requested but {available} visible on this machine")
    ids = physical_gpus(n_gpus)
    jobs = []
    for slot, gpu in local_slots(todo, n_gpus, jobs_per_gpu, cpu_jobs):
        ex = submitit.LocalExecutor(folder=folder)
        if gpu is None:
            ex.update_parameters(timeout_min=timeout_min)  # gpus_per_node 0: submitit sets CUDA_VISIBLE_DEVICES=""
            device, physical = "cpu", None
        elif ids[gpu].isdigit():
            ex.update_parameters(timeout_min=timeout_min, gpus_per_node=1, visible_gpus=(int(ids[gpu]),))
            device, physical = "cuda", ids[gpu]
        else:  # a UUID: visible_gpus takes ints only; `local_job` sets it in the job
            ex.update_parameters(timeout_min=timeout_min)
            device, physical = "cuda", ids[gpu]
        jobs.append(ex.submit(local_job, physical, body, slot, str(store.root), device, imports, concurrency,
                              time_limit_s))
        where = "CPU" if gpu is None else f"GPU {gpu} (CUDA_VISIBLE_DEVICES={physical})"
        log.info("local job %s: %d runs on %s", jobs[-1].job_id, len(slot), where)
    return jobs


def slurm_executor(submitit, folder: Path, timeout_min: int, options: dict[str, Any]) -> Any:
    """A SlurmExecutor with one GPU per job; `options` are submitit slurm parameters (partition, account, ...)."""
    ex = submitit.SlurmExecutor(folder=folder)
    params = {"time": timeout_min, "gpus_per_node": 1, "ntasks_per_node": 1, "cpus_per_task": 8}
    ex.update_parameters(**{**params, **options})
    return ex


def _submit_slurm(submitit, todo, store, folder, runs_per_job, timeout_min, options, imports,
                  concurrency, time_limit_s) -> list[Any]:
    slots = deal(todo, -(-len(todo) // runs_per_job))  # a job array, `runs_per_job` runs per element
    ex = slurm_executor(submitit, folder, timeout_min, options)
    n = len(slots)
    return ex.map_array(train_slot, slots, [str(store.root)] * n, ["cuda"] * n, [imports] * n, [concurrency] * n,
                        [time_limit_s] * n)


def results(configs: list[RunConfig], store: RunStore | None = None) -> list[Run | None]:
    """The stored run of each config (None where not complete), in order."""
    store = store or RunStore()
    return [store.get(c) for c in configs]
