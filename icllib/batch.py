"""The data types every layer above shares: a `Batch` of prompts, its `IOSpec`, `Predictor` and `masked_mean`.

Task families (icllib/tasks) produce batches, models (icllib/models) consume them, the trainer, the evaluator and
the baselines pass them along; none of them needs to import the others for these types. Formats (what `xs`, `ys`
and the predictions hold) are described in icllib/tasks/base.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from icllib.config import ConfigError

FORMATS = ("pairs", "sequence", "tokens", "triples")


@dataclass(frozen=True)
class IOSpec:
    """How a task's batches are fed to a model and read back.

    format: one of FORMATS (module docstring).
    d_in:   width of an input vector (pairs/sequence/triples), or the vocabulary size (tokens).
    d_out:  width of a prediction (1 for scalar regression and parity, d for MQAR, vocabulary size for tokens).
    d_mid:  width of the CoT intermediate s (triples only).
    """

    format: str
    d_in: int
    d_out: int
    d_mid: int = 0

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"io.format: {self.format!r} is not one of {', '.join(FORMATS)}")


@dataclass
class Batch:
    """One batch of prompts. Shapes per `IOSpec.format` (module docstring).

    loss_mask [B, N] (bool) marks the positions that count in loss and metric (clean positions for outlier
    tasks, query positions for MQAR and token tasks). `extras` holds family-specific tensors (CoT's `s`,
    ortho-outlier `y_tokens`, MQAR `keys`/`values`, ...). `meta` holds plain Python facts about the batch.
    """

    xs: Tensor
    ys: Tensor
    loss_mask: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to(self, device: str | torch.device) -> Batch:
        return Batch(
            xs=self.xs.to(device),
            ys=self.ys.to(device),
            loss_mask=self.loss_mask.to(device),
            extras={k: v.to(device) for k, v in self.extras.items()},
            meta=dict(self.meta),
        )

    @property
    def batch_size(self) -> int:
        return self.xs.shape[0]

    @property
    def n_positions(self) -> int:
        return self.loss_mask.shape[1]


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` [B, N] over the entries where `mask` [B, N] is set, without boolean indexing.

    Equal to `values[mask].mean()` (NaN for an empty mask) but free of the host synchronisation that boolean
    indexing needs, so losses built on it can run inside a captured CUDA graph.
    """
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum()


class Predictor(Protocol):
    """Anything that maps a Batch to predictions: a model, or a baseline."""

    def __call__(self, batch: Batch) -> Tensor: ...
