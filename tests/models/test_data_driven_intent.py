"""The intent term of a DATA_DRIVEN fit calibrated by experiments (docs/data_driven.md §6.1, "Calibration by
experiments"): the exposure moments against a plain-Python reference, the exposure factor, the intent
effects, and a small world written here in which intent drives both conversions and exposure.

The world: each user has an intent ``ζ ~ N(0, 1)`` that raises its baseline log-odds by ``1.2 ζ`` and its
exposure to ``c`` and ``d`` (their choice weights times ``exp(ζ)``); the user decides once after its last
touch, logistic in touch counts, ``d`` has no effect. Truth: per user the Shapley allocation of
``P(convert | exposures restricted to S) - P(convert | none)`` with ``ζ`` held; a lift test of a channel
reports its exact holdout effect ``Σ_u P_u(all) - P_u(all but the channel)``.
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

import optiq_engine as oq
from optiq_engine.kernels import journey_model as jm
from optiq_engine.models.data_driven.intent import CHANNEL_VARIANCE, FACTOR_SD, exposure_factor, intent_posterior
from optiq_engine.models.data_driven.journey_model import step_decays
from optiq_engine.paths import PathTable
from tests.reference import data_driven as ref

CHANNELS = ("a", "b", "c", "d")
EFFECT = np.array([0.8, 0.5, 0.15, 0.0])
CHOICE = np.array([0.35, 0.3, 0.2, 0.15])
LOADING = np.array([0.0, 0.0, 1.0, 1.0])


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def intent_world(n_users: int, seed: int) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Observed journeys (``path``, ``conv``, ``null``), the true shares and each channel's holdout effect."""
    rng = np.random.default_rng(seed)
    zeta = rng.standard_normal(n_users)
    lengths = 1 + np.minimum(rng.poisson(3.0, n_users), 14)
    weights = CHOICE[None, :] * np.exp(LOADING[None, :] * zeta[:, None])
    weights /= weights.sum(axis=1, keepdims=True)
    paths = [rng.choice(len(CHANNELS), size=m, p=w) for m, w in zip(lengths, weights, strict=True)]
    counts = np.array([np.bincount(p, minlength=len(CHANNELS)) for p in paths], dtype=np.float64)
    base = -2.6 + 1.2 * zeta
    masks = np.array(list(itertools.product([0, 1], repeat=len(CHANNELS))), dtype=np.float64)  # [16, C]
    p = _sigmoid(base[:, None] + (counts * EFFECT) @ masks.T)  # [users, 16]
    index = {tuple(m.astype(int)): i for i, m in enumerate(masks)}
    truth = np.zeros(len(CHANNELS))
    holdout = np.zeros(len(CHANNELS))
    full = index[(1,) * len(CHANNELS)]
    for c in range(len(CHANNELS)):
        holdout[c] = float((p[:, full] - p[:, index[tuple(int(i != c) for i in range(len(CHANNELS)))]]).sum())
        for m, i in index.items():
            if m[c]:
                continue
            size = sum(m)
            w = math.factorial(size) * math.factorial(len(CHANNELS) - size - 1) / math.factorial(len(CHANNELS))
            truth[c] += w * float((p[:, index[m[:c] + (1,) + m[c + 1 :]]] - p[:, i]).sum())
    converted = rng.random(n_users) < p[:, full]
    frame = pl.DataFrame({"path": [[CHANNELS[c] for c in q] for q in paths], "conv": converted.astype(int)})
    return frame.with_columns(null=1 - pl.col("conv")), truth / truth.sum(), holdout


def table_of(frame: pl.DataFrame) -> PathTable:
    return PathTable.from_frame(frame, conversions="conv", nulls="null", transform="frequency")


@pytest.fixture(scope="module")
def world() -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    return intent_world(8_000, seed=5)


def _distance(fit, truth: np.ndarray) -> float:
    return 0.5 * float(np.abs(fit.shares_for(CHANNELS) - truth).sum())


