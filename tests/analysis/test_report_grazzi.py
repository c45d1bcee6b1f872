"""report_grazzi: run selection, eval.json → Result, the segment / length / probe tables, baselines and figures."""

import dataclasses
import math

import matplotlib
import pytest

from icllib import experiments
from icllib.analysis import curves
from icllib.analysis import report_grazzi as rg
from icllib.store import RunStore
from icllib.training.evaluate import Curve

matplotlib.use("Agg")


def _curve(mean: list[float], count: int | list[int] = 8, metric: str = "squared_error") -> Curve:
    counts = [count] * len(mean) if isinstance(count, int) else count
    return Curve(mean=mean, sem=[0.1 if c > 1 else math.nan for c in counts], count=counts, metric=metric)


def _result(task: str = "linear_regression", model: str = "mamba", n: int = 4, **kw: object) -> rg.Result:
    fields = {"task": task, "model": model, "config_hash": "0" * 16, "n_points": n, "n_layers": 2,
              "curve": _curve([1.0] * n)} | kw
    return rg.Result(**fields)


@pytest.mark.parametrize(
    "experiment, models",
    [
        (experiments.regression_variants_extrapolation, {"transformer", "mamba", "s4d", "rwkv"}),
        (experiments.probing, {"transformer", "mamba"}),
        (experiments.selective_copying_induction, {"transformer", "mamba", "mamba_s4"}),
    ],
    ids=["07", "08", "09"],
)
def test_model_label_recovers_the_architecture(experiment, models: set[str]) -> None:
    configs = experiment("smoke")
    assert {curves.model_label(c) for c in configs} == models


def test_select_filters_and_names_unknown_values() -> None:
    configs = experiments.regression_variants_extrapolation("smoke")
    picked = rg.select(configs, tasks=["decision_tree", "linear_regression"], models=["mamba"])
    assert [c.name for c in picked] == ["grazzi_linear_regression_mamba", "grazzi_decision_tree_mamba"]
    assert rg.select(configs) == configs
    with pytest.raises(ValueError, match="'parity' is not in this experiment; known: linear_regression"):
        rg.select(configs, tasks=["parity"])
    with pytest.raises(ValueError, match="'gpt' is not in this experiment"):
        rg.select(configs, models=["gpt"])


def test_segment_table_splits_the_longest_curve_at_multiples_of_n() -> None:
    n = 4
    long = _curve([9.0] * n + [2.0] * n + [3.0] * (2 * n))  # positions 0..4n-1 of the 4n evaluation
    r = _result(n=n, curve=_curve([1.0, 1.0, 1.0, 0.5]), extrapolation={2 * n: _curve([5.0] * 2 * n), 4 * n: long})
    table = rg.segment_table([r])
    assert list(table.segment) == ["0-n", "n-2n", "2n-4n"]
    assert table.error.tolist() == pytest.approx([0.875, 2.0, 3.0])
    assert table.ratio.tolist() == pytest.approx([1.0, 4.0, 6.0])  # divided by the last quarter of [0, n): 0.5
    wide = rg.wide(table, "segment", "error")
    assert list(wide.columns) == ["0-n", "n-2n", "2n-4n"] and wide.shape == (1, 3)


def test_segment_table_without_extrapolation_has_one_row() -> None:
    table = rg.segment_table([_result(), _result(model="s4d")])
    assert list(table.model) == ["mamba", "s4d"] and set(table.segment) == {"0-n"}


def test_length_table_skips_unscored_positions() -> None:
    # induction heads: only the last token is scored; the other positions have count 0 and NaN means
    nan = math.nan
    curve = _curve([nan, nan, 0.75], count=[0, 0, 16], metric="accuracy")
    longer = _curve([nan] * 5 + [0.25], count=[0] * 5 + [16], metric="accuracy")
    r = _result(task="induction_heads", n=3, curve=curve, extrapolation={6: longer})
    table = rg.length_table([r])
    assert table.length.tolist() == [3, 6]
    assert table.value.tolist() == pytest.approx([0.75, 0.25])
    assert table.trained.tolist() == [True, False] and table.scale.tolist() == ["1x", "2x"]
    assert set(table.metric) == {"accuracy"}


def test_probe_table_depth_and_output_row() -> None:
    probe = {0: _curve([1.0, 0.8]), 1: _curve([0.6, 0.4]), 2: _curve([0.3, 0.1])}
    r = _result(n=2, curve=_curve([0.2, 0.0]), probe=probe)
    table = rg.probe_table([r], start=1)
    assert table.layer.tolist() == ["0", "1", "2", "output"]
    assert table.depth.tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0])
    assert table.error.tolist() == pytest.approx([0.8, 0.4, 0.1, 0.0])
    deeper = _result(n=2, model="transformer", curve=_curve([0.2, 0.0]), n_layers=3,
                     probe={**probe, 3: _curve([0.1, 0.1])})
    wide = rg.wide(rg.probe_table([r, deeper]), "layer", "error")
    assert list(wide.columns) == ["0", "1", "2", "3", "output"]
    assert math.isnan(wide.loc[("linear_regression", "mamba"), "3"])
    with pytest.raises(ValueError, match="no 'probe'"):
        rg.probe_table([_result()])


