"""Several runs trained at once in one process: `train_many` interleaves them step by step, each on its own CUDA
stream, so one run's small kernels fill the GPU while another's host side samples its next batch. Each run is the
trainer's own loop (`icllib.training.train.run_steps`) and is stored exactly as by `train`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from icllib.config import RunConfig
from icllib.store import Run, RunStore, StoreError
from icllib.training.train import TrainingDiverged, resolve_device, run_steps
from icllib.training.validate import check_run

log = logging.getLogger(__name__)


def train_many(
    configs: list[RunConfig],
    store: RunStore | None = None,
    *,
    device: str | torch.device | None = None,
    concurrency: int = 8,
    step_mode: str | None = None,
    time_limit_s: float | None = None,
    read_ahead: bool = True,
    progress: bool | None = None,
) -> list[Run]:
    """Train several runs at once in this process: up to `concurrency` of them interleave step by step, each on
    its own CUDA stream, so one run's small kernels fill the GPU while another's host side samples its next batch
    (a rolling pool: a finished run's place goes to the next config). Every run is stored exactly as by `train`.

    `read_ahead`: sample each run's next batch in a pool of worker threads (icllib/training/batches.py; same batches).

    Differences from `train` one after another: dropout masks come from one shared global RNG, so runs with
    dropout > 0 depend on the interleaving; runs without dropout follow the same trajectories.

    Runs stopped part-way start first, the furthest along first; the others follow in the order given.

    `time_limit_s`: after that many seconds every active run checkpoints at its current step and stops (status
    `running`, resumable), and no further run starts: for jobs with a hard wall-clock limit. The first
    `concurrency` runs always start and train at least one step.

    A run that diverges (or failed before) is logged and left `failed` in the store; the others go on.

    `progress`: a tqdm bar on stderr over the run-steps still to go (runs done, run-steps/s, ETA) and one line per
    run finished (name, hash, final state, step, seconds); None: on when stderr is a terminal. Without the bar the
    per-run lines go to the log (INFO).
    """
    deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
    store = store or RunStore()
    device = resolve_device(device)
    for cfg in configs:  # every config before the first run starts: a bad one writes nothing
        check_run(cfg, device=str(device))
    # a run's directory is created only when it starts: runs never started (time limit) leave nothing behind
    runs = [store.get(cfg) or Run(store.path(cfg), cfg) for cfg in configs]
    # runs already under way first, furthest along first (stable otherwise): a time-sliced sweep finishes them
    # before it starts new ones, so fewer checkpoints have to be carried to the next machine
    todo = sorted((item for item in zip(configs, runs, strict=True) if not item[1].complete),
                  key=lambda item: -item[1].status().get("step", 0))
    queue = [cfg for cfg, _ in todo]
    meter = _Progress(todo, sys.stderr.isatty() if progress is None else progress)
    # host threads that sample each run's next batch while this thread launches steps (icllib/training/batches.py)
    workers = min(concurrency, os.cpu_count() or 1) if read_ahead else 0
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="icllib-batches") if workers else None
    try:
        _interleave(queue, store, device, concurrency=concurrency, deadline=deadline, step_mode=step_mode, pool=pool,
                    meter=meter)
    finally:
        meter.close()
        if pool is not None:
            pool.shutdown(wait=True)
    return runs


def _interleave(
    queue: list[RunConfig],
    store: RunStore,
    device: torch.device,
    *,
    concurrency: int,
    deadline: float | None,
    step_mode: str | None,
    pool: ThreadPoolExecutor | None,
    meter: _Progress,
) -> None:
    """`train_many`'s rolling pool: start queued runs (popped from `queue`) while there is room, then advance every
    active run a step, each on its own CUDA stream (None on the CPU). Arguments as `train_many`'s; `meter` is told
    every step and every run that ends."""
    active: list[tuple[Iterator[int], torch.cuda.Stream | None, Run]] = []
    throughput = _Throughput()
    started = 0
    while queue or active:
        while queue and len(active) < max(1, concurrency):
            if started >= concurrency and deadline is not None and time.monotonic() >= deadline:
                queue.clear()  # out of time: start nothing more
                break
            cfg = queue.pop(0)
            run = store.open(cfg)
            started += 1
            stream = torch.cuda.Stream(device) if device.type == "cuda" else None
            meter.start(run)
            active.append((run_steps(cfg, run, device, progress=False, step_mode=step_mode, deadline=deadline,
                                     pool=pool), stream, run))
        for item in list(active):
            gen, stream, run = item
            with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                try:
                    step = next(gen, None)
                    if step is None:
                        active.remove(item)
                        meter.finish(run)
                    else:
                        meter.step(run, step)
                except (TrainingDiverged, StoreError) as e:  # failed, or locked by another trainer: others go on
                    log.error("%s", e)
                    active.remove(item)
                    meter.finish(run, error=e)
        throughput.tick(len(active))


class _Progress:
    """`train_many`'s progress: a tqdm bar over the run-steps still to go (`enabled`), and one line per run that
    ends (on the bar, or in the log without one)."""

    def __init__(self, todo: list[tuple[RunConfig, Run]], enabled: bool) -> None:
        self.total_runs, self.done = len(todo), 0
        self.steps: dict[str, int] = {}  # run hash -> last step seen
        self.t0: dict[str, float] = {}  # run hash -> when it started here
        left = sum(max(0, cfg.train.steps - run.status().get("step", 0)) for cfg, run in todo)
        self.bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=left, unit="run-step", desc="train_many", dynamic_ncols=True, file=sys.stderr)
            self._postfix()

    def _postfix(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"runs {self.done}/{self.total_runs}", refresh=False)

    def start(self, run: Run) -> None:
        self.steps[run.hash] = run.status().get("step", 0)
        self.t0[run.hash] = time.monotonic()

    def step(self, run: Run, step: int) -> None:
        advanced = max(0, step - self.steps.get(run.hash, step))
        self.steps[run.hash] = step
        if self.bar is not None and advanced:
            self.bar.update(advanced)

    def finish(self, run: Run, error: BaseException | None = None) -> None:
        self.done += 1
        status = run.status()
        seconds = time.monotonic() - self.t0.get(run.hash, time.monotonic())
        state = status.get("state", "?") if error is None else f"{status.get('state', '?')} ({type(error).__name__})"
        line = (f"[{self.done}/{self.total_runs}] {run.cfg.name} {run.hash}: {state} at step "
                f"{status.get('step', self.steps.get(run.hash, 0))}/{run.cfg.train.steps} in {seconds:.1f}s")
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
            self._postfix()
            self.bar.refresh()
        else:
            log.info("%s", line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Throughput:
    """Logs `train_many`'s run-steps per second and the host's share of busy CPU time, once a minute: a host near
    100% busy means the runs are host-bound (more concurrency will not help)."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s, self.steps = every_s, 0
        self.t0, self.cpu0 = time.monotonic(), time.process_time()

    def tick(self, active: int) -> None:
        self.steps += active
        wall = time.monotonic() - self.t0
        if wall >= self.every_s:
            cpu = time.process_time() - self.cpu0
            log.info("train_many: %d active runs, %.0f run-steps/s, host CPU %.0f%% of wall", active,
                     self.steps / wall, 100 * cpu / wall)
            self.steps, self.t0, self.cpu0 = 0, time.monotonic(), time.process_time()