def test_two_lift_tests_correct_the_untested_channels_that_intent_drives(world) -> None:
    frame, truth, holdout = world
    table = table_of(frame)
    free = oq.models.DataDriven(form="auto").fit(table)
    tests = [oq.Experiment(ch, holdout[i], 0.05 * holdout[i]) for i, ch in enumerate(CHANNELS) if ch in ("a", "c")]
    fit = oq.models.DataDriven(form="auto", experiments=tests).fit(table)
    share = dict(zip(CHANNELS, fit.shares_for(CHANNELS), strict=True))
    free_share = dict(zip(CHANNELS, free.shares_for(CHANNELS), strict=True))
    assert free_share["d"] > 0.1  # intent makes the no-effect channel look effective
    assert share["d"] < 0.5 * free_share["d"]  # untested, moved by what the tests revealed
    assert _distance(fit, truth) < 0.5 * _distance(free, truth)
    assert np.abs(fit.experiment_checks.get_column("z").to_numpy()).max() < 0.5
    coef = fit.conversion_model.coefficients(table.channels).filter(pl.col("part") == "intent")
    intent = dict(zip(coef.get_column("term"), coef.get_column("coef"), strict=True))
    assert intent["d"] > 0.05 and abs(intent["a"]) < intent["d"]
    assert "intent the experiments revealed" in fit._repr_html_() and f"d {intent['d']:+.3f}" in fit._repr_html_()
    assert "intent the experiments revealed" not in free._repr_html_()


def test_tests_that_agree_with_the_fit_add_no_intent(world) -> None:
    frame, _, _ = world
    table = table_of(frame)
    free = oq.models.DataDriven(form="auto").fit(table)
    model = free.conversion_model
    code = table.channels.index("a")
    lift = float(np.dot(table.conversions + table.nulls, model.predict(table) - model.predict(table, drop=code)))
    fit = oq.models.DataDriven(form="auto", experiments=[oq.Experiment("a", lift, 0.05 * lift)]).fit(table)
    np.testing.assert_allclose(fit.shares_for(CHANNELS), free.shares_for(CHANNELS), atol=0.01)
    assert np.abs(fit.conversion_model.held).max() < 0.01


# --- the pieces ----------------------------------------------------------------------------------------

paths_st = st.lists(st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=8), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(paths=paths_st, rho=st.sampled_from([1.0, 0.7, 0.4]), sat=st.sampled_from([1.0, 0.6]), data=st.data())
def test_stock_moments_equal_the_reference(paths, rho, sat, data) -> None:
    weights = data.draw(st.lists(st.sampled_from([0.0, 1.0, 2.5, 1e6]), min_size=len(paths), max_size=len(paths)))
    frame = pl.DataFrame({"path": paths, "conv": weights, "null": [0.0] * len(paths)})
    table = PathTable.from_frame(frame, conversions="conv", nulls="null", transform="frequency")
    decay = step_decays(table, rho, math.inf)
    s0, s1, s2 = jm.stock_moments(table.offsets, table.codes, table.conversions, len(table.channels), decay, sat)
    k = len(table.channels) + 1
    want0, want1, want2 = 0.0, np.zeros(k), np.zeros((k, k))
    for p in range(table.height):
        path = tuple(table.channels[c] for c in table.codes[table.offsets[p] : table.offsets[p + 1]])
        stock = ref.journey_stock(path, len(path), rho, sat)
        y = np.array([stock.get(c, 0.0) for c in table.channels] + [math.log(len(path))])
        w = float(table.conversions[p])
        want0 += w
        want1 += w * y
        want2 += w * np.outer(y, y)
    assert s0 == pytest.approx(want0)
    np.testing.assert_allclose(s1, want1, rtol=1e-12)
    np.testing.assert_allclose(s2, want2, rtol=1e-12)