def test_lens_table_and_figure_leave_out_runs_without_a_lens_probe() -> None:
    lens = {"layer": [0, 1, 2], "error": [0.9, 0.3, 0.1], "sem": [0.01] * 3, "scale": [0.1, 0.7, 1.0],
            "shift": [0.2, 0.1, 0.0]}
    with_lens, without = _result(lens=lens), _result(model="transformer")
    table = rg.lens_table([with_lens, without])
    assert table.model.unique().tolist() == ["mamba"]
    assert table.depth.tolist() == pytest.approx([0.0, 0.5, 1.0]) and table.scale.tolist() == [0.1, 0.7, 1.0]
    fig = rg.plot_lens([with_lens, without])
    assert len(fig.axes) == 3 and fig.axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match="no result has a 'lens_probe'"):
        rg.lens_table([without])


def test_load_results_reads_stored_runs_without_training(tmp_path) -> None:
    store = RunStore(tmp_path)
    cfg = experiments.probing("smoke")[0]
    run = store.open(cfg)
    curve = _curve([1.0, 0.5])
    run.write_json("eval.json", {"n_points": 2, "curve": curve.to_dict(),
                                 "probe": {"0": curve.to_dict(), "1": curve.to_dict(), "2": curve.to_dict()}})
    run.set_status("complete", step=cfg.train.steps)
    (r,) = rg.load_results([cfg], store)
    assert (r.task, r.model, r.n_points, r.n_layers) == ("skewed_linear_regression", "transformer", 2, 2)
    assert sorted(r.probe) == [0, 1, 2] and r.extrapolation == {}
    assert not run.has("ckpt.pt") and not run.has("metrics.jsonl")  # nothing was trained


def test_tiny_real_run_gives_curves_at_every_length(tmp_path) -> None:
    cfg = rg.select(experiments.regression_variants_extrapolation("smoke"), tasks=["linear_regression"],
                    models=["transformer"])[0]
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=2, eval_every=2, ckpt_every=2),
                              eval=dataclasses.replace(cfg.eval, n_examples=8, batch_size=8))
    (r,) = rg.load_results([cfg], RunStore(tmp_path))
    assert sorted(r.extrapolation) == [82, 164] and len(r.curve.mean) == r.n_points == 41
    assert len(r.extrapolation[164].mean) == 164
    table = rg.segment_table([r])
    assert list(table.segment) == ["0-n", "n-2n", "2n-4n"] and table.error.notna().all()


def test_baseline_curves_least_squares_is_exact_after_d_examples() -> None:
    cfg = rg.select(experiments.regression_variants_extrapolation("smoke"), tasks=["linear_regression"])[0]
    scored = curves.baseline_curves(cfg, ["least_squares", "ridge", "lasso"], n_points=30, n_examples=32)
    assert sorted(scored) == ["least_squares", "ridge"]  # lasso does not apply to plain linear regression
    ls = scored["least_squares"]
    assert len(ls.mean) == 30 and ls.count[0] == 64  # one batch of 64 prompts at least
    assert max(ls.mean[21:]) < 1e-6 and ls.mean[5] > 0.3  # exact from i > d = 20, (d - i)/d before


def test_slow_baselines_see_only_the_first_prompts() -> None:
    cfg = rg.select(experiments.regression_variants_extrapolation("smoke"), tasks=["sparse_linear_regression"])[0]
    scored = curves.baseline_curves(cfg, ["least_squares", "lasso"], n_points=12, n_examples=64, slow_examples=5)
    assert scored["least_squares"].count[3] == 64 and scored["lasso"].count[3] == 5
    full = curves.baseline_curves(cfg, ["lasso"], n_points=12, n_examples=64)["lasso"]
    assert full.count[3] == 64 and full.mean != scored["lasso"].mean


def test_the_legend_lists_a_baseline_drawn_on_a_later_panel_only() -> None:
    results = [_result(task=t, model="mamba") for t in ("linear_regression", "sparse_linear_regression")]
    fig = rg.plot_curves(results, {"sparse_linear_regression": {"lasso": _curve([0.5] * 16)}})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["mamba", "lasso"]


def test_figures_have_one_panel_per_task() -> None:
    probe = {layer: _curve([1.0 - 0.2 * layer] * 4) for layer in range(3)}
    results = [_result(task=t, model=m, extrapolation={8: _curve([0.5] * 8), 16: _curve([0.5] * 16)}, probe=probe)
               for t in ("linear_regression", "decision_tree") for m in ("mamba", "transformer")]
    assert len(rg.plot_curves(results, {"linear_regression": {"least_squares": _curve([0.5] * 16)}}).axes) == 2
    assert len([a for a in rg.plot_extrapolation(results).axes if a.axison]) == 2
    assert len([a for a in rg.plot_probe_depth(results).axes if a.axison]) == 2
    assert len(rg.plot_probe_positions(results, "decision_tree").axes) == 2
    with pytest.raises(ValueError, match="no result for task 'parity'"):
        rg.plot_probe_positions(results, "parity")
    tokens = [_result(task="induction_heads", n=4, curve=_curve([0.5] * 4, metric="accuracy"),
                      extrapolation={8: _curve([0.4] * 8, metric="accuracy")})]
    assert len(rg.plot_lengths(tokens, chance={"induction_heads": 1 / 16}).axes) == 1
