"""`train_many`: interleaved training stores the same runs as training one after another, stops on a time limit at
a resumable step, starts nothing it cannot finish in time, and resumes the runs furthest along first. The `gpu` test
checks the CUDA-stream interleaving against sequential training on a real device."""

import logging
from pathlib import Path

import _toy  # noqa: F401  (registers "toy_regression")
import pytest

from icllib.config import CurriculumConfig, EvalConfig, ModelConfig, RunConfig, TaskConfig, TrainConfig
from icllib.runs.interleave import train_many
from icllib.store import RunStore
from icllib.training.train import train


def _cfg(name: str = "toy", steps: int = 40, layers: tuple[str, ...] = ("attn", "mamba"), seed: int = 0,
         task: TaskConfig | None = None, curriculum: CurriculumConfig | None = None, **train_kw) -> RunConfig:
    return RunConfig(
        name=name, seed=seed,
        task=task or TaskConfig("toy_regression", n_dims=4),
        model=ModelConfig(layers=layers, d_model=16, n_heads=2),
        train=TrainConfig(steps=steps, batch_size=16, lr=3e-3, eval_every=20, ckpt_every=10, log_every=5,
                          **train_kw),
        curriculum=curriculum or CurriculumConfig(dims_start=2, dims_end=4, dims_inc=1, dims_interval=15,
                                                  points_start=5, points_end=9, points_inc=2, points_interval=15),
        eval=EvalConfig(n_examples=32, batch_size=32),
    )


# ---- CPU --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("read_ahead", [True, False])
def test_train_many_stores_the_same_runs_as_train(tmp_path: Path, read_ahead: bool) -> None:
    configs = [_cfg("a", seed=0), _cfg("b", seed=1, layers=("mamba",)), _cfg("c", seed=2, steps=25)]
    one_by_one = [train(c, RunStore(tmp_path / "seq"), device="cpu", progress=False) for c in configs]
    together = train_many(configs, RunStore(tmp_path / "many"), device="cpu", concurrency=2, read_ahead=read_ahead)
    for a, b in zip(one_by_one, together, strict=True):
        assert b.complete
        assert a.metrics() == b.metrics()
        assert a.read_json("eval.json") == b.read_json("eval.json")


def test_train_many_time_limit_checkpoints_and_resumes_exactly(tmp_path: Path) -> None:
    configs = [_cfg("a", seed=0, steps=30), _cfg("b", seed=1, steps=30, layers=("mamba",))]
    whole = [train(c, RunStore(tmp_path / "whole"), device="cpu", progress=False) for c in configs]
    store = RunStore(tmp_path / "sliced")
    stopped = train_many(configs, store, device="cpu", concurrency=2, time_limit_s=0.0)  # stop after one step
    assert all(not r.complete and r.status()["step"] == 1 for r in stopped)
    resumed = train_many(configs, store, device="cpu", concurrency=2)
    for a, b in zip(whole, resumed, strict=True):
        assert b.complete and a.metrics() == b.metrics()
        assert a.read_json("eval.json") == b.read_json("eval.json")


def test_train_many_leaves_no_directory_for_runs_it_never_starts(tmp_path: Path) -> None:
    configs = [_cfg("a", seed=0, steps=30), _cfg("b", seed=1, steps=30)]
    store = RunStore(tmp_path)
    first, second = train_many(configs, store, device="cpu", concurrency=1, time_limit_s=0.0)
    assert first.status()["step"] == 1 and first.dir.exists()
    assert second.status()["state"] == "new" and not second.dir.exists()
    assert [r.hash for r in store.runs()] == [first.hash]


def test_train_many_resumes_the_runs_furthest_along_first(tmp_path: Path) -> None:
    configs = [_cfg("new", seed=0, steps=30), _cfg("near", seed=1, steps=30), _cfg("far", seed=2, steps=30)]
    store = RunStore(tmp_path)
    train(configs[1], store, device="cpu", progress=False, stop_after=5)
    train(configs[2], store, device="cpu", progress=False, stop_after=2)
    # one slot and no time left: only the first run in the queue takes a step, so it names the order
    started = train_many(configs, store, device="cpu", concurrency=1, time_limit_s=0.0)
    assert [r.status().get("step") for r in started] == [None, 6, 2]
    assert not started[0].dir.exists()


def test_train_many_progress_bar_and_one_line_per_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """`progress=True`: a bar over the run-steps to go with runs done and run-steps/s, and a line per run finished
    (name, hash, state, step, seconds) on stderr; stdout untouched. A resumed run counts only its steps to go."""
    configs = [_cfg("pa", seed=0, steps=12, layers=("attn",)), _cfg("pb", seed=1, steps=12, layers=("attn",))]
    store = RunStore(tmp_path)
    train(configs[1], store, device="cpu", progress=False, stop_after=5)
    capsys.readouterr()
    runs = train_many(configs, store, device="cpu", concurrency=2, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert "/19" in err and "run-step/s" in err and "runs 2/2" in err, err  # 12 + (12 - 5) run-steps to go
    lines = [line for line in err.replace("\r", "\n").splitlines() if "] p" in line]
    assert len(lines) == 2, err
    for run in runs:
        (line,) = [line for line in lines if f" {run.cfg.name} {run.hash}: complete at step 12/12 in " in line]
        assert line.endswith("s")
    # off: nothing on stderr, the line goes to the log
    with caplog.at_level(logging.INFO, logger="icllib.runs.interleave"):
        (run,) = train_many(configs[:1], RunStore(tmp_path / "off"), device="cpu", progress=False)
    assert capsys.readouterr().err == ""
    assert f"[1/1] pa {run.hash}: complete at step 12/12" in caplog.text


# ---- on a GPU -----------------------------------------------------------------------------------------------------

@pytest.mark.gpu
def test_train_many_on_streams_matches_sequential(tmp_path: Path) -> None:
    configs = [_cfg(f"r{i}", seed=i, steps=60, layers=("mamba", "attn")) for i in range(4)]
    seq = [train(c, RunStore(tmp_path / "seq"), device="cuda", progress=False) for c in configs]
    many = train_many(configs, RunStore(tmp_path / "many"), device="cuda", concurrency=4)
    for a, b in zip(seq, many, strict=True):
        ea, eb = a.read_json("eval.json")["curve"]["mean"], b.read_json("eval.json")["curve"]["mean"]
        assert all(abs(x - y) <= 1e-3 * max(1.0, abs(x)) for x, y in zip(ea, eb, strict=True)), (ea, eb)