def test_the_exposure_factor_is_the_axis_intent_drives(world) -> None:
    frame, _, _ = world
    table = table_of(frame)
    loading, scale = exposure_factor(table, table.conversions + table.nulls, step_decays(table, 1.0, math.inf), 1.0)
    assert np.linalg.norm(loading) == pytest.approx(1.0)
    assert (scale > 0).all()
    by = dict(zip(table.channels, loading * np.sign(loading[table.channels.index("c")]), strict=True))
    assert by["c"] > 0.3 and by["d"] > 0.3  # driven together by intent
    assert by["a"] < 0 and by["b"] < 0  # crowded out when intent is high


def test_one_factor_effect_from_the_posterior() -> None:
    n_codes = 3
    n_par = 2 + 4 * n_codes + jm.N_BUCKETS
    loading, scale = np.array([0.6, 0.8, 0.0]), np.array([2.0, 1.0, 0.5])
    bias, noise = np.array([1.2]), np.array([0.1])  # channel 0's test: a bias of 1.2 standardised log-odds
    held, own = intent_posterior(bias, noise, [0], (loading, scale), [1, 2 + n_codes], n_par)
    var = CHANNEL_VARIANCE + 0.1**2
    precision = 0.36 / var + 1.0 / FACTOR_SD**2
    mean = 0.6 * 1.2 / var / precision
    # the slab against the spike, from the two marginal densities of Δ
    slab = scipy.stats.norm.logpdf(1.2, 0.0, np.sqrt(var + FACTOR_SD**2 * 0.36))
    spike = scipy.stats.norm.logpdf(1.2, 0.0, np.sqrt(var))
    p_slab = 1.0 / (1.0 + np.exp(spike - slab))
    assert p_slab > 0.9
    lam = p_slab * mean
    np.testing.assert_allclose(held[1:4], lam * loading / scale)
    np.testing.assert_allclose(held[2 + n_codes : 5 + n_codes], held[1:4])  # every part alike
    assert held[0] == held[1 + n_codes] == 0 and not held[2 + 2 * n_codes :].any()  # intercepts, ending
    np.testing.assert_allclose(own, lam * 0.6 + (1.2 - lam * 0.6) / (1 + 0.1**2))  # the test, nearly
    none, zero = intent_posterior(np.zeros(2), np.full(2, 0.1), [0, 1], (loading, scale), [1], n_par)
    assert not none.any() and not zero.any()
    weak, _ = intent_posterior(bias / 12, noise, [0], (loading, scale), [1], n_par)  # barely beyond the error
    assert 0 < weak[1] < 0.3 * held[1] / 12  # mostly the spike
    vague, own = intent_posterior(bias, np.array([1e6]), [0], (loading, scale), [1], n_par)
    assert np.abs(vague).max() < 1e-9 and abs(own[0]) < 1e-9  # a test without information moves nothing


def test_a_replicate_draws_the_factor_effect_from_its_posterior() -> None:
    """With ``rng`` (a bootstrap replicate) ``λ`` is a posterior draw: the spike (0) with its posterior
    probability, else the slab's normal posterior; the draws average to the posterior mean."""
    n_codes = 3
    n_par = 2 + 4 * n_codes + jm.N_BUCKETS
    loading, scale = np.array([0.6, 0.8, 0.0]), np.array([2.0, 1.0, 0.5])
    args = (np.array([0.3]), np.array([0.1]), [0], (loading, scale), [1], n_par)
    mean_held, _ = intent_posterior(*args)
    rng = np.random.default_rng(5)
    lam = np.array([intent_posterior(*args, rng)[0][1] * scale[0] / loading[0] for _ in range(20_000)])
    var = CHANNEL_VARIANCE + 0.1**2
    precision = 0.36 / var + 1.0 / FACTOR_SD**2
    slab = scipy.stats.norm.logpdf(0.3, 0.0, np.sqrt(var + FACTOR_SD**2 * 0.36))
    p_slab = 1.0 / (1.0 + np.exp(scipy.stats.norm.logpdf(0.3, 0.0, np.sqrt(var)) - slab))
    assert 0.2 < p_slab < 0.8  # both parts drawn
    assert np.mean(lam == 0.0) == pytest.approx(1.0 - p_slab, abs=0.015)
    drawn = lam[lam != 0.0]
    assert drawn.mean() == pytest.approx(0.6 * 0.3 / var / precision, abs=0.01)
    assert drawn.std() == pytest.approx(1.0 / np.sqrt(precision), rel=0.03)
    assert lam.mean() * loading[0] / scale[0] == pytest.approx(mean_held[1], abs=0.01)


