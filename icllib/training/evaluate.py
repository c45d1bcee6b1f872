"""Evaluation: error per in-context position, for trained models and classical baselines alike.

    curve = evaluate(model, task, n_points=41, n_examples=1280, generator=eval_generator(0))
    curve.mean   # [N] metric per position (normalised squared error, or accuracy)
    curve.sem    # [N] standard error of the mean over prompts (a 90% band is mean ± 1.645·sem)

Anything mapping a `Batch` to predictions goes through the same call (`task.predict(predictor, batch)`), so a
baseline's curve and a model's curve are computed on the same prompts when given equal generators. Evaluating at
more points than a model was trained on is length extrapolation (`extrapolation`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from icllib.batch import Batch, Predictor
from icllib.tasks.base import Task


@dataclass
class Curve:
    """A metric per in-context position: mean and standard error over prompts, and how many prompts counted."""

    mean: list[float]
    sem: list[float]
    count: list[int]
    metric: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: a position no prompt counted (NaN mean and SEM) is written as null."""
        out = asdict(self)
        for key in ("mean", "sem"):
            out[key] = [v if math.isfinite(v) else None for v in out[key]]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Curve:
        data = dict(data)
        for key in ("mean", "sem"):
            data[key] = [math.nan if v is None else v for v in data[key]]
        return cls(**data)

    def summary(self, start: int = 0) -> float:
        """The metric averaged over positions `start..` (positions with no counted prompt are skipped)."""
        vals = [m for m, c in zip(self.mean[start:], self.count[start:], strict=True) if c > 0]
        return sum(vals) / len(vals) if vals else math.nan


def sample_eval_batches(
    task: Task,
    n_points: int,
    n_examples: int,
    generator: torch.Generator,
    *,
    n_dims_active: int | None = None,
    batch_size: int = 64,
) -> list[Batch]:
    """A fixed evaluation set: ⌈n_examples / batch_size⌉ batches drawn from `generator`."""
    n_batches = max(1, math.ceil(n_examples / batch_size))
    return [task.sample(batch_size, n_points, n_dims_active, generator=generator) for _ in range(n_batches)]


def curve_from(values: list[torch.Tensor], masks: list[torch.Tensor], metric: str) -> Curve:
    """Per-position mean and standard error of metric values `[B, N]` over the entries where `masks` is set."""
    v = torch.cat(values).double()  # [B_total, N]
    m = torch.cat(masks).double()  # [B_total, N]
    count = m.sum(0)  # [N]
    safe = count.clamp_min(1)
    mean = (v * m).sum(0) / safe
    var = ((v.pow(2) * m).sum(0) / safe - mean.pow(2)).clamp_min(0) * safe / (safe - 1).clamp_min(1)
    sem = (var / safe).sqrt()
    nan = torch.full_like(mean, math.nan)
    return Curve(
        mean=torch.where(count > 0, mean, nan).tolist(),
        sem=torch.where(count > 1, sem, nan).tolist(),
        count=count.long().tolist(),
        metric=metric,
    )


@torch.no_grad()
def _per_position(
    predictor: Predictor, batches: list[Batch], device: str | torch.device,
    values_of: Callable[[Batch], dict[str, torch.Tensor]],
) -> dict[str, Curve]:
    """Run `values_of` (named [B, N] values) on every batch in eval mode; one `Curve` per name over the masks."""
    was_training = isinstance(predictor, nn.Module) and predictor.training
    if isinstance(predictor, nn.Module):
        predictor.eval()
    values: dict[str, list[torch.Tensor]] = {}
    masks = []
    try:
        for batch in batches:
            batch = batch.to(device)
            for name, v in values_of(batch).items():  # each [B, N]
                values.setdefault(name, []).append(v.cpu())
            masks.append(batch.loss_mask.cpu())
    finally:
        if was_training:
            predictor.train()  # type: ignore[union-attr]
    return {name: curve_from(v, masks, name) for name, v in values.items()}


