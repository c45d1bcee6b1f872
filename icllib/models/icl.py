"""`ICLModel`: a task's Batch -> token sequence -> read-in -> Backbone -> read-out at the prediction positions.

How a batch becomes tokens and where predictions are read is the task's `IOSpec.format` (tasks/base.py):

    pairs    : x_1, y_1, ..., x_N, y_N with y_i zero-padded to d (or extras["y_tokens"] [B, N, d]); Linear(d, D)
               read-in; Linear(D, d_out) read at the x tokens -> pred [B, N, d_out] (ŷ_i sees x_1, y_1, ..., x_i)
    sequence : xs [B, T, d] are the tokens; Linear read-in and read-out at every token -> [B, T, d_out]
    tokens   : xs [B, T] ids; Embedding(vocab, D) and a bias-free vocabulary head (tied when d_in == d_out)
               -> logits [B, T, d_out]
    triples  : x_i, s_i, y_i (Li et al.'s CoT format), separate read-ins Linear(d, D), Linear(d_mid, D),
               Linear(1, D); ŝ_i = Linear(D, d_mid) at x_i, ŷ_i = Linear(D, 1) at s_i -> [B, N, d_mid + 1]

Each format is a small `nn.Module` (an "IO head") with `embed(batch) -> [B, T, D]`, `read(h) -> pred` and
`select(h)`: the hidden states at the read positions (pairs: x tokens; triples: s tokens, where y is read;
sequence / tokens: every token). With `cfg.pos_emb`, a learned position table of `cfg.max_len` rows (N(0, 0.02),
as GPT-2's wpe) is added to the read-in output.

Probing: `model(batch, return_hidden=True)` returns `(pred, hidden)` where hidden is a list of `len(layers) + 1`
tensors `[B, P, D]`: the residual stream at the read positions before the first block (the embedding) and after each
block, not normed. `model.logit_lens(batch)` returns `[len(layers) + 1, *pred.shape]`: each of those residual
streams through the final norm and the read-out (Grazzi et al.'s per-layer decoding); its last entry is `pred`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from icllib.batch import Batch, IOSpec
from icllib.config import ModelConfig
from icllib.models.backbone import Backbone


class PairsIO(nn.Module):
    """Garg et al.'s interleaved (x, y) prompt, 2N tokens."""

    def __init__(self, io: IOSpec, d_model: int) -> None:
        super().__init__()
        self.read_in = nn.Linear(io.d_in, d_model)
        self.read_out = nn.Linear(d_model, io.d_out)

    def embed(self, batch: Batch) -> Tensor:
        xs = batch.xs  # [B, N, d]
        ys = batch.extras.get("y_tokens")
        if ys is None:
            ys = batch.ys if batch.ys.dim() == 3 else batch.ys.unsqueeze(-1)  # [B, N, k]
            ys = F.pad(ys.to(xs.dtype), (0, xs.shape[-1] - ys.shape[-1]))  # [B, N, d], zero-padded
        B, N, d = xs.shape
        zs = torch.stack((xs, ys), dim=2).reshape(B, 2 * N, d)  # [B, 2N, d]: x_1, y_1, x_2, ...
        return self.read_in(zs)

    def select(self, h: Tensor) -> Tensor:
        return h[:, 0::2]  # [B, N, ·]: the x tokens

    def read(self, h: Tensor) -> Tensor:
        return self.read_out(self.select(h))  # [B, N, d_out]


class SequenceIO(nn.Module):
    """Vectors in, a prediction at every token (vector MQAR / retrieval)."""

    def __init__(self, io: IOSpec, d_model: int) -> None:
        super().__init__()
        self.read_in = nn.Linear(io.d_in, d_model)
        self.read_out = nn.Linear(d_model, io.d_out)

    def embed(self, batch: Batch) -> Tensor:
        return self.read_in(batch.xs)  # [B, T, D]

    def select(self, h: Tensor) -> Tensor:
        return h

    def read(self, h: Tensor) -> Tensor:
        return self.read_out(h)  # [B, T, d_out]