def test_a_tests_bias_is_read_on_its_own_error_scale(world, monkeypatch) -> None:
    """The bias a test reveals, over its error (standardised log-odds), is the test's own disagreement with the
    observational fit over its standard error: the error is carried along the probe's path (the other
    parameters refitted), not by the slope at fixed other parameters."""
    import optiq_engine.models.data_driven.journey_model as jmod

    seen = []

    def spy(bias, noise, *args):
        seen.append(np.asarray(bias) / np.asarray(noise))
        return intent_posterior(bias, noise, *args)

    monkeypatch.setattr(jmod, "intent_posterior", spy)
    frame, _, holdout = world
    test = oq.Experiment("c", 0.6 * holdout[2], 0.1 * holdout[2])
    fit = oq.models.DataDriven(form="auto", experiments=test).fit(table_of(frame))
    check = fit.experiment_checks.row(0, named=True)
    z = (check["observational_incremental"] - check["incremental_conversions"]) / check["std_error"]
    assert abs(z) > 2  # a disagreement beyond the error
    assert len(seen) == len(fit.form_selection.filter(pl.col("weight") > 1e-3))  # one reading per candidate
    assert float(seen[0][0]) == pytest.approx(z, rel=0.001), (seen, z)


def test_a_test_weighs_by_its_error(world) -> None:
    frame, _, holdout = world
    table = table_of(frame)
    free = oq.models.DataDriven(form="auto").fit(table)
    vague = oq.Experiment("c", holdout[2], 1e6)  # no information: nothing moves
    fit = oq.models.DataDriven(form="auto", experiments=vague).fit(table)  # one test alone is a list of one
    np.testing.assert_allclose(fit.shares_for(CHANNELS), free.shares_for(CHANNELS), atol=1e-6)
    # two tests of one channel are met together, each weighed by its error (not the last one alone)
    both = [
        oq.Experiment("c", 0.5 * holdout[2], 0.1 * holdout[2]),
        oq.Experiment("c", 1.5 * holdout[2], 0.1 * holdout[2]),
    ]
    z = oq.models.DataDriven(form="auto", experiments=both).fit(table).experiment_checks.get_column("z").to_list()
    assert z[0] == pytest.approx(-z[1], abs=0.05) and 4 < z[0] < 6


def test_a_test_whose_period_holds_no_journey_is_refused(world) -> None:
    frame, _, holdout = world
    test = oq.Experiment(
        "c", holdout[2], 10.0, start=datetime(2025, 2, 1, tzinfo=UTC), end=datetime(2025, 3, 1, tzinfo=UTC)
    )
    table = table_of(frame)
    nobody = [(np.zeros(table.height), np.zeros(table.height))]  # the journeys of each row in the period: none
    with pytest.raises(oq.ModelError, match="no fitted journey with that channel ends in its period"):
        oq.models.DataDriven(experiments=[test]).fit(table, periods=nobody)


def test_the_form_choice_shown_is_the_one_made_without_the_tests(world) -> None:
    frame, _, holdout = world
    table = table_of(frame)
    free = oq.models.DataDriven(form="auto").fit(table)
    fit = oq.models.DataDriven(form="auto", experiments=[oq.Experiment("c", holdout[2], 20.0)]).fit(table)
    assert fit.form_selection.equals(free.form_selection)  # log-likelihoods and BIC agree with the weights
