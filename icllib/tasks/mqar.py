"""Vector-valued multi-query associative recall (Park et al. 2024's "vector-valued MQAR", after Zoology's MQAR).

Each prompt draws K keys and K values i.i.d. uniform on the sphere of radius √d, then Q distinct keys (uniformly, no
repeats) as queries. The prompt (format "sequence") is

    k_1, v_1, ..., k_K, v_K, q_1, ..., q_Q        # xs [B, 2K + Q, d]

and the target at query q_j is the value paired with that key: ys [B, 2K + Q, d] holds it at the query positions and
zeros elsewhere; `loss_mask` is set only at the query positions. `n_points` is the number of key-value pairs K;
`n_queries` is Q (≤ K). With `n_dims_active`, coordinates beyond it are zeroed before projecting onto the √d sphere.

Loss: MSE over the d coordinates and the query positions. Metric ("accuracy", higher is better): 1 where the
prediction's nearest value, argmax_j ⟨ŷ, v_j⟩ over the prompt's K values, is the true one. `extras`: "keys" [B, K, d],
"values" [B, K, d], "query_index" [B, Q] (which pair each query asks for).

    >>> task = VectorMQAR(n_dims=20, n_queries=4)
    >>> b = task.sample(8, 16, generator=torch.Generator().manual_seed(0))
    >>> b.xs.shape, b.ys.shape, int(b.loss_mask.sum())        # [B, 2K + Q, d], [B, 2K + Q, d]
    (torch.Size([8, 36, 20]), torch.Size([8, 36, 20]), 32)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from icllib.batch import Batch, IOSpec, masked_mean
from icllib.config import ConfigError
from icllib.tasks.base import TASKS, Task, check_sample_args


def sphere_points(shape: tuple[int, ...], n_dims: int, n_dims_active: int | None, generator: torch.Generator) -> Tensor:
    """Uniform on the sphere of radius √n_dims (within the first n_dims_active coordinates): [*shape, d]."""
    z = torch.randn(*shape, n_dims, generator=generator, device=generator.device)
    if n_dims_active is not None and n_dims_active < n_dims:
        z[..., n_dims_active:] = 0
    return z * (math.sqrt(n_dims) / z.norm(dim=-1, keepdim=True))


@TASKS.register("vector_mqar")
@dataclass(frozen=True)
class VectorMQAR(Task):
    """Recall the value of each queried key from K continuous key-value pairs (module doc); n_points = K."""

    n_dims: int = 20
    n_queries: int = 1  # Q
    # Park's official `retrieval` sampler instead (krafton-ai/mambaformer-icl src/samplers.py
    # `GaussianRetrievalSampler`, src/tasks.py `Retrieval`): one query, a copy of key `randint(0, K)` *inclusive*,
    # where index K is the query's own slot, so with probability 1/(K+1) the query is a fresh random vector; the
    # target is always the value of the key with the largest ⟨q, k⟩. Needs n_queries = 1.
    code_semantics: bool = False
    metric_name: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.n_queries < 1:
            raise ConfigError(f"task.kwargs.n_queries: must be >= 1, got {self.n_queries}")
        if self.code_semantics and self.n_queries != 1:
            raise ConfigError(f"task.kwargs.n_queries: code_semantics has one query, got {self.n_queries}")

    def io(self) -> IOSpec:
        return IOSpec("sequence", d_in=self.n_dims, d_out=self.n_dims)

    def sample(self, batch_size: int, n_points: int, n_dims_active: int | None = None, *,
               generator: torch.Generator) -> Batch:
        B, K, Q, d, dev = batch_size, n_points, self.n_queries, self.n_dims, generator.device
        check_sample_args(batch_size, n_points, n_dims_active, d)
        if not 1 <= Q <= K:
            raise ConfigError(f"n_points: {K} key-value pairs cannot serve n_queries={Q} distinct queries")
        keys = sphere_points((B, K), d, n_dims_active, generator)  # [B, K, d]
        values = sphere_points((B, K), d, n_dims_active, generator)  # [B, K, d]
        if self.code_semantics:
            slot = torch.randint(0, K + 1, (B, 1), generator=generator, device=dev)  # [B, 1], K = a fresh vector
            fresh = sphere_points((B, 1), d, n_dims_active, generator)  # [B, 1, d]
            copy = keys.gather(1, slot.clamp(max=K - 1).unsqueeze(-1).expand(B, 1, d))
            queries = torch.where((slot == K).unsqueeze(-1), fresh, copy)  # [B, 1, d]
            idx = torch.einsum("bqd,bkd->bqk", queries, keys).argmax(-1)  # [B, 1], the nearest key
        else:
            idx = torch.rand(B, K, generator=generator, device=dev).argsort(dim=1)[:, :Q]  # [B, Q], distinct keys
            queries = keys.gather(1, idx.unsqueeze(-1).expand(B, Q, d))  # [B, Q, d]
        targets = values.gather(1, idx.unsqueeze(-1).expand(B, Q, d))  # [B, Q, d]
        context = torch.stack((keys, values), dim=2).reshape(B, 2 * K, d)  # [B, 2K, d]: k_1, v_1, k_2, ...
        xs = torch.cat((context, queries), dim=1)  # [B, 2K + Q, d]
        ys = torch.cat((torch.zeros_like(context), targets), dim=1)  # [B, 2K + Q, d]
        mask = torch.zeros(B, 2 * K + Q, dtype=torch.bool, device=dev)
        mask[:, 2 * K:] = True
        return Batch(xs, ys, mask, extras={"keys": keys, "values": values, "query_index": idx})

    def loss(self, pred: Tensor, batch: Batch) -> Tensor:
        return masked_mean((pred - batch.ys).pow(2).mean(-1), batch.loss_mask)

    def metric(self, pred: Tensor, batch: Batch) -> Tensor:
        """[B, T]: 1.0 where the nearest value (by inner product) to the prediction is the target, else 0."""
        values = batch.extras["values"]  # [B, K, d]
        nearest = torch.einsum("btd,bkd->btk", pred, values).argmax(-1)  # [B, T]
        idx = batch.extras["query_index"]  # [B, Q]
        hit = nearest[:, -idx.shape[1]:] == idx  # [B, Q]: the queries are the last Q tokens
        return torch.cat((torch.zeros_like(nearest[:, : -idx.shape[1]]), hit.long()), dim=1).to(pred.dtype)
