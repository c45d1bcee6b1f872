"""The training loop: it learns, it resumes bit for bit after SIGKILL, it stops on NaN, and it reuses the store."""

import json
import math
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import _toy  # noqa: F401  (registers "toy_regression")
import pytest
import torch

from icllib.config import (
    ConfigError,
    CurriculumConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    TaskConfig,
    TrainConfig,
    to_dict,
)
from icllib.store import RunStore
from icllib.training.curriculum import schedule
from icllib.training.train import TrainingDiverged, final_curve, load_or_train, lr_lambda, resolve_device, train

HERE = Path(__file__).parents[1]  # tests/, where _toy.py lives


def _cfg(steps: int = 60, layers: tuple[str, ...] = ("attn",), **task_kw) -> RunConfig:
    return RunConfig(
        name="toy",
        task=TaskConfig("toy_regression", n_dims=4, kwargs=task_kw),
        model=ModelConfig(layers=layers, d_model=16, n_heads=2, dropout=0.1 if "attn" in layers else 0.0),
        train=TrainConfig(steps=steps, batch_size=16, lr=3e-3, eval_every=20, ckpt_every=10, log_every=5),
        curriculum=CurriculumConfig(dims_start=2, dims_end=4, dims_inc=1, dims_interval=15, points_start=5,
                                    points_end=9, points_inc=2, points_interval=15),
        eval=EvalConfig(n_examples=64, batch_size=32, extrapolate=(18,)),
    )


def test_training_learns_in_context_and_writes_the_store(tmp_path: Path) -> None:
    cfg = _cfg(steps=150, shared_w=True)
    run = train(cfg, RunStore(tmp_path), device="cpu", progress=False)
    assert run.complete and run.status()["step"] == 150
    rows = run.metrics()
    assert [r["step"] for r in rows] == list(range(5, 151, 5))
    evals = [r for r in rows if "eval" in r]
    assert evals[-1]["eval_mean"] < 0.5 * evals[0]["eval_mean"]  # the fixed eval set, at the final dims
    assert [r["step"] for r in evals] == [20, 40, 60, 80, 100, 120, 140, 150]
    curve = final_curve(run)
    assert len(curve.mean) == 9 and curve.count == [64] * 9
    ev = run.read_json("eval.json")
    assert len(ev["extrapolation"]["18"]["mean"]) == 18
    assert "diagnostics" not in ev  # the toy regression task has none
    prov = run.read_json("provenance.json")
    assert prov["device"].startswith("cpu") and "torch" in prov
    assert rows[0]["n_dims"] == 2 and rows[-1]["n_dims"] == 4 and rows[-1]["n_points"] == 9


def test_cot_runs_record_both_steps_in_eval_json(tmp_path: Path) -> None:
    cfg = RunConfig(
        name="cot", task=TaskConfig("cot_io", n_dims=3, kwargs={"hidden": 2}),
        model=ModelConfig(layers=("attn",), d_model=16, n_heads=2),
        train=TrainConfig(steps=4, batch_size=8, lr=1e-3, eval_every=4, ckpt_every=4, log_every=2),
        curriculum=CurriculumConfig(dims_start=3, dims_end=3, dims_inc=0, dims_interval=10, points_start=5,
                                    points_end=5, points_inc=0, points_interval=10),
        eval=EvalConfig(n_examples=16, batch_size=8),
    )
    ev = train(cfg, RunStore(tmp_path), device="cpu", progress=False).read_json("eval.json")
    assert sorted(ev["diagnostics"]) == ["s_error", "y_error_given_s"]
    for curve in ev["diagnostics"].values():
        assert curve["count"] == [16] * 5 and all(math.isfinite(m) for m in curve["mean"])
    # teacher-forced ŷ and the metric's ŷ (own ŝ in the prompt) are different predictions
    assert ev["diagnostics"]["y_error_given_s"]["mean"] != ev["curve"]["mean"]


