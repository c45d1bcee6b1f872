"""The curriculum schedule against a step-by-step replay of the official `Curriculum` class, and at its boundaries."""

import pytest

from icllib.config import ConfigError, CurriculumConfig
from icllib.training.curriculum import schedule


def official_replay(cfg: CurriculumConfig, steps: int) -> list[tuple[int, int]]:
    """dtsip/in-context-learning src/curriculum.py, replayed: the batch of step i is sampled, then `update()` runs
    (step_count += 1; a value grows by inc whenever step_count % interval == 0; capped at end)."""
    dims, points, count, seen = cfg.dims_start, cfg.points_start, 0, []
    for _ in range(steps):
        seen.append((dims, points))
        count += 1
        if count % cfg.dims_interval == 0:
            dims += cfg.dims_inc
        if count % cfg.points_interval == 0:
            points += cfg.points_inc
        dims, points = min(dims, cfg.dims_end), min(points, cfg.points_end)
    return seen


PARK_LR = CurriculumConfig(dims_start=5, dims_end=20, dims_inc=1, dims_interval=2000,
                           points_start=11, points_end=41, points_inc=2, points_interval=2000)


@pytest.mark.parametrize("cfg", [
    CurriculumConfig(dims_start=2, dims_end=6, dims_inc=1, dims_interval=3,
                     points_start=5, points_end=12, points_inc=3, points_interval=4),
    CurriculumConfig(dims_start=4, dims_end=20, dims_inc=5, dims_interval=1,
                     points_start=12, points_end=512, points_inc=2, points_interval=7),
    CurriculumConfig(),  # fixed schedule
], ids=["small", "overshoot", "fixed"])
def test_matches_official_replay(cfg: CurriculumConfig) -> None:
    assert [schedule(cfg, i) for i in range(60)] == official_replay(cfg, 60)


def test_park_lr_boundaries() -> None:
    assert schedule(PARK_LR, 0) == (5, 11)
    assert schedule(PARK_LR, 1999) == (5, 11)  # the 2000th batch still uses the start values
    assert schedule(PARK_LR, 2000) == (6, 13)  # grown after the update that ends step 1999
    assert schedule(PARK_LR, 2 * 2000 - 1) == (6, 13)
    assert schedule(PARK_LR, 15 * 2000) == (20, 41)  # both reach their end at step 30,000
    assert schedule(PARK_LR, 15 * 2000 - 1) == (19, 39)
    assert schedule(PARK_LR, 10**7) == (20, 41)  # capped


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="step"):
        schedule(PARK_LR, -1)
    with pytest.raises(ConfigError, match="dims_end"):
        CurriculumConfig(dims_start=5, dims_end=4)
    with pytest.raises(ConfigError, match="points_interval"):
        CurriculumConfig(points_interval=0)


def test_many_outlier_profiles_reach_full_length_at_the_originals_fraction() -> None:
    """Paper profile: 256-point prompts (PAPER_SPEC §7's reduction), reached by 5% of training as the original's
    512 are (1M steps, +2 points every 200 from 12); the full profile keeps 512."""
    from icllib.experiments import _park_tasks

    for profile, n in (("paper", 256), ("full", 512)):
        row = _park_tasks(profile)["many_outlier_regression"]
        cur, steps = row.curriculum, row.steps
        assert cur.points_end == n
        reached = next(i for i in range(steps) if schedule(cur, i)[1] == n)
        assert 0.04 * steps <= reached <= 0.05 * steps, (profile, reached, steps)
        assert schedule(cur, int(0.05 * steps))[0] == 20  # all 20 dims active by then too (official: 3.2%)
