"""Every experiment builds in every profile, with unique, stable config hashes and buildable models."""

import dataclasses
import json

import pytest

from icllib import experiments
from icllib.batch import IOSpec
from icllib.config import PROFILES, ConfigError, RunConfig, TaskConfig, config_hash, from_dict, to_dict
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


@pytest.mark.parametrize("profile", PROFILES)
def test_task_tables_are_records_that_carry_the_per_task_policy(profile: str) -> None:
    """The Park and Grazzi tables hold frozen `TaskRow`s; vector MQAR's clip of 100 and sparse parity's eval count
    are fields of their rows, so every run of those tasks in every experiment gets them and no other run does."""
    for table in (experiments._park_tasks(profile), experiments._grazzi_tasks(profile)):
        for name, row in table.items():
            assert isinstance(row, experiments.TaskRow)
            assert row.task.name == name
            with pytest.raises(dataclasses.FrozenInstanceError):
                row.lr = 0.0  # type: ignore[misc]
    park = experiments._park_tasks(profile)
    assert park["vector_mqar"].clip == 100.0
    assert park["sparse_parity"].evals == experiments._PARITY_EVALS[profile]
    assert {row.clip for t, row in park.items() if t != "vector_mqar"} == {10.0}

    runs = [c for name in NAMES for c in experiments.EXPERIMENTS.get(name)(profile)]
    assert {c.task.name for c in runs} >= {"vector_mqar", "sparse_parity"}
    for cfg in runs:
        assert cfg.train.grad_clip == (100.0 if cfg.task.name == "vector_mqar" else 10.0), cfg.name
        evals = experiments._PARITY_EVALS[profile] if cfg.task.name == "sparse_parity" else 20
        assert cfg.train.eval_every == max(1, cfg.train.steps // evals), cfg.name


def test_run_takes_clip_and_evals_from_the_row_not_the_task_name() -> None:
    row = experiments._park_tasks("smoke")["vector_mqar"]
    model = experiments._model(experiments.PARK_MODELS["mamba"], "smoke")
    plain = dataclasses.replace(row, clip=10.0)
    assert experiments._run("x", "smoke", plain, model).train.grad_clip == 10.0
    renamed = dataclasses.replace(row, task=TaskConfig("linear_regression", n_dims=20), evals=4)
    train = experiments._run("x", "smoke", renamed, model).train
    assert (train.grad_clip, train.eval_every) == (100.0, row.steps // 4)