def test_probes_score_every_residual_stream(tmp_path: Path) -> None:
    cfg = _cfg(steps=150, shared_w=True, layers=("attn", "mamba"))
    cfg = RunConfig(**{**cfg.__dict__, "eval": EvalConfig(n_examples=64, batch_size=32, probe=True)})
    run = train(cfg, RunStore(tmp_path), device="cpu", progress=False)
    probe = run.read_json("eval.json")["probe"]
    assert sorted(probe) == ["0", "1", "2"]  # read-in + after each block
    means = {layer: sum(c["mean"]) / len(c["mean"]) for layer, c in probe.items()}
    # y = wᵀx with one fixed w is linear in the x token itself: even the read-in state (layer 0) probes well
    assert all(m < 0.05 for m in means.values()), means
    lens = run.read_json("eval.json")["lens_probe"]  # Grazzi's logit-lens protocol, one row per residual stream
    assert lens["layer"] == [0, 1, 2] and len(lens["error"]) == len(lens["scale"]) == 3
    assert lens["error"][-1] < 0.5 * lens["error"][0], lens["error"]  # the output is far better than the read-in


def test_a_complete_run_is_not_trained_again(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    cfg = _cfg(steps=10)
    first = load_or_train(cfg, store, device="cpu", progress=False)
    before = (first.dir / "metrics.jsonl").read_bytes()
    again = load_or_train(cfg, store, device="cpu", progress=False)
    assert again.dir == first.dir and (again.dir / "metrics.jsonl").read_bytes() == before


def test_stop_and_resume_in_process_equals_uninterrupted(tmp_path: Path) -> None:
    cfg = _cfg(steps=40, layers=("mamba", "attn"))
    full = train(cfg, RunStore(tmp_path / "a"), device="cpu", progress=False)
    part = train(cfg, RunStore(tmp_path / "b"), device="cpu", progress=False, stop_after=17)
    assert part.status() == {"state": "running", "step": 17}
    resumed = train(cfg, RunStore(tmp_path / "b"), device="cpu", progress=False)
    assert resumed.metrics() == full.metrics()
    assert resumed.read_json("eval.json") == full.read_json("eval.json")
    # provenance names both training calls, in order, and the steps each one did
    segments = resumed.read_json("provenance.json")["segments"]
    assert [(s["from_step"], s["to_step"]) for s in segments] == [(0, 17), (17, 40)]
    assert all(s["device"].startswith("cpu") and s["step_mode"] == "eager" and s["seconds"] >= 0 for s in segments)
    assert [(s["from_step"], s["to_step"]) for s in full.read_json("provenance.json")["segments"]] == [(0, 40)]


def test_a_checkpoint_without_segments_says_its_first_steps_are_unrecorded(tmp_path: Path) -> None:
    """Checkpoints written before segments were recorded resume with an explicit `recorded: False` segment."""
    cfg = _cfg(steps=30)
    store = RunStore(tmp_path)
    part = train(cfg, store, device="cpu", progress=False, stop_after=12)
    ckpt = part.load_checkpoint(map_location="cpu")
    del ckpt["segments"]
    part.save_checkpoint(ckpt)
    done = train(cfg, store, device="cpu", progress=False)
    segments = done.read_json("provenance.json")["segments"]
    assert segments[0] == {"from_step": 0, "to_step": 12, "recorded": False}
    assert (segments[1]["from_step"], segments[1]["to_step"]) == (12, 30)


def test_sigkill_at_a_random_step_then_resume_is_bitwise_identical(tmp_path: Path) -> None:
    """A training process killed by SIGKILL mid-run, started again, ends with the uninterrupted run's metrics."""
    cfg = _cfg(steps=80)
    reference = train(cfg, RunStore(tmp_path / "ref"), device="cpu", progress=False)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(to_dict(cfg)))
    code = textwrap.dedent(
        f"""
        import sys, json
        sys.path.insert(0, {str(HERE)!r})
        import _toy
        from icllib.config import RunConfig, from_dict
        from icllib.store import RunStore
        import importlib
        T = importlib.import_module('icllib.training.train')  # the module (icllib.training.train is the function)
        cfg = from_dict(RunConfig, json.load(open({str(cfg_path)!r})))
        original = T.Run.save_checkpoint
        def announce(self, state):
            original(self, state)
            print("ckpt", state["step"], flush=True)
        T.Run.save_checkpoint = announce
        T.train(cfg, RunStore({str(tmp_path / "killed")!r}), device="cpu", progress=False)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    while True:  # kill after the third checkpoint (step 30), somewhere inside the next interval
        line = proc.stdout.readline()
        assert line, "the training process ended before it could be killed"
        if line.split() == ["ckpt", "30"]:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    store = RunStore(tmp_path / "killed")
    assert [r.cfg for r in store.incomplete()] == [cfg]
    resumed = train(cfg, store, device="cpu", progress=False)
    assert resumed.metrics() == reference.metrics()
    assert resumed.read_json("eval.json") == reference.read_json("eval.json")


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    cfg = _cfg(steps=40, nan_after=23)
    store = RunStore(tmp_path)
    with pytest.raises(TrainingDiverged, match="non-finite loss at step 24"):
        train(cfg, store, device="cpu", progress=False)
    run = store.open(cfg)
    assert run.status()["state"] == "failed" and run.status()["step"] == 24
    assert run.load_checkpoint()["step"] == 20  # the last checkpoint before the NaN
    assert all(r["step"] <= 20 for r in run.metrics())


def test_unavailable_device_raises(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="device: 'cuda' was requested"):  # before anything is written
        train(_cfg(steps=2), RunStore(tmp_path), device="cuda")
    assert not any(tmp_path.iterdir())
    with pytest.raises(RuntimeError, match="device: 'cuda' was requested"):
        resolve_device("cuda")


def test_curriculum_matches_the_official_update_rule() -> None:
    cfg = CurriculumConfig(dims_start=5, dims_end=20, dims_inc=1, dims_interval=2000, points_start=11,
                           points_end=41, points_inc=2, points_interval=2000)
    assert schedule(cfg, 0) == (5, 11)
    assert schedule(cfg, 1999) == (5, 11)
    assert schedule(cfg, 2000) == (6, 13)
    assert schedule(cfg, 15 * 2000 - 1) == (19, 39)
    assert schedule(cfg, 15 * 2000) == (20, 41)
    assert schedule(cfg, 10**7) == (20, 41)


def test_lr_schedules() -> None:
    warm = lr_lambda(RunConfig(name="x", task=TaskConfig("t"), train=TrainConfig(steps=100, warmup_steps=10,
                                                                                    schedule="cosine")))
    assert warm(0) == pytest.approx(0.1) and warm(9) == pytest.approx(1.0)
    assert warm(10) == pytest.approx(1.0) and warm(55) == pytest.approx(0.5) and warm(100) == pytest.approx(0.0)
    const = lr_lambda(RunConfig(name="x", task=TaskConfig("t"), train=TrainConfig(steps=100)))
    assert const(0) == const(99) == 1.0


def test_token_task_runs_store_unscored_positions_as_null(tmp_path: Path) -> None:
    """Token tasks score only some positions; a position no prompt counts has no mean (JSON null, NaN in Curve)."""
    cfg = RunConfig(
        name="tokens", task=TaskConfig("induction_heads", n_dims=16),
        model=ModelConfig(layers=("attn",), d_model=16, n_heads=2),
        train=TrainConfig(steps=4, batch_size=8, lr=1e-3, eval_every=2, ckpt_every=2, log_every=2),
        curriculum=CurriculumConfig(dims_start=16, dims_end=16, points_start=12, points_end=12),
        eval=EvalConfig(n_examples=16, batch_size=16),
    )
    run = train(cfg, RunStore(tmp_path), device="cpu", progress=False)
    raw = run.read_json("eval.json")["curve"]
    assert raw["mean"][0] is None and raw["count"][0] == 0 and raw["mean"][-1] is not None
    curve = final_curve(run)
    assert math.isnan(curve.mean[0]) and 0.0 <= curve.summary() <= 1.0
    assert run.metrics()[-1]["eval"][0] is None
