"""icllib.analysis.curves: the band, the one curve drawing, the position averages, model labels, baseline curves."""

import dataclasses
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from icllib import experiments  # noqa: E402
from icllib.analysis import curves  # noqa: E402
from icllib.config import PROFILES  # noqa: E402
from icllib.models.presets import PRESETS  # noqa: E402
from icllib.training.evaluate import Curve  # noqa: E402

NAN = math.nan


def _curve(mean: list[float], sem: list[float] | None = None, count: list[int] | None = None) -> Curve:
    count = count if count is not None else [64] * len(mean)
    return Curve(mean=mean, sem=sem if sem is not None else [0.1] * len(mean), count=count, metric="error")


def test_band_is_mean_plus_minus_z90_sem_with_an_undefined_sem_as_zero() -> None:
    lo, hi = curves.band(_curve([1.0, 0.5, NAN], sem=[0.2, NAN, NAN], count=[64, 1, 0]))
    assert curves.Z90 == 1.645
    assert lo[:2] == pytest.approx([1.0 - 1.645 * 0.2, 0.5]) and hi[:2] == pytest.approx([1.0 + 1.645 * 0.2, 0.5])
    assert math.isnan(lo[2]) and math.isnan(hi[2])  # nobody scored it


def test_plot_curve_skips_unscored_positions_and_shades_in_the_lines_colour() -> None:
    fig, ax = plt.subplots()
    line = curves.plot_curve(ax, _curve([NAN, 0.8, 0.6, 0.4], count=[0, 64, 64, 64]), limit=3, color="#d62728",
                             label="mamba")
    assert list(line.get_xdata()) == [1, 2] and list(line.get_ydata()) == [0.8, 0.6]
    (shade,) = ax.collections
    assert np.allclose(shade.get_facecolor()[0][:3], matplotlib.colors.to_rgb("#d62728"))
    assert line.get_marker() in (None, "None")
    fig, ax = plt.subplots()
    single = curves.plot_curve(ax, _curve([NAN, 0.5], count=[0, 64]), shade=False, color="k")
    assert single.get_marker() == "o" and not ax.collections  # one point: a marker; no band asked for
    plt.close("all")


def test_segment_mean_late_metric_and_summary_agree() -> None:
    curve = _curve([NAN, 0.9, 0.7, NAN, 0.5, 0.3, 0.2, 0.1], count=[0, 64, 64, 0, 64, 64, 64, 64])
    assert curves.segment_mean(curve, 0, len(curve.mean)) == curve.summary()
    assert curves.segment_mean(curve, 4, 6) == pytest.approx(0.4)
    assert math.isnan(curves.segment_mean(curve, 0, 1))  # only an unscored position
    # 6 scored positions: the last quarter is the last 2, starting at position 6
    assert curves.late_start(curve) == 6
    assert curves.late_metric(curve) == curves.segment_mean(curve, 6, 8) == curve.summary(6) == pytest.approx(0.15)
    assert curves.late_metric(curve, tail=0.0) == 0.1  # at least one position: the last scored one
    assert curves.late_metric(curve, tail=1.0) == curve.summary()
    # an MQAR-like curve: only the query position was counted
    assert curves.late_metric(_curve([NAN] * 4 + [0.75], count=[0] * 4 + [128])) == 0.75
    assert math.isnan(curves.late_metric(_curve([NAN, NAN], count=[0, 0])))


def test_late_metric_of_bare_values_skips_none_and_nan() -> None:
    late = [curves.late_metric(curves.values_curve(v), tail) for v, tail in
            [([0, 0, 0, 0, 0, 0, 4, 8], 0.25), ([1.0, None, NAN, 3.0], 0.5), ([5.0, 7.0], 0.0)]]
    assert late == [6.0, 3.0, 7.0]
    assert math.isnan(curves.late_metric(curves.values_curve([None, NAN])))


@pytest.mark.parametrize("profile", PROFILES)
def test_model_label_names_every_preset_and_ignores_widths_and_positions(profile: str) -> None:
    for name, factory in PRESETS.items():
        model = factory(profile)
        cfg = experiments.tour(profile)[0]
        cfg = dataclasses.replace(cfg, model=model)
        assert curves.model_label(cfg) == name
        wider = dataclasses.replace(model, d_model=2 * model.d_model, pos_emb=not model.pos_emb, max_len=4096)
        assert curves.model_label(dataclasses.replace(cfg, model=wider)) == name


def test_model_label_of_every_experiment_is_its_preset_and_rejects_other_models() -> None:
    for name in experiments.EXPERIMENTS.names():
        for cfg in experiments.EXPERIMENTS.get(name)("smoke"):
            assert curves.model_label(cfg) in PRESETS
    cfg = experiments.tour("smoke")[0]
    odd = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, layers=("attn", "mamba", "mamba")))
    with pytest.raises(ValueError, match="none of the presets"):
        curves.model_label(odd)


def test_baseline_curves_follow_names_and_skip_slow_ones_when_asked() -> None:
    cfg = experiments.regression_variants_extrapolation("smoke")[0]  # linear regression
    scored = curves.baseline_curves(cfg, ["ridge", "least_squares", "lasso", "knn"], n_points=12, n_examples=16)
    assert list(scored) == [n for n in ("ridge", "least_squares", "knn") if n in scored]
    fast = curves.baseline_curves(cfg, n_points=12, n_examples=16, slow=False)
    assert fast and not set(fast) & set(curves.SLOW_BASELINES)
    assert fast["least_squares"].mean == scored["least_squares"].mean  # the same prompts
