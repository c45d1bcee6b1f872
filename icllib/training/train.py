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
"""

from __future__ import annotations

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

from icllib.config import RunConfig, config_hash
from icllib.models import build_model
from icllib.ops.selective_scan import last_backend
from icllib.repro import device_name, eval_generator, git_sha, make_generator, provenance, train_generator
from icllib.store import Run, RunStore
from icllib.tasks import build_task
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
from icllib.training.step import make_step
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


@dataclass
class _State:
    """What a checkpoint holds besides the model: enough to continue bit for bit."""

    step: int
    rows: list[dict[str, Any]]
    pending: list[float] = dataclasses.field(default_factory=list)  # losses since the last log row
    segments: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # earlier training calls (_segment)


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


def _diverged(cfg: RunConfig, run: Run, step: int, what: str, last_ckpt: int | None) -> TrainingDiverged:
    """Record `failed` at `step` and build the error; the message names the checkpoint only when one exists."""
    kept = (f"the last good checkpoint (step {last_ckpt}) is kept" if last_ckpt is not None
            else "no checkpoint was written")
    msg = f"{what} at step {step}; {kept}"
    run.set_status("failed", step=step, error=msg)
    return TrainingDiverged(f"{cfg.name}: {msg}")


def _checkpoint(model, opt, sched, batches: Batches, state: _State, device: torch.device,
                segment: dict[str, Any]) -> dict[str, Any]:
    ckpt = {
        "step": state.step,
        "rows": state.rows,
        "pending": state.pending,
        "segments": [*state.segments, segment],  # this call's share up to here, so a killed call leaves a record
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
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
    status = run.status()
    if status.get("state") == "failed":  # from the same checkpoint and RNG state it would diverge again
        raise TrainingDiverged(
            f"{cfg.name}: run {run.hash} failed at step {status.get('step', '?')} ({status.get('error', 'no error')}"
            f"); change the config (e.g. train.lr) or delete {run.dir} to train it from step 0")
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.io(), seed=cfg.seed).to(device)
    opt = build_optimizer(cfg, model, device)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    data_gen = train_generator(cfg.seed)  # CPU generator: identical batches on every device
    eval_set = sample_eval_batches(
        task, eval_points(cfg), cfg.eval.n_examples, eval_generator(cfg.seed), batch_size=cfg.eval.batch_size
    )
    forked = [device] if device.type == "cuda" else []

    with torch.random.fork_rng(devices=forked):
        torch.manual_seed(cfg.seed)
        state = _State(step=0, rows=[])
        ckpt = run.load_checkpoint(map_location="cpu")  # RNG states must stay CPU tensors
        last_ckpt: int | None = None  # step of the newest checkpoint on disk (all of them hold finite values)
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            data_gen.set_state(ckpt["data_generator"])
            torch.set_rng_state(ckpt["torch_rng"])
            if "cuda_rng" in ckpt:
                torch.cuda.set_rng_state(ckpt["cuda_rng"], device)
            # checkpoints written before segments were recorded: say that the first steps have no record
            unrecorded = [{"from_step": 0, "to_step": ckpt["step"], "recorded": False}]
            state = _State(step=ckpt["step"], rows=ckpt["rows"], pending=ckpt.get("pending", []),
                           segments=ckpt.get("segments", unrecorded))
            last_ckpt = state.step
            log.info("%s: resuming at step %d", cfg.name, state.step)
        step = make_step(model, task, opt, cfg, device, step_mode)  # after loading: a graph step re-tensorises lr
        batches = Batches(task, cfg, data_gen, pool)  # sampled on the host; with a pool, one step ahead
        run.write_metrics(state.rows)  # drop rows logged after the checkpoint we resume from
        run.set_status("running", step=state.step)

        bar = _progress(cfg.train.steps, state.step, progress)
        # losses not yet read back, one per step since the last log row (restored from a mid-interval stop)
        pending: list[torch.Tensor] = [torch.tensor(v, device=device) for v in state.pending]
        started, first = time.perf_counter(), state.step
        where = {"device": device_name(device), "git_sha": git_sha(), "step_mode": step.label}
        if device.type == "cuda":  # which GPU of a multi-GPU host trained this segment
            where["gpu_uuid"] = str(torch.cuda.get_device_properties(device).uuid)
            where["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        end = cfg.train.steps if stop_after is None else min(cfg.train.steps, state.step + stop_after)

        def read_losses(s: int) -> torch.Tensor:
            """The losses since the last read-back, checked finite (raises at the first bad step)."""
            losses = torch.stack(pending).float().cpu()
            bad = (~torch.isfinite(losses)).nonzero()
            if len(bad):
                raise _diverged(cfg, run, s - len(pending) + int(bad[0]) + 1, "non-finite loss", last_ckpt)
            return losses

        def save(s: int) -> None:
            """Checkpoint at step s, only if parameters and optimizer state are finite (else: diverged at s)."""
            nonlocal last_ckpt
            if not _all_finite(model, opt):
                raise _diverged(cfg, run, s, "non-finite parameters or optimizer state", last_ckpt)
            segment = _segment(first, s, started, where)
            run.save_checkpoint(_checkpoint(model, opt, sched, batches, state, device, segment))
            last_ckpt = s

        model.train()
        try:
            while state.step < end:
                n_dims, n_points = schedule(cfg.curriculum, state.step)
                batch = batches.get(state.step)
                pending.append(step(batch))  # detached loss on the device, read back at log points only
                sched.step()
                state.step += 1

                s = state.step
                if deadline is not None and s < end and time.monotonic() >= deadline:
                    end = s  # out of time: checkpoint here and stop, like stop_after
                at_log = s % cfg.train.log_every == 0 or s % cfg.train.eval_every == 0 or s % cfg.train.ckpt_every == 0
                if s == end and not (at_log or s == cfg.train.steps):  # stopped on request between log points
                    state.pending = read_losses(s).tolist()
                    save(s)
                    run.set_status("running", step=s)
                elif at_log or s == cfg.train.steps:
                    losses = read_losses(s)
                    pending.clear()
                    state.pending = []
                    row: dict[str, Any] = {"step": s, "loss": float(losses[-1]), "loss_mean": float(losses.mean()),
                                           "lr": float(sched.get_last_lr()[0]), "n_dims": n_dims, "n_points": n_points}
                    if s % cfg.train.eval_every == 0 or s == cfg.train.steps:
                        curve = evaluate_batches(model, task, eval_set, device)
                        row["eval_mean"] = curve.summary()
                        if not math.isfinite(row["eval_mean"]):
                            raise _diverged(cfg, run, s, "non-finite evaluation", last_ckpt)
                        row["eval"] = curve.to_dict()["mean"]  # null where no prompt counts (token tasks)
                    state.rows.append(row)
                    if bar is not None:
                        bar.update(s - bar.n)
                        bar.set_postfix(loss=f"{row['loss_mean']:.4f}")
                    else:
                        log.info("%s step %d/%d loss %.4f", cfg.name, s, cfg.train.steps, row["loss_mean"])
                    if s % cfg.train.ckpt_every == 0 or s == cfg.train.steps or s == end:
                        save(s)
                        run.write_metrics(state.rows)
                        run.set_status("running", step=s)
                yield s
        finally:
            batches.close()  # a batch read ahead must not outlive the run
        if bar is not None:
            bar.close()
        elapsed = time.perf_counter() - started

    if state.step < cfg.train.steps:
        return  # stopped early on request; resumable
    segments = [*state.segments, _segment(first, state.step, started, where)]
    _finish(cfg, run, model, task, eval_set, device, steps_this_call=state.step - first, seconds=elapsed,
            step_mode=step.label, segments=segments)


def _finish(cfg, run: Run, model, task, eval_set, device, *, steps_this_call: int, seconds: float,
            step_mode: str, segments: list[dict[str, Any]]) -> None:
    """Final evaluation, provenance, and the `complete` mark (written last)."""
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
                                                 steps_timed=steps_this_call, step_mode=step_mode,
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
