"""icllib.analysis.report on fake run records in a temporary store (no training), plus one real baseline evaluation."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from icllib import experiments  # noqa: E402
from icllib.analysis import curves, report  # noqa: E402
from icllib.config import RunConfig  # noqa: E402
from icllib.store import Run, RunStore  # noqa: E402
from icllib.tasks import build_task  # noqa: E402
from icllib.training.evaluate import Curve  # noqa: E402


def _curve(mean: list[float], count: list[int] | None = None, metric: str = "normalized squared error") -> Curve:
    count = count if count is not None else [64] * len(mean)
    return Curve(mean=mean, sem=[0.01] * len(mean), count=count, metric=metric)


def _fake_run(store: RunStore, cfg: RunConfig, curve: Curve, history: list[tuple[int, list[float | None]]] = ()) -> Run:
    """A complete run without training: eval.json holds `curve`, metrics.jsonl one row per (step, eval curve)."""
    run = store.open(cfg)
    run.write_json("eval.json", {"n_points": len(curve.mean), "curve": curve.to_dict()})
    run.write_metrics([{"step": s, "loss": 0.0, "eval": ev} for s, ev in history])
    run.set_status("complete", step=cfg.train.steps)
    return run


def _grid(task: str) -> list[RunConfig]:
    return [c for c in experiments.results_grid("smoke") if c.task.name == task]


def test_the_grid_is_labelled_by_preset_across_width_changes() -> None:
    assert [curves.model_label(c) for c in _grid("linear_regression")] == list(experiments.PARK_MODELS)
    cot = experiments.cot_channel_scaling("smoke")
    assert {curves.model_label(c) for c in cot} == {"transformer", "mamba", "mambaformer"}
    assert {c.model.d_model for c in cot} == {16, 32}


def test_chance_levels_and_skill() -> None:
    lr, parity, mqar = _grid("linear_regression")[0], _grid("sparse_parity")[0], _grid("vector_mqar")[0]
    assert report.chance_level(lr) == 1.0
    assert report.chance_level(parity) == build_task(parity.task).blind_accuracy() > 0.55  # not a coin's 1/2
    assert report.chance_level(mqar) == pytest.approx(1 / mqar.curriculum.points_end)
    assert report.skill(1.0, 1.0, higher_is_better=False) == 0.0
    assert report.skill(0.0, 1.0, higher_is_better=False) == 1.0
    assert report.skill(0.75, 0.5, higher_is_better=True) == 0.5
    assert report.skill(1.5, 1.0, higher_is_better=False) < 0  # worse than predicting 0


def test_load_runs_and_final_table_read_the_store(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    configs = _grid("linear_regression")[:2] + _grid("sparse_parity")[:1]
    finals = [[1.0] * 30 + [0.2] * 11, [1.0] * 30 + [0.6] * 11, [0.5] * 30 + [0.9] * 10]
    for cfg, mean in zip(configs, finals, strict=True):
        _fake_run(store, cfg, _curve(mean))
    runs = report.load_runs(configs, store)  # complete in the store: nothing is trained
    table = report.final_table(configs, runs)
    assert list(table["model"]) == ["transformer", "mamba", "transformer"]
    assert list(table["task"]) == ["linear_regression", "linear_regression", "sparse_parity"]
    assert table["final"].tolist() == pytest.approx([0.2, 0.6, 0.9])
    blind = 71 / 128  # parity's trivial level (d=10, k=2)
    assert table["skill"].tolist() == pytest.approx([0.8, 0.4, (0.9 - blind) / (1 - blind)])
    assert list(table["higher_is_better"]) == [False, False, True]
    assert list(table["hash"]) == [r.hash for r in runs]


def test_history_and_steps_to_reach(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    configs = [c for c in experiments.parity_training_speed("smoke") if c.name.startswith("paritycurve_mamba_")][:2]
    histories = [[(10, [0.5, 0.5, 0.5, 0.5]), (20, [0.5, 0.5, 0.5, 1.0]), (30, [0.5, 1.0, 1.0, 1.0])],
                 [(10, [0.5, 0.5, 0.5, 0.5]), (20, [0.5, 0.5, 0.5, 0.5]), (30, [0.5, 0.5, 0.5, 0.6])]]
    runs = [_fake_run(store, c, _curve([0.5] * 4), h) for c, h in zip(configs, histories, strict=True)]
    steps, values = report.eval_history(runs[0], tail=0.25)
    assert steps == [10, 20, 30] and values == [0.5, 1.0, 1.0]
    history = report.history_table(configs, runs, tail=0.25)
    assert len(history) == 6 and set(history["seed"]) == {0, 1} and set(history["model"]) == {"mamba"}
    reach = report.steps_to_reach(history, threshold=0.9).set_index("seed")["step"]
    assert reach[0] == 20 and math.isnan(reach[1])


def test_best_baseline_ignores_zero_and_follows_the_metric_direction() -> None:
    curves = {"zero": _curve([0.0, 0.0]), "a": _curve([1.0, 0.5]), "b": _curve([1.0, 0.3])}
    assert report.best_baseline(curves, higher_is_better=False) == "b"
    assert report.best_baseline(curves, higher_is_better=True) == "a"
    assert report.best_baseline({"zero": _curve([1.0])}, higher_is_better=False) is None


def test_baselines_use_the_runs_eval_prompts() -> None:
    cfg = _grid("sparse_parity")[0]
    scored = curves.baseline_curves(cfg)
    assert set(scored) == {"parity_solver", "parity_gf2"}
    solver = scored["parity_solver"]
    assert len(solver.mean) == cfg.curriculum.points_end and solver.count[0] == cfg.eval.n_examples
    assert solver.mean[-1] == 1.0 and solver.mean[0] < 0.8  # identifies the subset from the examples
    head = curves.baseline_curves(cfg, n_examples=64)["parity_solver"]  # the first batch of the same prompts
    assert head.count[0] == 64 and head.mean != solver.mean
    assert curves.baseline_curves(cfg, n_examples=10**6)["parity_solver"].count[0] == cfg.eval.n_examples


def test_drawing_functions_put_what_they_claim_on_the_axes() -> None:
    table = pd.DataFrame({"model": ["mamba", "mamba", "transformer"], "task": ["a", "b", "a"], "seed": [0, 0, 0],
                          "final": [0.1, 0.9, 0.5], "skill": [0.9, 0.8, 0.5], "higher_is_better": [False, True, False],
                          "d_model": [16, 16, 16]})
    fig, ax = plt.subplots()
    report.heatmap(ax, table, rows=["transformer", "mamba"], cols=["a", "b"])
    assert [t.get_text() for t in ax.texts] == ["0.50", "–", "0.10", "0.90"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a ↓", "b ↑"]

    fig, ax = plt.subplots()
    history = pd.DataFrame({"model": ["mamba"] * 4, "seed": [0, 0, 1, 1], "step": [1, 2, 1, 2],
                            "value": [0.5, 0.7, 0.5, 0.9]})
    report.plot_spread(ax, history, "mamba")
    assert len(ax.lines) == 3  # two seeds + the mean
    assert list(ax.lines[-1].get_ydata()) == pytest.approx([0.5, 0.8])

    fig, ax = plt.subplots()
    reach = pd.DataFrame({"model": ["mamba", "mamba", "transformer"], "seed": [0, 1, 0],
                          "step": [100.0, float("nan"), float("nan")]})
    report.plot_reach(ax, reach, models=["mamba", "transformer"], never_at=500.0)
    heights = [p.get_height() for p in ax.patches]
    assert heights == [300.0]  # mamba's median counts the missed seed at never_at; transformer never: no bar
    hollow = [c.get_offsets().tolist() for c in ax.collections if len(c.get_offsets())]
    assert [500.0 in [pt[1] for pt in offsets] for offsets in hollow] == [False, True, True]

    fig, ax = plt.subplots()
    best = report.task_panel(ax, "a", {"mamba": _curve([1.0, 0.4])}, {"zero": _curve([1.0, 1.0]),
                             "least_squares": _curve([1.0, 0.0])}, higher_is_better=False, chance=1.0)
    assert best == "least_squares"
    assert [line.get_label() for line in ax.lines][:2] == ["mamba", "least_squares"]
    assert ax.get_xlabel() == "in-context examples $i$"
    fig, ax = plt.subplots()
    report.task_panel(ax, "q", {"mamba": _curve([float("nan"), 0.5], count=[0, 64], metric="accuracy"),
                                "transformer": _curve([float("nan"), 0.9], count=[0, 64], metric="accuracy")},
                      {}, higher_is_better=True, chance=0.25)
    assert ax.get_xlabel() == "model (scored at the single query)"  # one bar per model, not overlapping points
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.5, 0.9])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["mamba", "transformer"]
    plt.close("all")
