"""Training batches of one run, in step order, optionally sampled one step ahead in a worker thread.

    batches = Batches(task, cfg, data_gen, pool)      # pool: a ThreadPoolExecutor shared by runs, or None
    batch = batches.get(step)                          # the batch of `step` (curriculum state at that step)
    ckpt["data_generator"] = batches.generator_state()  # the generator as it was before the next unread batch
    batches.close()                                    # wait for the worker; the generator as if nothing was read ahead

Why. `train_many` drives many small runs from one host thread; replaying a step's CUDA graph costs the host
microseconds, but sampling its next batch on the CPU costs 0.1–3 ms (2NN regression and many-outlier prompts are the
dearest), so the host, not the GPU, sets the pace. With a pool, the batch of step t+1 is sampled in a worker thread
while the host launches other runs' steps: PyTorch's CPU kernels release the GIL, so several runs sample at once.

Exactness. Each run's generator is used by at most one thread at a time and always in step order, so a run sees the
same batches with or without read-ahead; `generator_state` is the state saved before the read-ahead batch was drawn,
so a checkpoint resumes at the batch the run has not consumed yet.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch

from icllib.batch import Batch
from icllib.config import RunConfig
from icllib.tasks.base import Task
from icllib.training.curriculum import schedule


class Batches:
    """The batch of each training step for one run (module docstring)."""

    def __init__(self, task: Task, cfg: RunConfig, generator: torch.Generator,
                 pool: ThreadPoolExecutor | None = None) -> None:
        self.task, self.cfg, self.generator, self.pool = task, cfg, generator, pool
        self._ahead: tuple[int, Future[Batch]] | None = None  # (step, batch being sampled)
        self._state = generator.get_state()  # before the next batch not yet handed out

    def sample(self, step: int) -> Batch:
        n_dims, n_points = schedule(self.cfg.curriculum, step)
        return self.task.sample(self.cfg.train.batch_size, n_points, n_dims, generator=self.generator)

    def get(self, step: int) -> Batch:
        """The batch of `step`; steps must be asked for in order (as the training loop does)."""
        if self._ahead is not None and self._ahead[0] == step:
            batch = self._ahead[1].result()
        else:
            self._drop_ahead()
            batch = self.sample(step)
        self._ahead = None
        self._state = self.generator.get_state()
        if self.pool is not None and step + 1 < self.cfg.train.steps:
            self._ahead = (step + 1, self.pool.submit(self.sample, step + 1))
        return batch

    def generator_state(self) -> torch.Tensor:
        """The generator state a resumed run must start from: before the first batch not handed out yet."""
        return self._state.clone()

    def close(self) -> None:
        """Wait for a batch read ahead and rewind the generator to `generator_state()`."""
        self._drop_ahead()

    def _drop_ahead(self) -> None:
        if self._ahead is not None:
            self._ahead[1].result()  # the worker must be done with the generator before it is rewound
            self._ahead = None
        self.generator.set_state(self._state)
