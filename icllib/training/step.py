"""One training step: forward, loss, backward, clip, optimizer. Eager, or captured once and replayed as a CUDA graph.

    step = make_step(model, task, opt, cfg, device)      # "graph" on CUDA, "eager" elsewhere (or mode=...)
    loss = step(batch)                                    # batch on the host; returns the detached loss on device

Why a graph. The models of these papers are small (0.05–10M parameters, 82–1024 tokens): a step is ~1–3k kernels
of a few microseconds each, so eager PyTorch spends its time launching them (e.g. 20 ms for a 12-layer GPT-2
step on an H100 whose arithmetic takes well under 1 ms). `GraphStep` records the whole step, including the fused
Adam update and gradient clipping, as one CUDA graph and replays it with a single launch.

How it stays the eager step:
- one graph per batch *signature* (tensor shapes, dtypes and `meta`), i.e. one per curriculum stage; a new
  signature drops the old graph (curricula only grow) and captures a new one;
- before a capture, real steps on a side stream (3 before the first capture, 1 before later ones: many-outlier
  regression has ~250 curriculum stages) warm up cuBLAS / Triton / the optimizer's lazily created state;
  parameters and optimizer state are then restored, so the trajectory is the eager one;
- the optimizer is made capturable: its lr lives in a device tensor that `LambdaLR` fills in place each step, so the
  schedule reaches the replayed update;
- batches are sampled on the host (the training generator stays a CPU generator, so every device sees the same
  prompts) and copied into the graph's static inputs without blocking, through two pinned staging buffers allocated
  once per graph (an event per buffer says when its last copy has left it): while the GPU runs step t, the host
  samples step t+1;
- losses must not index with boolean masks (a host synchronisation); tasks use `masked_mean`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from icllib.batch import Batch
from icllib.config import ConfigError, RunConfig
from icllib.tasks.base import Task

log = logging.getLogger(__name__)

STEP_MODES = ("auto", "eager", "graph")


def resolve_mode(mode: str | None, device: torch.device) -> str:
    """`None`/"auto" → $ICLLIB_STEP if set, else "graph" on CUDA and "eager" elsewhere."""
    mode = mode or os.environ.get("ICLLIB_STEP") or "auto"
    if mode not in STEP_MODES:
        raise ConfigError(f"step mode: {mode!r} is not one of {', '.join(STEP_MODES)}")
    if mode == "auto":
        return "graph" if device.type == "cuda" else "eager"
    if mode == "graph" and device.type != "cuda":
        raise ConfigError(f"step mode: 'graph' needs a CUDA device, got {device.type!r}")
    return mode


@contextlib.contextmanager
def tf32_matmuls(enabled: bool) -> Iterator[None]:
    """fp32 matmuls and convolutions on TF32 tensor cores inside the block (train.precision="tf32"), then back."""
    if not enabled:
        yield
        return
    settings = (torch.backends.cuda.matmul, torch.backends.cudnn.conv)
    old = [s.fp32_precision for s in settings]
    for s in settings:
        s.fp32_precision = "tf32"
    try:
        yield
    finally:
        for s, value in zip(settings, old, strict=True):
            s.fp32_precision = value


class EagerStep:
    """The reference step: exactly what a hand-written PyTorch loop does."""

    mode = "eager"

    def __init__(self, model: nn.Module, task: Task, opt: torch.optim.Optimizer, cfg: RunConfig,
                 device: torch.device) -> None:
        self.model, self.task, self.opt, self.device = model, task, opt, device
        self.clip = cfg.train.grad_clip
        # $ICLLIB_COMPILE=1 compiles every run's model without touching its config (an execution choice like the step
        # mode: the config hash stays, `label` and provenance say it): fewer, fused kernels for a graph to replay
        self.compiled = cfg.train.compile or os.environ.get("ICLLIB_COMPILE") == "1"
        self.label = self.mode + ("+compile" if self.compiled else "")
        self.forward: Callable[[Batch], Tensor] = torch.compile(model) if self.compiled else model
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.train.precision == "bf16",
                                       cache_enabled=False)  # cached casts would be stale inside a graph replay
        self.tf32 = cfg.train.precision == "tf32"

    def body(self, batch: Batch) -> Tensor:
        """Forward, loss, backward, clip, optimizer step on a device batch; returns the detached loss."""
        with tf32_matmuls(self.tf32):
            with self.autocast:
                pred = self.forward(batch)
            loss = self.task.loss(pred.float(), batch)
            loss.backward()
        if self.clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)  # no host sync: capturable
        self.opt.step()
        return loss.detach()

    def __call__(self, batch: Batch) -> Tensor:
        self.opt.zero_grad(set_to_none=True)
        return self.body(batch.to(self.device))


def make_capturable(opt: torch.optim.Optimizer, device: torch.device) -> None:
    """Put every param group's lr in a device tensor and mark the groups capturable (also after load_state_dict,
    which restores whatever the checkpoint held)."""
    for group in opt.param_groups:
        lr = group["lr"]
        group["lr"] = (lr.to(device=device, dtype=torch.float32) if isinstance(lr, Tensor)
                       else torch.tensor(float(lr), device=device))
        group["capturable"] = True
    for state in opt.state.values():  # a step counter restored on the CPU must join the parameters
        for key, value in state.items():
            if key == "step" and isinstance(value, Tensor):
                state[key] = value.to(device=device, dtype=torch.float32)


def signature(batch: Batch) -> tuple[Any, ...]:
    """What a captured graph is specialised to: every tensor's name, shape and dtype, and the batch's meta."""
    tensors = {"xs": batch.xs, "ys": batch.ys, "loss_mask": batch.loss_mask, **batch.extras}
    return (tuple((k, tuple(t.shape), t.dtype) for k, t in sorted(tensors.items())), tuple(sorted(batch.meta.items())))


class GraphStep(EagerStep):
    """The step as a CUDA graph, captured per batch signature (module docstring). Same call contract as EagerStep."""

    mode = "graph"

    def __init__(self, model: nn.Module, task: Task, opt: torch.optim.Optimizer, cfg: RunConfig,
                 device: torch.device, warmup: int = 3) -> None:
        if device.type != "cuda":
            raise ConfigError(f"step mode: 'graph' needs a CUDA device, got {device.type!r}")
        super().__init__(model, task, opt, cfg, device)
        make_capturable(opt, device)
        self.warmup = warmup
        # warm-up and capture on a stream of this step's own: cuBLAS keeps one workspace per stream, and graphs
        # captured on a shared stream would share it, racing when `train_many` replays them concurrently
        self._stream = torch.cuda.Stream(device)
        self.captures = 0
        self._key: tuple[Any, ...] | None = None
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: Batch | None = None
        self._loss: Tensor | None = None
        self._staging: list[_Staging] = []
        self._calls = 0

    def __call__(self, batch: Batch) -> Tensor:
        key = signature(batch)
        if key != self._key:
            self._capture(batch, key)
        assert self._static is not None and self._graph is not None and self._loss is not None
        self._staging[self._calls % len(self._staging)].copy(batch, self._static)
        self._calls += 1
        self._graph.replay()
        return self._loss.clone()  # the static loss is overwritten by the next replay

    def _capture(self, batch: Batch, key: tuple[Any, ...]) -> None:
        self._graph = self._static = self._loss = None  # free the previous stage's graph first
        static = batch.to(self.device)  # fresh device tensors: the graph's inputs from now on
        self._staging = [_Staging(static) for _ in range(2)]
        saved = _snapshot(self.model, self.opt)
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._stream):  # warm-up: autotuning, workspaces, optimizer state
            for _ in range(self.warmup if self.captures == 0 else 1):  # later stages: kernels are warm already
                self.opt.zero_grad(set_to_none=True)
                self.body(static)
        torch.cuda.current_stream(self.device).wait_stream(self._stream)
        _restore(self.model, self.opt, saved)
        self.opt.zero_grad(set_to_none=True)  # backward inside the capture allocates .grad from the graph's pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self._stream):
            loss = self.body(static)
        self._graph, self._static, self._loss, self._key = graph, static, loss, key
        self.captures += 1
        log.debug("captured a training-step graph for %s", key)


def _tensors(batch: Batch) -> list[Tensor]:
    return [batch.xs, batch.ys, batch.loss_mask, *(batch.extras[k] for k in sorted(batch.extras))]


class _Staging:
    """Pinned host buffers shaped like a graph's inputs. `copy` waits (on the host) until this buffer's previous
    upload has left it, fills it from the batch and uploads it on the current stream without blocking; allocating
    fresh pinned memory for every step instead costs the host far more than the copy."""

    def __init__(self, static: Batch) -> None:
        self.pinned = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in _tensors(static)]
        self.uploaded: torch.cuda.Event | None = None

    def copy(self, batch: Batch, static: Batch) -> None:
        if self.uploaded is not None:
            self.uploaded.synchronize()
        for buf, src, dst in zip(self.pinned, _tensors(batch), _tensors(static), strict=True):
            if src.device.type == "cpu":
                buf.copy_(src)
                dst.copy_(buf, non_blocking=True)
            else:
                dst.copy_(src, non_blocking=True)
        self.uploaded = torch.cuda.Event()
        self.uploaded.record()


def _snapshot(model: nn.Module, opt: torch.optim.Optimizer) -> dict[int, tuple[Tensor, Tensor]]:
    """(live tensor, copy) of every parameter and optimizer-state tensor, keyed by the live tensor's id."""
    live = list(model.parameters())
    live += [v for state in opt.state.values() for v in state.values() if isinstance(v, Tensor)]
    return {id(t): (t, t.detach().clone()) for t in live}


@torch.no_grad()
def _restore(model: nn.Module, opt: torch.optim.Optimizer, saved: dict[int, tuple[Tensor, Tensor]]) -> None:
    """Undo the warm-up: restore every tensor that existed before it; zero the optimizer state it created (Adam's
    fresh state is zeros, step 0)."""
    current = list(model.parameters())
    current += [v for state in opt.state.values() for v in state.values() if isinstance(v, Tensor)]
    for t in current:
        live, copy = saved.get(id(t), (None, None))
        if live is t:
            t.copy_(copy)
        else:
            t.zero_()


def make_step(model: nn.Module, task: Task, opt: torch.optim.Optimizer, cfg: RunConfig, device: torch.device,
              mode: str | None = None) -> EagerStep:
    """The step for `mode` (STEP_MODES; `None` → auto: graph on CUDA, eager elsewhere)."""
    cls = {"eager": EagerStep, "graph": GraphStep}[resolve_mode(mode, device)]
    return cls(model, task, opt, cfg, device)
