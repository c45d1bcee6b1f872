"""Hand-made Batches of every task format (tasks/base.py docstring), shared by the model tests."""

from __future__ import annotations

import torch

from icllib.batch import Batch, IOSpec


def pairs_batch(B: int = 2, N: int = 6, d: int = 5, y_tokens: bool = False) -> Batch:
    g = torch.Generator().manual_seed(0)
    xs, ys = torch.randn(B, N, d, generator=g), torch.randn(B, N, generator=g)
    extras = {"y_tokens": torch.randn(B, N, d, generator=g)} if y_tokens else {}
    return Batch(xs=xs, ys=ys, loss_mask=torch.ones(B, N, dtype=torch.bool), extras=extras)


def batch_for(io: IOSpec, B: int = 2, N: int = 6) -> Batch:
    """A hand-made batch of each format (tasks/base.py docstring)."""
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(B, N, dtype=torch.bool)
    if io.format == "pairs":
        return pairs_batch(B, N, io.d_in)
    if io.format == "sequence":
        return Batch(torch.randn(B, N, io.d_in, generator=g), torch.randn(B, N, io.d_out, generator=g), mask)
    if io.format == "tokens":
        ids = torch.randint(0, io.d_in, (B, N), generator=g)
        return Batch(ids, torch.randint(0, io.d_out, (B, N), generator=g), mask)
    s = torch.randn(B, N, io.d_mid, generator=g)
    return Batch(torch.randn(B, N, io.d_in, generator=g), torch.randn(B, N, generator=g), mask, extras={"s": s})


IOS = {
    "pairs": (IOSpec("pairs", d_in=5, d_out=1), (2, 6, 1)),
    "sequence": (IOSpec("sequence", d_in=5, d_out=5), (2, 6, 5)),
    "tokens": (IOSpec("tokens", d_in=11, d_out=11), (2, 6, 11)),
    "triples": (IOSpec("triples", d_in=5, d_out=1, d_mid=3), (2, 6, 4)),
}
