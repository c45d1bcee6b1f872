"""Garg et al.'s curriculum as a pure function of (config, step).

The official `Curriculum` (dtsip/in-context-learning src/curriculum.py) starts at `start`, and after every
training step increments its step counter and adds `inc` whenever the counter is a multiple of `interval`,
capped at `end`. The batch of 0-based step i is sampled *before* that update, so it sees

    value(i) = min(start + inc * (i // interval), end)

for both the active dimensions and the number of points. (On resume, the official train.py replays
`train_step + 1` updates and restarts the loop at `train_step`, one schedule step ahead of an uninterrupted run;
our trainer resumes at the exact step, so `schedule` is all it needs.)
"""

from __future__ import annotations

from icllib.config import CurriculumConfig


def _value(start: int, end: int, inc: int, interval: int, step: int) -> int:
    return min(start + inc * (step // interval), end)


def schedule(cfg: CurriculumConfig, step: int) -> tuple[int, int]:
    """(active dims, points) for the batch of 0-based training step `step`."""
    if step < 0:
        raise ValueError(f"step: must be >= 0, got {step}")
    dims = _value(cfg.dims_start, cfg.dims_end, cfg.dims_inc, cfg.dims_interval, step)
    points = _value(cfg.points_start, cfg.points_end, cfg.points_inc, cfg.points_interval, step)
    return dims, points
