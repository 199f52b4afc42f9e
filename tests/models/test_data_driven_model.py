"""DATA_DRIVEN: the per-journey Shapley kernel against all orderings, the fit, crediting and invariants."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import optiq_engine as oq
from optiq_engine.grouping import stable_draws
from optiq_engine.kernels.logistic import (
    count_features,
    hazard_shapley,
    hazard_terms,
    logistic_hessian,
    logistic_loss_grad,
    path_shapley,
)
from optiq_engine.paths import PathTable
from tests.reference import data_driven as ref
from tests.reference.attribution import check_invariants

CHANNELS = tuple("abcdefgh")


@st.composite
def journeys(draw, max_len: int = 10):
    path = draw(st.lists(st.sampled_from(CHANNELS[:6]), min_size=1, max_size=max_len))
    beta = {c: draw(st.floats(-3, 3, allow_nan=False)) for c in CHANNELS}
    intercept = draw(st.floats(-6, 3, allow_nan=False))
    rho = draw(st.sampled_from([None, 0.3, 0.8]))
    return path, beta, intercept, rho


def _kernel_phi(path, beta, intercept, rho) -> dict[str, float]:
    codes = np.array([CHANNELS.index(c) for c in path], dtype=np.int32)
    offsets = np.array([0, len(path)], dtype=np.int64)
    off, code, value = count_features(offsets, codes, len(CHANNELS), rho or 0.0)
    b = np.array([beta[c] for c in CHANNELS])
    phi, sampled = path_shapley(off, code, value, b, intercept, np.zeros(1, np.uint64), 100, 0)
    assert sampled == 0
    return {CHANNELS[c]: phi[i] for i, c in enumerate(code)}


@given(journeys())
def test_path_shapley_equals_all_orderings(case) -> None:
    path, beta, intercept, rho = case
    counts = {c: path.count(c) for c in set(path)}
    expected = ref.logistic_shapley(counts, intercept, beta, rho=rho)
    got = _kernel_phi(path, beta, intercept, rho)
    assert got.keys() == expected.keys()
    for c, v in expected.items():
        assert math.isclose(got[c], v, rel_tol=1e-12, abs_tol=1e-12), c
    # Efficiency: Σφ = p(x) - σ(b).
    p_x = ref.logistic_probability(counts, intercept, beta, rho=rho)
    assert math.isclose(sum(got.values()), p_x - ref.sigmoid(intercept), rel_tol=1e-12, abs_tol=1e-12)


def _hazard_brute_force(path, beta, intercept, rho) -> dict[str, float]:
    """Shapley values of the touch-level game over all orderings, from its definition (docs §6)."""
    sig = ref.sigmoid

    def p_convert(active: frozenset) -> float:
        survive, seen = 1.0, {}
        for c in path:
            seen[c] = seen.get(c, 0) + 1
            z = intercept + sum(beta[x] * ref.saturation(k, rho) for x, k in seen.items() if x in active)
            survive *= 1.0 - sig(z)
        return 1.0 - survive

    players = sorted(set(path))
    totals = dict.fromkeys(players, 0.0)
    orders = list(itertools.permutations(players))
    for order in orders:
        before: frozenset = frozenset()
        for c in order:
            totals[c] += p_convert(before | {c}) - p_convert(before)
            before = before | {c}
    return {c: v / len(orders) for c, v in totals.items()}


@given(journeys(max_len=8))
def test_touch_level_shapley_equals_all_orderings(case) -> None:
    path, beta, intercept, rho = case
    codes = np.array([CHANNELS.index(c) for c in path], dtype=np.int32)
    b = np.array([beta[c] for c in CHANNELS])
    phi, sampled = hazard_shapley(
        np.array([0, len(path)]), codes, b, intercept, rho or 0.0, np.zeros(1, np.uint64), 100, 0
    )
    first = list(dict.fromkeys(path))
    got = dict(zip(first, phi.tolist(), strict=True))
    expected = _hazard_brute_force(path, beta, intercept, rho)
    for c, v in expected.items():
        assert math.isclose(got[c], v, rel_tol=1e-12, abs_tol=1e-13), c


@given(journeys(max_len=6), st.floats(-2, 2, allow_nan=False))
def test_path_shapley_symmetry_and_null_player(case, shared) -> None:
    path, beta, intercept, rho = case
    beta = {**beta, "a": shared, "b": shared, "c": 0.0}
    path = [c for c in path if c not in "abc"] + ["a", "b", "a", "b", "c"]  # a, b alike; c: no effect
    got = _kernel_phi(path, beta, intercept, rho)
    assert got["a"] == pytest.approx(got["b"], abs=1e-14)
    assert got["c"] == pytest.approx(0.0, abs=1e-15)


def test_sampled_shapley_beyond_twenty_channels_is_efficient_and_close() -> None:
    rng = np.random.default_rng(0)
    d = 22
    codes = np.arange(d, dtype=np.int32)
    off, code, value = count_features(np.array([0, d]), codes, d, 0.0)
    beta = rng.normal(0, 0.3, d)
    phi, sampled = path_shapley(off, code, value, beta, -2.0, np.ones(1, np.uint64), 4_000, 1)
    assert sampled == 1
    z = -2.0 + beta.sum()
    assert phi.sum() == pytest.approx(1 / (1 + math.exp(-z)) - 1 / (1 + math.exp(2.0)), abs=1e-12)
    # Against the exact value of a 20-channel path (the exact kernel): the same game with two null players.
    beta20 = beta.copy()
    beta20[20:] = 0.0
    phi20, _ = path_shapley(off, code, value, beta20, -2.0, np.ones(1, np.uint64), 4_000, 1)
    exact, _ = path_shapley(
        *count_features(np.array([0, 20]), codes[:20], 20, 0.0), beta20[:20], -2.0, np.ones(1, np.uint64), 4_000, 1
    )
    assert np.max(np.abs(phi20[:20] - exact)) < 0.01 * np.abs(exact).max() + 1e-4


def test_loss_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(1)
    table = PathTable.from_frame(
        pl.DataFrame(
            {
                "path": ["a > b", "b > b > c", "a", "c > a"],
                "total_conversions": [3, 1, 2, 0],
                "total_null": [5, 4, 1, 2],
            }
        ),
        transform="frequency",
    )
    feats = count_features(table.offsets, table.codes, 3, 0.5)
    x = rng.normal(size=4)
    loss, grad = logistic_loss_grad(x, *feats, table.conversions, table.nulls, 0.7)
    for i in range(4):
        e = np.zeros(4)
        e[i] = 1e-6
        num = (
            logistic_loss_grad(x + e, *feats, table.conversions, table.nulls, 0.7)[0]
            - logistic_loss_grad(x - e, *feats, table.conversions, table.nulls, 0.7)[0]
        ) / 2e-6
        assert grad[i] == pytest.approx(num, rel=1e-6, abs=1e-8)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_paths=st.integers(0, 12),
    rho=st.sampled_from([0.0, 0.5]),
    scale=st.sampled_from([0.1, 1.0, 8.0]),
)
def test_logistic_hessian_equals_the_reference(seed: int, n_paths: int, rho: float, scale: float) -> None:
    """The kernel against X'WX written out (tests/reference), and against finite differences of the gradient."""
    rng = np.random.default_rng(seed)
    n_codes = 4
    lengths = rng.integers(1, 6, n_paths)
    offsets = np.zeros(n_paths + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    codes = rng.integers(0, n_codes, int(offsets[-1])).astype(np.int32)
    conv, null = rng.integers(0, 4, n_paths).astype(float), rng.integers(0, 4, n_paths).astype(float)
    feats = count_features(offsets, codes, n_codes, rho)
    x = rng.normal(0, scale, n_codes + 1)
    loss, grad, got = logistic_hessian(x, *feats, conv, null, 0.7)
    want_loss, want_grad = logistic_loss_grad(x, *feats, conv, null, 0.7)
    assert loss == pytest.approx(want_loss, rel=1e-12, abs=1e-12)  # the one-pass loss and gradient
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-12)
    rows = [dict(zip(feats[1][a:b].tolist(), feats[2][a:b].tolist(), strict=True)) for a, b in pairwise(feats[0])]
    np.testing.assert_allclose(got, ref.logistic_hessian(x, rows, conv + null, 0.7), rtol=1e-10, atol=1e-12)
    for i in range(n_codes + 1):
        e = np.zeros(n_codes + 1)
        e[i] = 1e-6
        num = (
            logistic_loss_grad(x + e, *feats, conv, null, 0.7)[1]
            - logistic_loss_grad(x - e, *feats, conv, null, 0.7)[1]
        ) / 2e-6
        np.testing.assert_allclose(got[i], num, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_data_driven_in_attribute() -> None:
    data = oq.synthetic.generate(n_users=3_000, seed=2)
    result = oq.attribute(data.touchpoints, data.conversions, models=[oq.models.DataDriven(form="touch"), "LINEAR"])
    fit = result.fitted["DATA_DRIVEN"]
    links = result.links.with_columns(pl.col("model", "channel").cast(pl.String))
    check_invariants(links.to_dicts(), {c["conversion_id"]: c for c in data.conversions.to_dicts()})
    cc = fit.channel_credit
    assert cc.get_column("share").sum() == pytest.approx(1.0, rel=1e-12)
    assert "incremental_conversions" in cc.columns
    # The links of one journey follow its own Shapley values: the journey's channel with the largest φ
    # gets the largest total weight.
    assert 0 < fit.baseline_rate < 1
    assert fit.coefficients.columns == ["term", "coef", "std_error"]
    assert fit.coefficients.height == len(fit.paths.channels) + 1
    # Optimality: the gradient of the penalised loss vanishes at the fitted coefficients.
    m, t = fit.conversion_model, fit.paths
    x = np.concatenate([[m.intercept], m.beta])
    _, grad, _ = hazard_terms(x, t.offsets, t.codes, t.conversions, t.nulls, fit.model.l2, 0.0, False)
    assert np.abs(grad).max() < 1e-6 * t.conversions.sum()
    journey = oq.attribute(data.touchpoints, data.conversions, models=[oq.models.DataDriven(form="journey")])
    m, t = journey.fitted["DATA_DRIVEN"].conversion_model, journey.fitted["DATA_DRIVEN"].paths
    _, grad = logistic_loss_grad(np.concatenate([[m.intercept], m.beta]), *m.features, t.conversions, t.nulls, 1.0)
    assert np.abs(grad).max() < 1e-3 * t.conversions.sum() ** 0.5


def test_data_driven_credit_follows_the_journeys_shapley_values() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    minutes = [t0 + timedelta(minutes=i) for i in range(43)]
    tp = pl.DataFrame(
        {
            "touchpoint_id": ["t1", "t2", "t3"] + [f"x{i:02d}" for i in range(40)],
            "anon_id": ["u"] * 3 + [f"v{i // 2}" for i in range(40)],
            "channel": ["a", "b", "b"] + ["a", "c"] * 20,
            "occurred_at": minutes,
        }
    )
    cv = pl.DataFrame(
        {
            "conversion_id": ["c1", "c2"],
            "anon_id": ["u", "v0"],
            "value_micros": [1_000_001, 7],
            "occurred_at": [t0 + timedelta(days=1)] * 2,
        }
    )
    result = oq.attribute(tp, cv, models=[oq.models.DataDriven(form="journey")])
    fit = result.fitted["DATA_DRIVEN"]
    m = fit.conversion_model
    beta = dict(zip(fit.paths.channels, m.beta.tolist(), strict=True))
    expected = ref.logistic_shapley({"a": 1, "b": 2}, m.intercept, beta)
    # the journey's own max(φ, 0), no multipliers; credited with probability Σ max(φ, 0) / p, by a draw keyed
    # by the conversion id (docs/data_driven.md §5)
    assert not fit.balance.balanced
    pos = {c: max(v, 0.0) for c, v in expected.items()}
    total = sum(pos.values())
    p = ref.logistic_probability({"a": 1, "b": 2}, m.intercept, beta)
    credited = stable_draws(pl.Series(["c1"]), fit.model.seed)[0] < total / p
    links = result.links.filter(pl.col("conversion_id") == "c1").sort("position")
    if not credited:
        assert links.height == 0
        assert "c1" in result.unattributed.filter(pl.col("model") == "DATA_DRIVEN").get_column("conversion_id")
        return
    w = links.get_column("weight").to_list()
    assert w[0] == pytest.approx(pos["a"] / total, rel=1e-9, abs=1e-12)
    assert w[1] == pytest.approx(pos["b"] / total / 2, rel=1e-9)
    assert links.get_column("credited_value_micros").sum() == 1_000_001


@settings(max_examples=10)
@given(st.integers(0, 10_000))
def test_bootstrap_intervals_for_data_driven(seed) -> None:
    data = oq.synthetic.generate(n_users=600, seed=seed % 7)
    fit = oq.attribute(
        data.touchpoints, data.conversions, models=[oq.models.DataDriven(form="touch", bootstrap=8, seed=seed)]
    ).fitted["DATA_DRIVEN"]
    cc = fit.channel_credit
    assert (cc.get_column("ci_low") <= cc.get_column("ci_high")).all()
    assert fit.replicates.shape == (8, len(fit.paths.channels))
