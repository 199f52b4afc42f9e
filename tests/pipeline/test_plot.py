"""optiq_engine.plot drawn headless (Agg), checked on what it drew; HTML summaries of results."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import polars as pl
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.container import BarContainer, ErrorbarContainer  # noqa: E402

import optiq_engine as oq  # noqa: E402
from optiq_engine import plot  # noqa: E402
from optiq_engine.errors import ConfigError, InputError  # noqa: E402

pytestmark = pytest.mark.slow  # the module's result: every data-driven model with a bootstrap
MODELS = ["LAST_TOUCH", "LINEAR", "MARKOV", "SHAPLEY", "DATA_DRIVEN"]


@pytest.fixture(scope="module")
def data() -> oq.synthetic.SyntheticData:
    return oq.synthetic.generate(n_users=1_500, seed=3)


@pytest.fixture(scope="module")
def result(data) -> oq.AttributionResult:
    return oq.attribute(data.touchpoints, data.conversions, models=MODELS, bootstrap=8, seed=1)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _bars(ax) -> list[BarContainer]:
    return [c for c in ax.containers if isinstance(c, BarContainer)]


def test_import_optiq_engine_does_not_import_matplotlib():
    code = "import sys, optiq_engine; assert 'matplotlib' not in sys.modules and 'optiq_engine.plot' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plot_credit_draws_channels_x_models_bars(result):
    ax = plot.plot_credit(result)
    channels = result.credit.get_column("channel").cast(pl.String).unique().len()
    bars = _bars(ax)
    assert [b.get_label() for b in bars] == MODELS
    assert sum(len(b) for b in bars) == channels * len(MODELS)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(
        dict.fromkeys(result.credit.get_column("channel").cast(pl.String).to_list())
    )
    # heights are the credited conversions: each model's bars add up to its credited total
    for bar, model in zip(bars, MODELS, strict=True):
        total = result.credit.filter(pl.col("model") == model).get_column("conversions").sum()
        assert sum(r.get_height() for r in bar) == pytest.approx(total)
    assert ax.get_ylabel() == "attributed conversions"
    assert ax.get_legend() is not None


def test_plot_credit_value_in_currency_units_and_model_subset(result):
    ax = plot.plot_credit(result, models=["linear", "MARKOV"], value=True)
    bars = _bars(ax)
    assert [b.get_label() for b in bars] == ["LINEAR", "MARKOV"]
    micros = result.credit.filter(pl.col("model") == "LINEAR").get_column("value_micros").sum()
    assert sum(r.get_height() for r in bars[0]) == pytest.approx(micros / 1e6)
    assert "currency units" in ax.get_ylabel()


def test_plot_credit_on_a_given_axes_and_a_credit_frame(result):
    fig, ax = plt.subplots()
    out = plot.plot_credit(result.credit.to_pandas(), ax=ax)
    assert out is ax and ax.figure is fig
    assert len(_bars(ax)) == len(MODELS)


def test_plot_credit_refuses_an_unknown_model(result):
    with pytest.raises(ConfigError, match="POSITION_BASED"):
        plot.plot_credit(result, models=["POSITION_BASED"])
    with pytest.raises(InputError, match="value_micros"):
        plot.plot_credit(pl.DataFrame({"model": ["A"], "channel": ["x"], "conversions": [1.0]}))


def test_plot_credit_intervals_whiskers_are_the_bootstrap_intervals(result):
    fit = result.fitted["MARKOV"]
    ax = plot.plot_credit_intervals(fit)
    (bars,) = _bars(ax)
    (whiskers,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    cc = fit.channel_credit
    assert len(bars) == cc.height
    np.testing.assert_allclose([r.get_width() for r in bars], cc.get_column("share").to_numpy())
    segments = whiskers.lines[2][0].get_segments()
    np.testing.assert_allclose([s[0][0] for s in segments], np.minimum(cc["ci_low"], cc["share"]))
    np.testing.assert_allclose([s[1][0] for s in segments], np.maximum(cc["ci_high"], cc["share"]))
    assert "95 %" in ax.get_title()
    assert "fraction of 1" in ax.get_xlabel()


def test_plot_credit_intervals_of_every_fit_and_without_bootstrap(result, data):
    ax = plot.plot_credit_intervals(result.fitted)
    channels = len({c for f in result.fitted.values() for c in f.channel_credit.get_column("channel")})
    assert sum(len(b) for b in _bars(ax)) == channels * len(result.fitted)
    assert len([c for c in ax.containers if isinstance(c, ErrorbarContainer)]) == len(result.fitted)
    plain = oq.attribute(data.touchpoints, data.conversions, models=["MARKOV"]).fitted["MARKOV"]
    ax = plot.plot_credit_intervals(plain)
    assert not [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert "no bootstrap" in _bars(ax)[0].get_label()


def test_plot_transition_matrix_cells_are_the_probabilities(result):
    fit = result.fitted["MARKOV"]
    ax = plot.plot_transition_matrix(fit)
    (image,) = ax.get_images()
    grid = image.get_array()
    rows = [t.get_text() for t in ax.get_yticklabels()]
    cols = [t.get_text() for t in ax.get_xticklabels()]
    assert rows[0] == "(start)" and cols[-2:] == ["(conversion)", "(null)"]
    assert grid.shape == (len(rows), len(cols))
    for a, b, p in fit.transition_matrix.select("from_state", "to_state", "probability").iter_rows():
        assert grid[rows.index(a), cols.index(b)] == pytest.approx(p)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)  # every transient state leaves somewhere
    assert ax.get_xlabel() == "to state" and ax.get_ylabel() == "from state"
    assert len(ax.texts) == int((grid > 0).sum())  # annotated at this size


def test_plot_transition_matrix_order_2(data):
    fit = oq.attribute(data.touchpoints, data.conversions, models=[oq.models.Markov(order=2)]).fitted["MARKOV"]
    ax = plot.plot_transition_matrix(fit, annotate=False)
    assert "order 2" in ax.get_title()
    assert not ax.texts
    assert ax.get_images()[0].get_array().shape[0] == fit.transition_matrix.get_column("from_state").n_unique()


def test_plot_paths_from_a_fit_counts_converting_and_non_converting_journeys(result):
    fit = result.fitted["MARKOV"]
    ax = plot.plot_paths(fit, top=7)
    converting, nulls = _bars(ax)
    assert len(converting) == len(nulls) == 7
    frame = fit.paths.to_frame().with_columns(
        pl.col("path").list.join(" > "), total=pl.col("conversions") + pl.col("nulls")
    )
    frame = frame.sort(["total", "path"], descending=[True, False]).head(7)
    assert [t.get_text() for t in ax.get_yticklabels()] == frame.get_column("path").to_list()
    np.testing.assert_allclose([r.get_width() for r in converting], frame.get_column("conversions").to_numpy())
    np.testing.assert_allclose([r.get_width() for r in nulls], frame.get_column("nulls").to_numpy())


def test_plot_paths_from_links_and_from_a_paths_frame(result):
    ax = plot.plot_paths(result, top=5)
    (bars,) = _bars(ax)  # links: converting journeys only
    first = result.links_for("LAST_TOUCH")
    paths = (
        first.sort("conversion_id", "position")
        .group_by("conversion_id", maintain_order=True)
        .agg(pl.col("channel").cast(pl.String).str.join(" > "))
    )
    assert bars[0].get_width() == paths.get_column("channel").value_counts(sort=True).item(0, "count")
    assert sum(r.get_width() for r in bars) <= result.n_conversions
    frame = pl.DataFrame({"path": ["a > b", "b", "a"], "total_conversions": [3, 1, 0], "total_null": [1, 5, 9]})
    ax = plot.plot_paths(frame, top=2)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    with pytest.raises(ConfigError, match="top"):
        plot.plot_paths(frame, top=0)


def test_compare_with_truth_and_plot_accuracy(result, data):
    scores = plot.compare_with_truth(result, data.truth)
    assert scores.columns == ["model", "channel", "share", "true_share", "error"]
    assert scores.get_column("model").unique(maintain_order=True).to_list() == MODELS
    sums = scores.group_by("model").agg(pl.col("share").sum(), pl.col("true_share").sum())
    np.testing.assert_allclose(sums.get_column("share").to_numpy(), 1.0)
    np.testing.assert_allclose(sums.get_column("true_share").to_numpy(), 1.0)
    markov = scores.filter(pl.col("model") == "MARKOV").sort("channel")
    expected = result.fitted["MARKOV"].channel_credit.sort("channel")
    np.testing.assert_allclose(markov.get_column("share").to_numpy(), expected.get_column("share").to_numpy())

    ax = plot.plot_accuracy(scores)
    points = ax.collections
    assert len(points) == len(MODELS)
    channels = scores.get_column("channel").n_unique()
    assert all(len(p.get_offsets()) == channels for p in points)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    tv = 0.5 * markov.get_column("error").abs().sum()
    assert f"MARKOV (TV {tv:.3f})" in labels
    assert "true share" in ax.get_xlabel() and "recovered share" in ax.get_ylabel()
    far = scores.filter(pl.col("error").abs() >= 0.05)
    assert sorted(t.get_text() for t in ax.texts) == sorted(far.get_column("channel").to_list())
    assert not plot.plot_accuracy(scores, annotate=None).texts


def test_result_html_shows_models_conversions_and_credit(result):
    page = result._repr_html_()
    for model in MODELS:
        assert model in page
    assert f"{result.n_conversions:,}" in page
    assert "unattributed" in page and "attributed" in page
    linear = result.credit.filter((pl.col("model") == "LINEAR") & (pl.col("channel") == "email")).item(0, "conversions")
    assert f"{linear:,.1f}" in page
    assert "<script" not in page


def test_result_html_lists_unattributed_reasons(data):
    late = data.conversions.with_columns(pl.col("anon_id") + "_nobody")
    page = oq.attribute(data.touchpoints, late, models=["LINEAR"])._repr_html_()
    assert "unattributed by reason" in page


def test_fitted_html_shows_parameters_intervals_and_statistic(result):
    for name, statistic in (
        ("MARKOV", "removal_effect"),
        ("SHAPLEY", "shapley_value"),
        ("DATA_DRIVEN", "incremental_conversions"),
    ):
        page = result.fitted[name]._repr_html_()
        assert statistic in page and "ci_low" in page and "bootstrap=8" in page
        top = result.fitted[name].channel_credit.sort("share", descending=True).row(0, named=True)
        assert f"{top['share']:.4f}" in page
    assert "P(conversion)" in result.fitted["MARKOV"]._repr_html_()
    assert "baseline rate" in result.fitted["DATA_DRIVEN"]._repr_html_()