class TokensIO(nn.Module):
    """Token ids in, next-token logits out (selective copying, induction heads)."""

    def __init__(self, io: IOSpec, d_model: int) -> None:
        super().__init__()
        self.read_in = nn.Embedding(io.d_in, d_model)
        nn.init.normal_(self.read_in.weight, std=0.02)
        self.read_out = nn.Linear(d_model, io.d_out, bias=False)
        if io.d_in == io.d_out:
            self.read_out.weight = self.read_in.weight  # tied, as GPT-2 / Mamba LMs and Park et al.'s tokenized mode

    def embed(self, batch: Batch) -> Tensor:
        return self.read_in(batch.xs)  # [B, T] -> [B, T, D]

    def select(self, h: Tensor) -> Tensor:
        return h

    def read(self, h: Tensor) -> Tensor:
        return self.read_out(h)  # [B, T, vocab]


class TriplesIO(nn.Module):
    """Li et al.'s chain-of-thought prompt x_1, s_1, y_1, ..., 3N tokens, one read-in per token type."""

    def __init__(self, io: IOSpec, d_model: int) -> None:
        super().__init__()
        self.read_in_x = nn.Linear(io.d_in, d_model)
        self.read_in_s = nn.Linear(io.d_mid, d_model)
        self.read_in_y = nn.Linear(1, d_model)
        self.read_out_s = nn.Linear(d_model, io.d_mid)
        self.read_out_y = nn.Linear(d_model, 1)

    def embed(self, batch: Batch) -> Tensor:
        ex = self.read_in_x(batch.xs)  # [B, N, D]
        es = self.read_in_s(batch.extras["s"])  # [B, N, D]
        ey = self.read_in_y(batch.ys.unsqueeze(-1).to(batch.xs.dtype))  # [B, N, D]
        B, N, D = ex.shape
        return torch.stack((ex, es, ey), dim=2).reshape(B, 3 * N, D)  # [B, 3N, D]

    def select(self, h: Tensor) -> Tensor:
        return h[:, 1::3]  # the s tokens, where y is read

    def read(self, h: Tensor) -> Tensor:
        s_hat = self.read_out_s(h[:, 0::3])  # [B, N, d_mid], read at x_i
        y_hat = self.read_out_y(h[:, 1::3])  # [B, N, 1], read at s_i
        return torch.cat((s_hat, y_hat), dim=-1)  # [B, N, d_mid + 1]


IO_HEADS: dict[str, Callable[[IOSpec, int], nn.Module]] = {
    "pairs": PairsIO,
    "sequence": SequenceIO,
    "tokens": TokensIO,
    "triples": TriplesIO,
}


class ICLModel(nn.Module):
    """Read-in -> Backbone(cfg.layers) -> read-out, for one task format. `forward(batch) -> pred` (module doc)."""

    def __init__(self, cfg: ModelConfig, io: IOSpec) -> None:
        super().__init__()
        self.cfg, self.io_spec = cfg, io
        self.io = IO_HEADS[io.format](io, cfg.d_model)
        self.wpe = nn.Embedding(cfg.max_len, cfg.d_model) if cfg.pos_emb else None
        if self.wpe is not None:
            nn.init.normal_(self.wpe.weight, std=0.02)
        self.backbone = Backbone(cfg)

    def embed(self, batch: Batch) -> Tensor:
        """The read-in output (plus positions) `[B, T, D]`."""
        h = self.io.embed(batch)
        if self.wpe is not None:
            T = h.shape[1]
            if T > self.cfg.max_len:
                raise ValueError(
                    f"model.max_len: the prompt has {T} tokens but the position table has {self.cfg.max_len} rows"
                )
            h = h + self.wpe.weight[:T]
        return h

    def forward(self, batch: Batch, *, return_hidden: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Predictions (shape per format, module doc); with `return_hidden`, also the per-block residual streams
        at the read positions: `len(cfg.layers) + 1` tensors `[B, P, D]`."""
        if not return_hidden:
            return self.io.read(self.backbone(self.embed(batch)))
        out, hidden = self.backbone(self.embed(batch), return_hidden=True)
        return self.io.read(out), [self.io.select(h) for h in hidden]

    @torch.no_grad()
    def logit_lens(self, batch: Batch) -> Tensor:
        """Every block's residual stream through the final norm and the read-out: `[len(layers) + 1, *pred]`."""
        _, hidden = self.backbone(self.embed(batch), return_hidden=True)
        return torch.stack([self.io.read(self.backbone.norm_f(h)) for h in hidden])

    def num_params(self, *, include_positions: bool = True) -> int:
        """Parameter count (tied weights once); `include_positions=False` leaves out the position table."""
        n = sum(p.numel() for p in self.parameters())
        return n if include_positions or self.wpe is None else n - self.wpe.weight.numel()
