"""Every experiment builds in every profile, with unique, stable config hashes and buildable models."""

import json

import pytest

from icllib import experiments
from icllib.batch import IOSpec
from icllib.config import PROFILES, ConfigError, RunConfig, config_hash, from_dict, to_dict
from icllib.models import build_model
from icllib.tasks import TASKS

NAMES = experiments.EXPERIMENTS.names()


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", NAMES)
def test_experiment_builds_with_unique_hashes(name: str, profile: str) -> None:
    configs = experiments.EXPERIMENTS.get(name)(profile)
    assert configs, f"{name} returns no runs in {profile}"
    hashes = [config_hash(c) for c in configs]
    assert len(set(hashes)) == len(hashes), f"{name}/{profile} has duplicate runs"
    assert len({c.name for c in configs}) == len(configs)
    for cfg in configs:
        assert cfg.profile == profile
        assert from_dict(RunConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg
        cur = cfg.curriculum
        assert cur.dims_end <= cfg.task.n_dims


@pytest.mark.parametrize("name", NAMES)
def test_experiment_tasks_are_registered(name: str) -> None:
    for cfg in experiments.EXPERIMENTS.get(name)("smoke"):
        assert cfg.task.name in TASKS, f"{name}: task {cfg.task.name!r} is not registered"


def test_profiles_differ_in_compute() -> None:
    smoke, paper, full = (experiments.results_grid(p) for p in PROFILES)
    assert max(c.train.steps for c in smoke) < min(c.train.steps for c in paper)
    assert max(c.train.steps for c in paper) < min(c.train.steps for c in full)


def test_unknown_profile_and_experiment() -> None:
    with pytest.raises(ConfigError, match="profile: 'huge'"):
        experiments.results_grid("huge")
    with pytest.raises(ValueError, match="unknown experiment 'grid'; known: .*results_grid"):
        experiments.EXPERIMENTS.get("grid")


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_every_distinct_model_builds(profile: str) -> None:
    models = {c.model for name in NAMES for c in experiments.EXPERIMENTS.get(name)(profile)}
    io = IOSpec("pairs", d_in=20, d_out=1)
    for cfg in models:
        model = build_model(cfg, io, seed=0)
        assert model.num_params() > 0
