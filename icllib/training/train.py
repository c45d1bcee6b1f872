"""The one training loop: notebooks, the CLI, sweeps and tests all call `train(cfg, store)`.

    run = load_or_train(cfg)              # the stored run if complete, else train it (resuming a partial one)
    run.read_json("eval.json")            # final error per position (and per length / layer when asked)

One step: curriculum → sample a batch on the host from the training generator → `step(batch)` (step.py: model →
task.loss → backward → clip → optimizer, eager or replayed as a CUDA graph) → lr schedule. `run_steps` is that loop as a
generator; `icllib.runs.interleave.train_many` uses it to interleave several runs on one GPU.

Every `eval_every` steps the model is evaluated on a fixed eval set (eval seed range); every `ckpt_every` steps
the model, optimizer, scheduler and RNG states are checkpointed atomically, with the metrics rows logged so far.
A run killed at any point and started again resumes from its last checkpoint and ends with exactly the metrics of
an uninterrupted run on CPU. A NaN/inf loss, a NaN/inf evaluation or non-finite parameters stop the run: the error
names the step, the store records `failed` with that step, and the last checkpoint (if any) stays the last good one:
parameters and optimizer state are checked finite before every checkpoint write, so no checkpoint holds a NaN.
Training a failed run again raises at once with the recorded error (it would diverge again at the same step).

Losses stay on the device between log points (no host synchronisation per step); they are checked for finiteness
when read back, so the reported step of a divergence is exact.

Reading order: `train` → `run_steps` (the run's lock) → `_loop` (the loop itself) → what it calls, in order:
`_started` (build the `_Parts`, fork the RNG, `_restore` the checkpoint), `_Trainer` (`step`, `log_row`, `save`,
`diverged`), `_finish` (final evaluation and provenance).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from icllib.batch import Batch
from icllib.config import RunConfig, config_hash
from icllib.models import ICLModel, build_model
from icllib.ops.selective_scan import last_backend
from icllib.repro import device_name, eval_generator, git_sha, make_generator, provenance, train_generator
from icllib.store import Run, RunStore
from icllib.tasks import Task, build_task
from icllib.training.batches import Batches
from icllib.training.curriculum import schedule
from icllib.training.evaluate import (
    Curve,
    diagnostic_curves,
    evaluate_batches,
    extrapolation,
    lens_probe,
    probe_layers,
    sample_eval_batches,
)
from icllib.training.step import EagerStep, make_step
from icllib.training.validate import check_run

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the message names the step."""