def evaluate_batches(
    predictor: Predictor, task: Task, batches: list[Batch], device: str | torch.device = "cpu"
) -> Curve:
    """Per-position mean and standard error of `task.metric` over the masked entries of `batches`."""
    curves = _per_position(predictor, batches, device,
                           lambda b: {task.metric_name: task.metric(task.predict(predictor, b), b)})
    return curves[task.metric_name]


def diagnostic_curves(
    model: nn.Module, task: Task, batches: list[Batch], device: str | torch.device = "cpu"
) -> dict[str, Curve]:
    """`task.diagnostics` per position over `batches`, like `evaluate_batches` ({} for tasks that have none)."""
    return _per_position(model, batches, device, lambda b: task.diagnostics(model, b))


def evaluate(
    predictor: Predictor,
    task: Task,
    n_points: int,
    n_examples: int,
    generator: torch.Generator,
    *,
    n_dims_active: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> Curve:
    """Error per in-context position of a model or baseline on `n_examples` fresh prompts from `generator`."""
    batches = sample_eval_batches(
        task, n_points, n_examples, generator, n_dims_active=n_dims_active, batch_size=batch_size
    )
    return evaluate_batches(predictor, task, batches, device)


def extrapolation(
    predictor: Predictor,
    task: Task,
    lengths: list[int],
    n_examples: int,
    seed_generator: torch.Generator,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[int, Curve]:
    """Curves at several prompt lengths (e.g. 1×, 2×, 4× the trained number of points)."""
    return {
        n: evaluate(predictor, task, n, n_examples, seed_generator, batch_size=batch_size, device=device)
        for n in lengths
    }


@torch.no_grad()
def probe_layers(
    model: nn.Module,
    task: Task,
    train_batches: list[Batch],
    test_batches: list[Batch],
    *,
    ridge: float = 1e-3,
    device: str | torch.device = "cpu",
) -> dict[int, Curve]:
    """Per-layer linear probes (Grazzi et al.'s "iterative refinement" question), for tasks of format "pairs".

    For every residual stream `l = 0..len(layers)` (0 = the read-in, l = after block l) an affine ridge probe
    h [D] → y is fitted on the x-token states of `train_batches` (all positions pooled), then scored with
    `task.metric` on `test_batches`, per position. Returns {layer: Curve}.
    """
    if task.io().format != "pairs":
        raise ValueError(f"probe_layers: task format {task.io().format!r} is not supported (only 'pairs')")
    model.eval()

    def states(batches: list[Batch]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        hs, ys, masks = [], [], []
        for batch in batches:
            batch = batch.to(device)
            _, hidden = model(batch, return_hidden=True)  # L+1 × [B, N, D]
            hs.append(torch.stack(hidden).double())  # [L+1, B, N, D]
            ys.append(batch.ys.double())
            masks.append(batch.loss_mask)
        return list(torch.cat(hs, dim=1)), torch.cat(ys), torch.cat(masks)

    h_train, y_train, m_train = states(train_batches)
    h_test, _, _ = states(test_batches)
    curves: dict[int, Curve] = {}
    for layer, (ht, hs) in enumerate(zip(h_train, h_test, strict=True)):
        X = torch.cat([ht[m_train], torch.ones_like(ht[m_train][:, :1])], dim=1)  # [n, D+1]
        gram = X.T @ X + ridge * len(X) * torch.eye(X.shape[1], dtype=X.dtype, device=X.device)
        coef = torch.linalg.solve(gram, X.T @ y_train[m_train])  # [D+1]
        values, masks, start = [], [], 0
        for batch in test_batches:
            batch = batch.to(device)
            pred = (hs[start : start + batch.batch_size] @ coef[:-1] + coef[-1]).float().unsqueeze(-1)  # [B, N, 1]
            values.append(task.metric(pred, batch).cpu())
            masks.append(batch.loss_mask.cpu())
            start += batch.batch_size
        curves[layer] = curve_from(values, masks, task.metric_name)
    return curves


@torch.no_grad()
def lens_probe(
    model: nn.Module,
    task: Task,
    n_prompts: int,
    generator: torch.Generator,
    *,
    n_context: int = 40,
    n_test: int = 30,
    fit_from: int = 30,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[str, list[float]]:
    """Grazzi et al.'s probing protocol (their `eval_icl_learning_curves.py`), for tasks of format "pairs".

    Each of `n_test` query points is appended on its own to a context of `n_context` examples (prompts of
    n_context + 1 points). Every residual stream (0 = the read-in, l = after block l) is decoded through the final
    norm and the read-out (`model.logit_lens`); per prompt and layer, a 1-D affine map (scale, shift) is fitted by
    least squares from the decoded outputs at context positions `fit_from .. n_context-1` to the true y, and the
    mapped decoded output at the query is scored with `task.metric`.
    Returns {"layer": [0..L], "error": [...], "sem": [...], "scale": [...], "shift": [...]} (means over prompts and
    queries; `error` in the task's metric, e.g. squared error / d).
    """
    if task.io().format != "pairs":
        raise ValueError(f"lens_probe: task format {task.io().format!r} is not supported (only 'pairs')")
    model.eval()
    # point indices of the n_test prompts built from one sampled prompt: the context, then query k
    idx = torch.cat([torch.arange(n_context).expand(n_test, -1), n_context + torch.arange(n_test)[:, None]], 1)
    errors, scales, shifts = [], [], []
    for start in range(0, n_prompts, batch_size):
        b = min(batch_size, n_prompts - start)
        batch = task.sample(b, n_context + n_test, generator=generator)

        def spread(t: torch.Tensor) -> torch.Tensor:  # [b, n_context + n_test, ...] -> [b * n_test, n_context + 1, ...]
            return t[:, idx].flatten(0, 1)

        # the task's other extras are per-prompt parameters (w, trees, ...) that neither the model nor the metric reads
        extras = {"y_tokens": spread(batch.extras["y_tokens"])} if "y_tokens" in batch.extras else {}
        prompts = Batch(spread(batch.xs), spread(batch.ys), spread(batch.loss_mask), extras, dict(batch.meta))
        prompts = prompts.to(device)
        lens = model.logit_lens(prompts).squeeze(-1).double()  # [L+1, b * n_test, n_context + 1]
        lens = lens.unflatten(1, (b, n_test))  # [L+1, b, n_test, n_context + 1]
        p = lens[:, :, 0, fit_from:n_context]  # [L+1, b, F]: the context is the same in every copy (causal)
        y = batch.ys[:, fit_from:n_context].to(p)  # [b, F]
        pc, yc = p - p.mean(-1, keepdim=True), y - y.mean(-1, keepdim=True)
        var = (pc * pc).sum(-1)
        scale = torch.where(var > 0, (pc * yc).sum(-1) / var.clamp_min(1e-300), torch.zeros_like(var))  # [L+1, b]
        shift = y.mean(-1) - scale * p.mean(-1)  # [L+1, b]
        query = scale[..., None] * lens[..., n_context] + shift[..., None]  # [L+1, b, n_test]
        pred = torch.zeros(len(lens), b * n_test, n_context + 1, 1, dtype=torch.float32, device=lens.device)
        pred[:, :, -1, 0] = query.flatten(1).float()
        errors.append(torch.stack([task.metric(pr, prompts)[:, -1] for pr in pred]).cpu().double())  # [L+1, b*n_test]
        scales.append(scale.cpu())
        shifts.append(shift.cpu())
    err, sc, sh = torch.cat(errors, 1), torch.cat(scales, 1), torch.cat(shifts, 1)
    per_prompt = err.unflatten(1, (-1, n_test)).mean(-1)  # [L+1, n_prompts]: queries of one prompt share a context
    sem = per_prompt.std(1) / math.sqrt(per_prompt.shape[1]) if per_prompt.shape[1] > 1 else torch.zeros(len(err))
    return {"layer": list(range(len(err))), "error": err.mean(1).tolist(), "sem": sem.tolist(),
            "scale": sc.mean(1).tolist(), "shift": sh.mean(1).tolist()}
