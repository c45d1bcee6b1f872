"""Batches read ahead in a worker thread are the batches sampled in step order, and checkpoints taken while a batch
is being read ahead resume at the first batch not handed out."""

from concurrent.futures import ThreadPoolExecutor

import _toy  # noqa: F401  (registers "toy_regression")
import pytest
import torch

from icllib.config import CurriculumConfig, ModelConfig, RunConfig, TaskConfig, TrainConfig
from icllib.tasks import build_task
from icllib.training.batches import Batches


def _cfg(steps: int = 12) -> RunConfig:
    return RunConfig(name="toy", task=TaskConfig("toy_regression", n_dims=4), model=ModelConfig(layers=("attn",)),
                     train=TrainConfig(steps=steps, batch_size=8),
                     curriculum=CurriculumConfig(dims_start=2, dims_end=4, dims_inc=1, dims_interval=3,
                                                 points_start=3, points_end=9, points_inc=2, points_interval=3))


def _xs(batches: Batches, steps: range) -> list[torch.Tensor]:
    return [batches.get(s).xs for s in steps]


@pytest.mark.parametrize("workers", [1, 3])
def test_read_ahead_gives_the_batches_of_step_order(workers: int) -> None:
    cfg, task = _cfg(), build_task(_cfg().task)
    plain = _xs(Batches(task, cfg, torch.Generator().manual_seed(5)), range(12))
    with ThreadPoolExecutor(workers) as pool:
        ahead = Batches(task, cfg, torch.Generator().manual_seed(5), pool)
        got = _xs(ahead, range(12))
        ahead.close()
    assert [x.shape for x in got] == [x.shape for x in plain]  # the curriculum grows the prompts: shapes differ
    assert len({x.shape for x in got}) > 1
    assert all(torch.equal(a, b) for a, b in zip(got, plain, strict=True))


def test_generator_state_resumes_at_the_first_batch_not_handed_out() -> None:
    cfg, task = _cfg(), build_task(_cfg().task)
    plain = _xs(Batches(task, cfg, torch.Generator().manual_seed(1)), range(12))
    with ThreadPoolExecutor(2) as pool:
        gen = torch.Generator().manual_seed(1)
        ahead = Batches(task, cfg, gen, pool)
        _xs(ahead, range(5))  # step 5's batch is now being read ahead
        state = ahead.generator_state()
        ahead.close()
        assert torch.equal(gen.get_state(), state)  # close rewinds what was read ahead
        resumed = Batches(task, cfg, torch.Generator().set_state(state), pool)
        rest = _xs(resumed, range(5, 12))
        resumed.close()
    assert all(torch.equal(a, b) for a, b in zip(rest, plain[5:], strict=True))


def test_no_read_ahead_past_the_last_step() -> None:
    cfg, task = _cfg(steps=3), build_task(_cfg().task)
    with ThreadPoolExecutor(1) as pool:
        batches = Batches(task, cfg, torch.Generator().manual_seed(0), pool)
        _xs(batches, range(3))
        assert batches._ahead is None