class MissingRunError(RuntimeError):
    """`load_or_train` found no stored run while training is switched off ($ICLLIB_STORED_ONLY=1)."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`None` → CUDA when available, else CPU. An explicitly requested but unavailable device raises."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: 'cuda' was requested but torch.cuda.is_available() is False")
    return device


def lr_lambda(cfg: RunConfig) -> Any:
    """Multiplier of the base lr at a step: linear warm-up, then constant or cosine decay to 0."""
    steps, warmup, kind = cfg.train.steps, cfg.train.warmup_steps, cfg.train.schedule

    def fn(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return fn


def build_optimizer(cfg: RunConfig, model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """Adam (the papers) or AdamW; fused kernels on CUDA."""
    cls = torch.optim.Adam if cfg.train.optimizer == "adam" else torch.optim.AdamW
    fused = {"fused": True} if device.type == "cuda" else {}
    return cls(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, **fused)


def eval_points(cfg: RunConfig) -> int:
    return cfg.eval.n_points or cfg.curriculum.points_end


def train(
    cfg: RunConfig,
    store: RunStore | None = None,
    *,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    stop_after: int | None = None,
    step_mode: str | None = None,
) -> Run:
    """Train `cfg` into `store` (default: the repository's results/) and return its Run.

    A complete run is returned as is; a partial one resumes from its checkpoint. `stop_after` ends the loop after
    that many steps of this call (for tests and time-sliced jobs) and leaves the run `running`. `step_mode`:
    "eager", "graph" (CUDA graphs, step.py) or None = auto (graph on CUDA, eager on CPU; $ICLLIB_STEP overrides).
    """
    check_run(cfg, device=None if device is None else str(device))  # before the store: a bad config writes nothing
    store = store or RunStore()
    run = store.open(cfg)
    if not run.complete:
        for _ in run_steps(cfg, run, resolve_device(device), progress=progress, stop_after=stop_after,
                           step_mode=step_mode):
            pass
    return run


def run_steps(
    cfg: RunConfig,
    run: Run,
    device: torch.device,
    *,
    progress: bool | None = None,
    stop_after: int | None = None,
    step_mode: str | None = None,
    deadline: float | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> Iterator[int]:
    """The training loop of one run as a generator (`_loop`: yields the step number after each step), holding the
    run's lock throughout: a second trainer of the same run, in this process or another, gets a one-line StoreError
    instead of interleaving its writes. `train` exhausts it; `icllib.runs.interleave.train_many` advances several
    at once. Arguments as `_loop`."""
    with run.lock():
        if not run.complete:  # another process may have finished it while we waited to start
            yield from _loop(cfg, run, device, progress=progress, stop_after=stop_after, step_mode=step_mode,
                             deadline=deadline, pool=pool)


def _loop(
    cfg: RunConfig,
    run: Run,
    device: torch.device,
    *,
    progress: bool | None = None,
    stop_after: int | None = None,
    step_mode: str | None = None,
    deadline: float | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> Iterator[int]:
    """The training loop of one run as a generator: yields the step number after each step (so
    `icllib.runs.interleave.train_many` can interleave runs); on return the run is complete, stopped on request
    (`stop_after` steps, or the `deadline` on time.monotonic() passed: a checkpoint is saved at the step reached),
    or raised."""
    _refuse_failed(cfg, run)
    total = cfg.train.steps
    with _started(cfg, run, device, step_mode, pool) as t:
        end = total if stop_after is None else min(total, t.state.step + stop_after)
        bar = _progress(total, t.state.step, progress)
        t.parts.model.train()
        while t.state.step < end:
            s = t.step()
            if deadline is not None and s < end and time.monotonic() >= deadline:
                end = s  # out of time: checkpoint here and stop, like stop_after
            if _is_log_point(cfg, s):
                _show(bar, cfg, t.log_row())
                if s % cfg.train.ckpt_every == 0 or s == total or s == end:
                    t.save()
                    run.write_metrics(t.state.rows)
                    run.set_status("running", step=s)
            elif s == end:  # stopped on request between log points: the unlogged losses go into the checkpoint
                t.state.pending = t.read_losses().tolist()
                t.save()
                run.set_status("running", step=s)
            yield s
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - t.started
    if t.state.step == total:  # else stopped early on request; resumable
        _finish(t, seconds)


def _is_log_point(cfg: RunConfig, s: int) -> bool:
    """Whether step `s` logs a metrics row: every log_every, eval_every and ckpt_every steps, and the last step."""
    train = cfg.train
    return s % train.log_every == 0 or s % train.eval_every == 0 or s % train.ckpt_every == 0 or s == train.steps


def _refuse_failed(cfg: RunConfig, run: Run) -> None:
    """A run recorded `failed` raises at once: from the same checkpoint and RNG state it would diverge again."""
    status = run.status()
    if status.get("state") == "failed":
        raise TrainingDiverged(
            f"{cfg.name}: run {run.hash} failed at step {status.get('step', '?')} ({status.get('error', 'no error')}"
            f"); change the config (e.g. train.lr) or delete {run.dir} to train it from step 0")


@contextlib.contextmanager
def _started(cfg: RunConfig, run: Run, device: torch.device, step_mode: str | None,
             pool: ThreadPoolExecutor | None) -> Iterator[_Trainer]:
    """The run's trainer (`_Trainer.start`), inside its own stream of torch's global RNG (forked, seeded with the
    run's seed, or restored from the checkpoint: dropout draws from it); a batch read ahead is dropped on exit."""
    parts = _Parts.build(cfg, device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        t = _Trainer.start(cfg, run, parts, device, step_mode, pool)
        try:
            yield t
        finally:
            t.batches.close()  # a batch read ahead must not outlive the run


@dataclass
class _Parts:
    """What a run trains with, built from its config alone: the task, the untrained model on the device, its
    optimizer and lr schedule, the training data generator (on the CPU: identical batches on every device) and the
    fixed eval set."""

    task: Task
    model: ICLModel
    opt: torch.optim.Optimizer
    sched: LambdaLR
    data_gen: torch.Generator
    eval_set: list[Batch]

    @classmethod
    def build(cls, cfg: RunConfig, device: torch.device) -> _Parts:
        task = build_task(cfg.task)
        model = build_model(cfg.model, task.io(), seed=cfg.seed).to(device)
        opt = build_optimizer(cfg, model, device)
        sched = LambdaLR(opt, lr_lambda(cfg))
        data_gen = train_generator(cfg.seed)
        eval_set = sample_eval_batches(task, eval_points(cfg), cfg.eval.n_examples, eval_generator(cfg.seed),
                                       batch_size=cfg.eval.batch_size)
        return cls(task, model, opt, sched, data_gen, eval_set)


@dataclass
class _State:
    """What a checkpoint holds besides the model: enough to continue bit for bit."""

    step: int
    rows: list[dict[str, Any]]
    pending: list[float] = dataclasses.field(default_factory=list)  # losses since the last log row
    segments: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # earlier training calls (_segment)


def _restore(run: Run, parts: _Parts, device: torch.device) -> _State | None:
    """Load the run's checkpoint into the model, optimizer, scheduler, data generator and torch's RNGs, and return
    the rest of it; None (nothing loaded) when the run has no checkpoint."""
    ckpt = run.load_checkpoint(map_location="cpu")  # RNG states must stay CPU tensors
    if ckpt is None:
        return None
    parts.model.load_state_dict(ckpt["model"])
    parts.opt.load_state_dict(ckpt["optimizer"])
    parts.sched.load_state_dict(ckpt["scheduler"])
    parts.data_gen.set_state(ckpt["data_generator"])
    torch.set_rng_state(ckpt["torch_rng"])
    if "cuda_rng" in ckpt:
        torch.cuda.set_rng_state(ckpt["cuda_rng"], device)
    # checkpoints written before segments were recorded: say that the first steps have no record
    unrecorded = [{"from_step": 0, "to_step": ckpt["step"], "recorded": False}]
    return _State(step=ckpt["step"], rows=ckpt["rows"], pending=ckpt.get("pending", []),
                  segments=ckpt.get("segments", unrecorded))


@dataclass
class _Trainer:
    """One training call of one run: what it trains with (`parts`, restored from the checkpoint), where it is
    (`state`) and what it has written. `_loop` drives it: `step`, then `log_row` at log points and `save` at
    checkpoints."""

    cfg: RunConfig
    run: Run
    device: torch.device
    parts: _Parts
    state: _State
    step_fn: EagerStep
    batches: Batches  # sampled on the host; with a pool, one step ahead
    losses: list[torch.Tensor]  # not yet read back, one per step since the last log row (on the device)
    last_ckpt: int | None  # step of the newest checkpoint on disk (all of them hold finite values)
    first: int  # the step this call started at
    started: float  # time.perf_counter() when it started
    where: dict[str, str]  # _where: this call's device, git sha and step mode

    @classmethod
    def start(cls, cfg: RunConfig, run: Run, parts: _Parts, device: torch.device, step_mode: str | None,
              pool: ThreadPoolExecutor | None) -> _Trainer:
        """Restore the checkpoint (if any), build the step and the batches, drop metrics rows logged after the
        checkpoint and mark the run `running`."""
        restored = _restore(run, parts, device)
        state = restored or _State(step=0, rows=[])
        if restored is not None:
            log.info("%s: resuming at step %d", cfg.name, state.step)
        # after loading: a graph step re-tensorises lr
        step_fn = make_step(parts.model, parts.task, parts.opt, cfg, device, step_mode)
        batches = Batches(parts.task, cfg, parts.data_gen, pool)
        run.write_metrics(state.rows)
        run.set_status("running", step=state.step)
        losses = [torch.tensor(v, device=device) for v in state.pending]  # restored from a mid-interval stop
        last_ckpt = None if restored is None else state.step
        started = time.perf_counter()
        return cls(cfg, run, device, parts, state, step_fn, batches, losses, last_ckpt, first=state.step,
                   started=started, where=_where(device, step_fn.label))

    def step(self) -> int:
        """One training step: batch → step (the loss stays on the device) → lr schedule; the new step number."""
        batch = self.batches.get(self.state.step)
        self.losses.append(self.step_fn(batch))
        self.parts.sched.step()
        self.state.step += 1
        return self.state.step

    def read_losses(self) -> torch.Tensor:
        """The losses since the last log row, read back and checked finite (diverged at the first bad step)."""
        losses = torch.stack(self.losses).float().cpu()
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            raise self.diverged(self.state.step - len(self.losses) + int(bad[0]) + 1, "non-finite loss")
        return losses

    def log_row(self) -> dict[str, Any]:
        """The metrics row of this step (appended to `state.rows`): losses since the last row, lr, curriculum, and
        at eval points the eval curve (a non-finite one is a divergence)."""
        s, train = self.state.step, self.cfg.train
        losses = self.read_losses()
        self.losses.clear()
        self.state.pending = []
        n_dims, n_points = schedule(self.cfg.curriculum, s - 1)  # the batch of the step just taken
        row: dict[str, Any] = {"step": s, "loss": float(losses[-1]), "loss_mean": float(losses.mean()),
                               "lr": float(self.parts.sched.get_last_lr()[0]), "n_dims": n_dims, "n_points": n_points}
        if s % train.eval_every == 0 or s == train.steps:
            curve = evaluate_batches(self.parts.model, self.parts.task, self.parts.eval_set, self.device)
            row["eval_mean"] = curve.summary()
            if not math.isfinite(row["eval_mean"]):
                raise self.diverged(s, "non-finite evaluation")
            row["eval"] = curve.to_dict()["mean"]  # null where no prompt counts (token tasks)
        self.state.rows.append(row)
        return row

    def save(self) -> None:
        """Checkpoint this step, only if parameters and optimizer state are finite (else: diverged here)."""
        s = self.state.step
        if not _all_finite(self.parts.model, self.parts.opt):
            raise self.diverged(s, "non-finite parameters or optimizer state")
        segment = _segment(self.first, s, self.started, self.where)
        self.run.save_checkpoint(_checkpoint(self.parts, self.batches, self.state, self.device, segment))
        self.last_ckpt = s

    def diverged(self, step: int, what: str) -> TrainingDiverged:
        """Record `failed` at `step` and build the error; the message names the checkpoint only when one exists."""
        kept = (f"the last good checkpoint (step {self.last_ckpt}) is kept" if self.last_ckpt is not None
                else "no checkpoint was written")
        msg = f"{what} at step {step}; {kept}"
        self.run.set_status("failed", step=step, error=msg)
        return TrainingDiverged(f"{self.cfg.name}: {msg}")


def _where(device: torch.device, step_label: str) -> dict[str, str]:
    """Where this training call runs, for its segment: device, git sha, step mode (and which GPU of the host)."""
    where = {"device": device_name(device), "git_sha": git_sha(), "step_mode": step_label}
    if device.type == "cuda":  # which GPU of a multi-GPU host trained this segment
        where["gpu_uuid"] = str(torch.cuda.get_device_properties(device).uuid)
        where["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return where


def _segment(first: int, step: int, started: float, where: dict[str, str]) -> dict[str, Any]:
    """One training call's share of a run (a run resumed across machines or sessions has several); `where`: the
    call's device, git_sha and step_mode."""
    return {"from_step": first, "to_step": step, "seconds": round(time.perf_counter() - started, 3), **where}


def _all_finite(model: nn.Module, opt: torch.optim.Optimizer) -> bool:
    """Whether every parameter and every floating optimizer-state tensor is finite (one host sync)."""
    tensors = [p.detach() for p in model.parameters()]
    tensors += [v for st in opt.state.values() for v in st.values() if isinstance(v, torch.Tensor)
                and v.is_floating_point()]
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def _checkpoint(parts: _Parts, batches: Batches, state: _State, device: torch.device,
                segment: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint of `state`: model, optimizer, scheduler, data generator and RNG states, metrics rows."""
    ckpt = {
        "step": state.step,
        "rows": state.rows,
        "pending": state.pending,
        "segments": [*state.segments, segment],  # this call's share up to here, so a killed call leaves a record
        "model": parts.model.state_dict(),
        "optimizer": parts.opt.state_dict(),
        "scheduler": parts.sched.state_dict(),
        "data_generator": batches.generator_state(),
        "torch_rng": torch.get_rng_state(),  # dropout draws from the (forked) global RNG
    }
    if device.type == "cuda":
        ckpt["cuda_rng"] = torch.cuda.get_rng_state(device)
    return ckpt


def _progress(total: int, initial: int, enabled: bool | None) -> Any:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def _show(bar: Any, cfg: RunConfig, row: dict[str, Any]) -> None:
    """A logged row on the progress bar, or in the log without one."""
    if bar is not None:
        bar.update(row["step"] - bar.n)
        bar.set_postfix(loss=f"{row['loss_mean']:.4f}")
    else:
        log.info("%s step %d/%d loss %.4f", cfg.name, row["step"], cfg.train.steps, row["loss_mean"])


def _finish(t: _Trainer, seconds: float) -> None:
    """Final evaluation, provenance, and the `complete` mark (written last)."""
    segments = [*t.state.segments, _segment(t.first, t.state.step, t.started, t.where)]  # training time alone
    cfg, run, device = t.cfg, t.run, t.device
    model, task, eval_set = t.parts.model, t.parts.task, t.parts.eval_set
    result: dict[str, Any] = {"n_points": eval_points(cfg), "curve": evaluate_batches(model, task, eval_set, device)
                              .to_dict()}
    diagnostics = diagnostic_curves(model, task, eval_set, device)
    if diagnostics:
        result["diagnostics"] = {name: c.to_dict() for name, c in diagnostics.items()}
    if cfg.eval.extrapolate:
        curves = extrapolation(model, task, list(cfg.eval.extrapolate), cfg.eval.n_examples,
                               make_generator(eval_generator(cfg.seed).initial_seed() + 1),
                               batch_size=cfg.eval.batch_size, device=device)
        result["extrapolation"] = {str(n): c.to_dict() for n, c in curves.items()}
    if cfg.eval.probe:  # probes fitted on fresh prompts, scored on the fixed eval set
        probe_gen = make_generator(eval_generator(cfg.seed).initial_seed() + 2)
        fit = sample_eval_batches(task, eval_points(cfg), cfg.eval.n_examples, probe_gen,
                                  batch_size=cfg.eval.batch_size)
        curves = probe_layers(model, task, fit, eval_set, device=device)
        result["probe"] = {str(layer): c.to_dict() for layer, c in curves.items()}
        # Grazzi et al.'s own protocol: logit lens + per-prompt affine map, 40 context points, 30 queries
        result["lens_probe"] = lens_probe(model, task, cfg.eval.n_examples,
                                          make_generator(eval_generator(cfg.seed).initial_seed() + 3),
                                          batch_size=cfg.eval.batch_size, device=device)
    run.write_json("eval.json", result)
    # the scan backend, for models whose blocks call the selective scan (Mamba and its S4 variant)
    backend = last_backend() if any(getattr(m, "uses_selective_scan", False) for m in model.modules()) else None
    run.write_json("provenance.json", provenance(device, scan_backend=backend, train_seconds=round(seconds, 3),
                                                 steps_timed=t.state.step - t.first, step_mode=t.step_fn.label,
                                                 segments=segments))
    run.set_status("complete", step=cfg.train.steps)


def load_or_train(cfg: RunConfig, store: RunStore | None = None, **kwargs: Any) -> Run:
    """The stored run of `cfg` if complete; otherwise train (or resume) it, unless $ICLLIB_STORED_ONLY=1 (set by
    `icl figures --profile paper` on a machine without a GPU), which raises MissingRunError instead."""
    store = store or RunStore()
    run = store.get(cfg)
    if run is not None:
        return run
    if os.environ.get("ICLLIB_STORED_ONLY") == "1":
        raise MissingRunError(f"run {cfg.name} ({config_hash(cfg)}) is not in {store.root}; train it on a GPU with "
                              f"`icl sweep <experiment> --profile {cfg.profile}`")
    return train(cfg, store, **kwargs)


def final_curve(run: Run) -> Curve:
    """The final per-position curve of a complete run."""
    return Curve.from_dict(run.read_json("eval.json")["curve"])
