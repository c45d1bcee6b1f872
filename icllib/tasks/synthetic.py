"""Token-level synthetic tasks from the Mamba paper (Gu & Dao 2023, §4.1): selective copying and induction heads.

Both use format "tokens": xs [B, T] int64 ids, ys [B, T] int64 targets (0 where `loss_mask` is unset), pred
[B, T, vocab] logits read at every token. Loss is cross-entropy over the `loss_mask` positions; the metric
("accuracy") is 1 where the argmax logit is the target. Nothing is tied to one length: test prompts may be longer
than training ones (the Mamba paper's length extrapolation).

Vocabulary layout: ids 0 .. n_tokens-1 are data tokens, the special tokens follow.

Provenance. The Mamba paper (Gu & Dao 2023, App. E.1) uses the generators of the S4/safari codebase:
- selective copying = `torch_copying_data(L, M, A, variable=True)` (state-spaces/s4 and HazyResearch/safari,
  src/dataloaders/datasets/copying.py): M data tokens from {1..A-2} at sorted random positions among L+M slots of
  noise (id 0), then M markers (id A-1); targets are the M tokens, read at the markers. The paper's setting is
  "vocab size 16 (including the noise token)", M = 16. Ours relabels: data 0..n_tokens-1, noise n_tokens, marker
  n_tokens+1, so A = n_tokens + 2 and the default n_tokens=14 gives the paper's 16-token vocabulary; our
  `n_points` is the length of the noisy part, L + M.
- induction heads = safari src/dataloaders/synthetics.py `generate_induction_head` (H3): input_seq_len uniform
  non-special tokens, the copy prefix written at a position p < input_seq_len - 1, the prefix appended at the end,
  target = the token after the first prefix. Safari draws extra triggers with probability 1/2 (`num_triggers`);
  ours uses exactly one (the paper's description). The paper trains at length 256 with vocab 16 and tests up to
  2^20; vocabulary here is n_tokens data + 1 trigger (default 16 + 1).

    >>> task = SelectiveCopying(n_dims=1)
    >>> b = task.sample(4, 64, generator=torch.Generator().manual_seed(0))
    >>> b.xs.shape, int(b.loss_mask.sum(1)[0])               # [B, n_points + n_memorize], n_memorize
    (torch.Size([4, 80]), 16)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from icllib.batch import Batch, IOSpec, masked_mean
from icllib.config import ConfigError
from icllib.tasks.base import TASKS, Task, check_sample_args


class TokenTask(Task):
    """Shared CE loss and accuracy metric over `loss_mask` for token tasks; subclasses set `vocab_size`."""

    metric_name: str = "accuracy"
    higher_is_better: bool = True

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def io(self) -> IOSpec:
        return IOSpec("tokens", d_in=self.vocab_size, d_out=self.vocab_size)

    def loss(self, pred: Tensor, batch: Batch) -> Tensor:
        nll = F.cross_entropy(pred.flatten(0, 1), batch.ys.flatten(), reduction="none")  # [B * T]
        return masked_mean(nll.view_as(batch.ys).to(pred.dtype), batch.loss_mask)

    def metric(self, pred: Tensor, batch: Batch) -> Tensor:
        return ((pred.argmax(-1) == batch.ys) & batch.loss_mask).to(pred.dtype)  # [B, T]


@TASKS.register("selective_copying")
@dataclass(frozen=True)
class SelectiveCopying(TokenTask):
    """Copy the data tokens scattered among noise, in order, after the markers.

    A prompt is n_points tokens of noise (id n_tokens) with `n_memorize` data tokens (uniform over ids
    0..n_tokens-1) at distinct random positions, followed by `n_memorize` marker tokens (id n_tokens + 1). At the
    j-th marker the target is the j-th data token (in order of position). `n_points` is the length of the noisy
    part (≥ n_memorize); T = n_points + n_memorize. `n_dims` is unused (the vocabulary is n_tokens + 2).

        >>> g = torch.Generator().manual_seed(0)
        >>> b = SelectiveCopying(n_dims=1, n_tokens=4, n_memorize=2).sample(1, 6, generator=g)
        >>> b.xs.tolist(), b.ys[0, 6:].tolist()    # data 0 and 3 among noise 4, then markers 5
        ([[0, 3, 4, 4, 4, 4, 5, 5]], [0, 3])
    """

    n_dims: int = 0
    n_tokens: int = 14
    n_memorize: int = 16

    def __post_init__(self) -> None:
        if self.n_tokens < 1:
            raise ConfigError(f"task.kwargs.n_tokens: must be >= 1, got {self.n_tokens}")
        if self.n_memorize < 1:
            raise ConfigError(f"task.kwargs.n_memorize: must be >= 1, got {self.n_memorize}")

    @property
    def vocab_size(self) -> int:
        return self.n_tokens + 2

    def sample(self, batch_size: int, n_points: int, n_dims_active: int | None = None, *,
               generator: torch.Generator) -> Batch:
        B, L, M, dev = batch_size, n_points, self.n_memorize, generator.device
        check_sample_args(batch_size, n_points, None, 1)
        if L < M:
            raise ConfigError(f"n_points: {L} noisy positions cannot hold n_memorize={M} data tokens")
        noise, marker = self.n_tokens, self.n_tokens + 1
        data = torch.randint(0, self.n_tokens, (B, M), generator=generator, device=dev)  # [B, M]
        pos = torch.rand(B, L, generator=generator, device=dev).argsort(dim=1)[:, :M].sort(dim=1).values  # [B, M]
        noisy = torch.full((B, L), noise, dtype=torch.long, device=dev).scatter(1, pos, data)  # [B, L]
        xs = torch.cat((noisy, torch.full((B, M), marker, dtype=torch.long, device=dev)), dim=1)  # [B, L + M]
        ys = torch.cat((torch.zeros_like(noisy), data), dim=1)  # [B, L + M]
        mask = torch.zeros(B, L + M, dtype=torch.bool, device=dev)
        mask[:, L:] = True
        return Batch(xs, ys, mask, extras={"data_positions": pos})


@TASKS.register("induction_heads")
@dataclass(frozen=True)
class InductionHeads(TokenTask):
    """Recall the token that followed the first occurrence of a trigger, when the trigger appears again at the end.

    A prompt is n_points tokens: uniform data tokens (ids 0..n_tokens-1), the trigger (id n_tokens) at a random
    position p in [0, n_points - 3] followed by a data token (the target) at p + 1, and the trigger again as the last
    token. The target is read at the last position only. `n_points` is the sequence length T (≥ 3); the trigger
    appears exactly twice. `n_dims` is unused (the vocabulary is n_tokens + 1).

        >>> g = torch.Generator().manual_seed(0)
        >>> b = InductionHeads(n_dims=1, n_tokens=4).sample(1, 6, generator=g)
        >>> b.xs.tolist(), int(b.ys[0, -1])         # trigger 4 at position 3 followed by 3; the final 4 asks for it
        ([[0, 3, 1, 4, 3, 4]], 3)
    """

    n_dims: int = 0
    n_tokens: int = 16

    def __post_init__(self) -> None:
        if self.n_tokens < 1:
            raise ConfigError(f"task.kwargs.n_tokens: must be >= 1, got {self.n_tokens}")

    @property
    def vocab_size(self) -> int:
        return self.n_tokens + 1

    def sample(self, batch_size: int, n_points: int, n_dims_active: int | None = None, *,
               generator: torch.Generator) -> Batch:
        B, T, dev = batch_size, n_points, generator.device
        check_sample_args(batch_size, n_points, None, 1)
        if T < 3:
            raise ConfigError(f"n_points: induction_heads needs >= 3 tokens (trigger, target, trigger), got {T}")
        trigger = self.n_tokens
        xs = torch.randint(0, self.n_tokens, (B, T), generator=generator, device=dev)  # [B, T]
        pos = torch.randint(0, T - 2, (B, 1), generator=generator, device=dev)  # [B, 1]
        xs.scatter_(1, pos, trigger)
        xs[:, -1] = trigger
        target = xs.gather(1, pos + 1).squeeze(1)  # [B]
        ys = torch.zeros_like(xs)
        ys[:, -1] = target
        mask = torch.zeros(B, T, dtype=torch.bool, device=dev)
        mask[:, -1] = True
        return Batch(xs, ys, mask, extras={"trigger_position": pos.squeeze(1)})
