"""Tests of the synthetic generator's scenarios (``scenario=``, docs/synthetic.md §9).

The truth kernel with interaction and order terms is compared with a brute-force reference that
enumerates every conversion path of small users, written from ``docs/synthetic.md`` (§2.8, §9).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from optiq_engine.errors import ConfigError
from optiq_engine.simulate import synthetic
from optiq_engine.simulate.synthetic import (
    CHANNELS,
    SCENARIOS,
    ChannelParams,
    Follower,
    Interaction,
    OrderEffect,
    Scenario,
    _kernels,
    generate,
    generator,
    get_scenario,
    iter_generate,
    scenarios,
    simulation,
)

PRESETS = list(SCENARIOS)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _digest(data: synthetic.SyntheticData) -> str:
    """A fingerprint of every value of the three frames."""
    digest = hashlib.sha256()
    for frame in (data.touchpoints, data.conversions, data.truth):
        for series in frame.get_columns():
            digest.update(str(series.to_list()).encode())
    return digest.hexdigest()[:16]


def _inert(scenario: Scenario) -> list[str]:
    """Channels with no effect at all: beta 0 and in no extra term."""
    in_terms = {c for term in (*scenario.interactions, *scenario.orders) for c in term[:2]}
    return [c for c in CHANNELS if scenario.channels[c].beta == 0.0 and c not in in_terms]


# ----------------------------------------------------------------------------------------------
# the API
# ----------------------------------------------------------------------------------------------


def test_scenario_names_and_descriptions() -> None:
    assert PRESETS == [
        "default",
        "additive",
        "late_channel",
        "reach_no_effect",
        "correlated",
        "interaction",
        "saturation",
        "order_effect",
    ]
    for name, description in SCENARIOS.items():
        assert get_scenario(name).name == name
        assert description and "\n" not in description
    with pytest.raises(TypeError):
        SCENARIOS["x"] = "read-only"  # type: ignore[index]


def test_default_output_is_pinned() -> None:
    """The fingerprint of generate(n_users=3000, seed=0) computed before scenarios existed."""
    data = generate(n_users=3_000, seed=0)
    assert _digest(data) == "6572920861d939c3"
    assert_frame_equal(generate(n_users=3_000, seed=0, scenario="default").truth, data.truth)
    assert_frame_equal(generate(n_users=3_000, seed=0, scenario=get_scenario("default")).touchpoints, data.touchpoints)


def test_default_scenario_is_the_module_constants() -> None:
    default = get_scenario("default")
    assert dict(default.channels) == {c: ChannelParams(*scenarios._CHANNEL_PARAMS[c]) for c in CHANNELS}
    assert (default.alpha, default.intercept_sd, default.rho) == (
        scenarios._ALPHA,
        scenarios._INTERCEPT_SD,
        scenarios._RHO,
    )
    assert default.interactions == default.orders == () and default.follower is None


@pytest.mark.parametrize("name", PRESETS)
def test_each_scenario_runs_deterministically_with_exact_zero_truth(name: str) -> None:
    scenario = get_scenario(name)
    data = generate(n_users=1_500, seed=4, scenario=name)
    again = generate(n_users=1_500, seed=4, scenario=scenario)
    assert_frame_equal(data.touchpoints, again.touchpoints)
    assert_frame_equal(data.conversions, again.conversions)
    assert_frame_equal(data.truth, again.truth)
    other = generate(n_users=1_500, seed=5, scenario=name)
    assert not other.touchpoints.equals(data.touchpoints)
    truth = data.truth
    assert truth["beta"].to_list() == [scenario.channels[c].beta for c in CHANNELS]
    assert truth["true_share"].sum() == pytest.approx(1.0, abs=1e-12)
    inert = truth.filter(pl.col("channel").is_in(_inert(scenario)))
    assert (inert["incremental_conversions"] == 0.0).all()
    assert (truth.filter(pl.col("touches") == 0)["incremental_conversions"] == 0.0).all()
    assert (truth.filter(pl.col("beta") > 0, pl.col("touches") > 0)["incremental_conversions"] > 0).all()
    assert 0.06 < data.conversions.height / data.touchpoints.height < 0.14


@pytest.mark.parametrize("name", ["correlated", "order_effect"])
def test_batches_concatenate_to_generate(name: str) -> None:
    kwargs = dict(n_users=500, seed=3, scenario=name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(generator, "_BLOCK_USERS", 64)
        whole = generate(**kwargs)
        batches = list(iter_generate(batch_users=150, **kwargs))
    assert_frame_equal(pl.concat([b.touchpoints for b in batches]), whole.touchpoints)
    assert_frame_equal(pl.concat([b.conversions for b in batches]), whole.conversions)
    total = sum(b.truth["incremental_conversions"].to_numpy() for b in batches)
    np.testing.assert_allclose(total, whole.truth["incremental_conversions"], rtol=1e-12)


def test_custom_scenario() -> None:
    custom = dataclasses.replace(get_scenario("default").with_channel("email", beta=0.0), name="mine", rho=1.0)
    data = generate(n_users=1_000, seed=2, scenario=custom)
    email = data.truth.filter(pl.col("channel") == "email")
    assert email["beta"].item() == 0.0
    assert email["touches"].item() > 0
    assert email["incremental_conversions"].item() == 0.0
    assert custom.channels["email"] == get_scenario("default").channels["email"]._replace(beta=0.0)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda d: d.with_channel("video", availability=1.5), "availability"),
        (lambda d: d.with_channel("direct", availability=0.5), "direct"),
        (lambda d: d.with_channel("video", beta=float("nan")), "beta"),
        (lambda d: d.with_channel("video", reach=0.5), "ChannelParams"),
        (lambda d: d.with_channel("tv", beta=0.5), "channel"),
        (lambda d: dataclasses.replace(d, rho=0.0), "rho"),
        (lambda d: dataclasses.replace(d, rho=1.5), "rho"),
        (lambda d: dataclasses.replace(d, intercept_sd=-1.0), "intercept_sd"),
        (lambda d: dataclasses.replace(d, alpha="x"), "alpha"),
        (lambda d: dataclasses.replace(d, channels={"direct": d.channels["direct"]}), "channels"),
        (lambda d: dataclasses.replace(d, interactions=(Interaction("email", "email", 1.0),)), "interactions"),
        (lambda d: dataclasses.replace(d, interactions=(("email", "tv", 1.0),)), "channel"),
        (lambda d: dataclasses.replace(d, orders=(OrderEffect("email", "video", math.inf),)), "orders beta"),
        (lambda d: dataclasses.replace(d, follower=Follower("email", "video", 1.5)), "follower probability"),
        (lambda d: dataclasses.replace(d, follower=Follower("email", "email", 0.5)), "follower"),
    ],
)
def test_bad_scenarios_raise_config_error(make, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        make(get_scenario("default"))


def test_bad_scenario_argument() -> None:
    with pytest.raises(ConfigError, match="additive, late_channel"):
        generate(n_users=10, scenario="nope")
    with pytest.raises(ConfigError, match="scenario"):
        iter_generate(n_users=10, scenario=3)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# what each scenario is meant to show
# ----------------------------------------------------------------------------------------------


def _positions(data: synthetic.SyntheticData) -> pl.DataFrame:
    return data.touchpoints.with_columns(
        r=(pl.int_range(pl.len()).over("anon_id") + 0.5) / pl.len().over("anon_id"),
        from_end=pl.len().over("anon_id") - pl.int_range(pl.len()).over("anon_id"),
    )


def _co_occurrence(data: synthetic.SyntheticData, a: str, b: str) -> tuple[float, float]:
    """``P(b in path | a in path)`` and ``P(a in path | b in path)`` over users."""
    paths = data.touchpoints.group_by("anon_id").agg(a=(pl.col("channel") == a).any(), b=(pl.col("channel") == b).any())
    return paths.filter("a")["b"].mean(), paths.filter("b")["a"].mean()


def test_additive_has_twelve_channels_and_no_saturation() -> None:
    scenario = get_scenario("additive")
    assert scenario.rho == 1.0
    data = generate(n_users=3_000, seed=1, scenario="additive")
    assert (data.truth["touches"] > 0).sum() == 12
    # each touch adds beta: at the third touch of a channel (no conversion before) p = sigmoid(base + 3 beta)
    p3 = _sigmoid(-4.0 + 3 * 0.5)
    for delta, converts in ((-1e-9, True), (1e-9, False)):
        converted, _ = _kernels._simulate_conversions(
            np.array([0, 3]),
            np.array([0, 1, 2]),
            np.array([1, 1, 1], np.int8),
            np.array([-4.0]),
            np.array([1.0, 1.0, p3 + delta]),
            np.array([0.0, 0.5]),
            1.0,
            10,
            simulation._term_arrays([]),
        )
        assert converted.tolist() == [False, False, converts]


def test_late_channel_comes_last() -> None:
    email = _positions(generate(n_users=5_000, seed=1, scenario="late_channel")).filter(pl.col("channel") == "email")
    assert email["r"].mean() > 0.75
    assert (email["from_end"] <= 2).mean() > 0.6


def test_reach_no_effect() -> None:
    data = generate(n_users=5_000, seed=1, scenario="reach_no_effect")
    display = data.truth.filter(pl.col("channel") == "display")
    assert display["reach"].item() > 0.6
    assert display["touches"].item() > 0.3 * data.touchpoints.height
    assert display["incremental_conversions"].item() == 0.0


def test_correlated_channels_co_occur() -> None:
    data = generate(n_users=5_000, seed=1, scenario="correlated")
    display_given_search, search_given_display = _co_occurrence(data, "paid_search", "display")
    assert display_given_search > 0.75
    assert search_given_display > 0.85
    # display mostly comes right after a paid_search touch
    tp = data.touchpoints.with_columns(previous=pl.col("channel").shift(1).over("anon_id"))
    assert (tp.filter(pl.col("channel") == "display")["previous"] == "paid_search").mean() > 0.8
    truth = dict(zip(data.truth["channel"].to_list(), data.truth["incremental_conversions"].to_list(), strict=True))
    assert truth["display"] == 0.0 < truth["paid_search"]


def test_apply_follower() -> None:
    channel = np.array([1, 2, 2, 1, 1, 3], np.int8)
    offsets = np.array([0, 4, 6])
    out = _kernels._apply_follower(offsets, channel, np.array([0.0, 0.0, 0.9, 0.0, 0.0, 0.0]), 1, 5, 0.5)
    # touch 1 follows a lead -> 5; touch 4 starts a new user; touch 5 follows the lead at 4 -> 5
    assert out.tolist() == [1, 5, 2, 1, 1, 5]
    assert channel.tolist() == [1, 2, 2, 1, 1, 3]  # input untouched


def test_interaction_partners_share_the_credit_and_need_each_other() -> None:
    data = generate(n_users=5_000, seed=1, scenario="interaction")
    truth = dict(zip(data.truth["channel"].to_list(), data.truth["incremental_conversions"].to_list(), strict=True))
    assert truth["meta_ads"] > 0
    assert truth["meta_ads"] == pytest.approx(truth["google_ads"], rel=1e-12)  # muting either drops the same term
    alone = get_scenario("interaction").with_channel("google_ads", availability=0.0)
    lonely = generate(n_users=5_000, seed=1, scenario=alone).truth
    meta, google = (lonely.filter(pl.col("channel") == c).row(0, named=True) for c in ("meta_ads", "google_ads"))
    assert meta["touches"] > 0 and google["touches"] == 0
    assert meta["incremental_conversions"] == google["incremental_conversions"] == 0.0


def test_interaction_worked_example() -> None:
    """Touches a then b, both beta 0, interaction 1, base -2.

    Touch 1 converts with sigma(-2). At touch 2 the stock is {a, b} (sigma(-1)) unless touch 1
    converted ({b}: sigma(-2)). Muting a or b: every touch converts with sigma(-2).
    """
    terms = simulation._term_arrays([(_kernels._INTERACTION, 0, 1, 1.0)])
    _, incremental = _kernels._simulate_conversions(
        np.array([0, 2]),
        np.array([0, 1]),
        np.array([0, 1], np.int8),
        np.array([-2.0]),
        np.ones(2),
        np.zeros(2),
        0.5,
        10,
        terms,
    )
    want = (1 - _sigmoid(-2.0)) * (_sigmoid(-1.0) - _sigmoid(-2.0))
    assert incremental[0].tolist() == pytest.approx([want, want], rel=1e-14)


def test_order_effect_worked_example() -> None:
    """Order term a -> b with beta 1 (rho 0.5), base -2, channels without own effect.

    Path b, a, b: only the last b can follow an a. Touches 1 and 2 convert with q = sigma(-2) whatever
    the state; touch 3 has the a in its stock (hazard sigma(-1)) unless touch 2 converted (hazard q).
    Muting a or b drops the term: every touch has hazard q. The path b, b, a never uses the term.
    """
    terms = simulation._term_arrays([(_kernels._ORDER, 0, 1, 1.0)])
    q = _sigmoid(-2.0)
    _, incremental = _kernels._simulate_conversions(
        np.array([0, 3, 6]),
        np.arange(6),
        np.array([1, 0, 1, 1, 1, 0], np.int8),
        np.array([-2.0, -2.0]),
        np.ones(6),
        np.zeros(2),
        0.5,
        10,
        terms,
    )
    want = (1 - q) * (_sigmoid(-1.0) - q)
    assert incremental[0].tolist() == pytest.approx([want, want], rel=1e-14)
    assert incremental[1].tolist() == [0.0, 0.0]  # b only before a: exactly nothing


def test_order_effect_scenario() -> None:
    data = generate(n_users=5_000, seed=1, scenario="order_effect")
    truth = dict(zip(data.truth["channel"].to_list(), data.truth["incremental_conversions"].to_list(), strict=True))
    assert truth["paid_search"] > 0  # no effect alone, but after video
    without_video = get_scenario("order_effect").with_channel("video", availability=0.0)
    truth = generate(n_users=5_000, seed=1, scenario=without_video).truth
    assert truth.filter(pl.col("channel") == "paid_search")["incremental_conversions"].item() == 0.0


def test_saturation_is_strong() -> None:
    scenario = get_scenario("saturation")
    assert scenario.rho <= 0.25
    data = generate(n_users=3_000, seed=1, scenario="saturation")
    per_user = data.touchpoints.filter(pl.col("channel") == "email").group_by("anon_id").len()["len"]
    assert per_user.mean() > 2  # a frequent channel whose repeat touches add little


# ----------------------------------------------------------------------------------------------
# the kernel with extra terms against a brute-force reference (docs/synthetic.md §2.8 and §9)
# ----------------------------------------------------------------------------------------------


def _reference_hazard(ts, chan, base, beta, rho, memory, terms, last, j, muted=None):
    """p_j for a user whose last conversion was at touch ``last`` (-1: none); ``muted`` drops a channel's
    own term and every extra term involving it."""
    stock = [i for i in range(last + 1, j + 1) if ts[i] > ts[j] - memory]

    def response(k: int) -> float:
        return sum(rho**m for m in range(k))

    logit = base
    for c in {chan[i] for i in stock} - {muted}:
        logit += beta[c] * response(sum(1 for i in stock if chan[i] == c))
    for kind, a, b, coefficient in terms:
        if muted in (a, b):
            continue
        if kind == _kernels._INTERACTION:
            present = {chan[i] for i in stock}
            logit += coefficient if a in present and b in present else 0.0
        else:
            k = sum(1 for i in stock if chan[i] == b and any(chan[h] == a for h in stock if h < i))
            logit += coefficient * response(k)
    return _sigmoid(logit)


def _reference_expected(ts, chan, base, beta, rho, memory, terms, muted=None):
    """E[number of conversions] by enumerating all 2**n conversion paths."""
    total = 0.0
    for path in itertools.product((False, True), repeat=len(ts)):
        probability, last = 1.0, -1
        for j, converts in enumerate(path):
            p = _reference_hazard(ts, chan, base, beta, rho, memory, terms, last, j, muted)
            probability *= p if converts else 1.0 - p
            if converts:
                last = j
        total += probability * sum(path)
    return total


def _reference_path(ts, chan, base, beta, rho, memory, terms, decision):
    out, last = [], -1
    for j in range(len(ts)):
        converts = decision[j] < _reference_hazard(ts, chan, base, beta, rho, memory, terms, last, j)
        out.append(converts)
        if converts:
            last = j
    return out


_user = st.integers(1, 7).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 6), min_size=n, max_size=n),  # gaps
        st.lists(st.integers(0, 3), min_size=n, max_size=n),  # channels
        st.floats(-3.0, 1.0),  # base log-odds
        st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n),  # decision draws
    )
)
_term = st.tuples(
    st.sampled_from([_kernels._INTERACTION, _kernels._ORDER]),
    st.permutations(range(4)).map(lambda p: p[:2]),
    st.sampled_from([1.5, 0.8, -1.0, 0.0]),
).map(lambda t: (t[0], t[1][0], t[1][1], t[2]))


_ORDER_CASE = [([1, 2, 1, 3, 1, 1], [2, 0, 1, 1, 0, 1], -1.5, [0.9, 0.1, 0.95, 0.3, 0.99, 0.5])]


@settings(max_examples=80, deadline=None)
@given(
    users=st.lists(_user, min_size=1, max_size=3),
    beta=st.lists(st.sampled_from([0.0, 0.0, 0.4, 1.0, -0.7]), min_size=4, max_size=4),
    terms=st.lists(_term, min_size=1, max_size=3),
    rho=st.sampled_from([0.2, 0.5, 1.0]),
    memory=st.integers(3, 30),
)
@example(users=_ORDER_CASE, beta=[0.3, 0.0, 0.5, 0.0], terms=[(_kernels._ORDER, 0, 1, 1.2)], rho=0.5, memory=6)
@example(users=_ORDER_CASE, beta=[0.0, 0.0, 0.5, 0.0], terms=[(_kernels._INTERACTION, 1, 2, -1.0)], rho=1.0, memory=30)
def test_kernel_with_terms_matches_brute_force(users, beta, terms, rho, memory) -> None:
    offsets = np.cumsum([0] + [len(u[0]) for u in users]).astype(np.int64)
    ts = np.concatenate([np.cumsum(u[0]) for u in users]).astype(np.int64)
    chan = np.concatenate([u[1] for u in users]).astype(np.int8)
    base = np.array([u[2] for u in users])
    decision = np.concatenate([u[3] for u in users]).astype(np.float64)
    converted, incremental = _kernels._simulate_conversions(
        offsets, ts, chan, base, decision, np.array(beta), rho, memory, simulation._term_arrays(terms)
    )
    for u, (gaps, channels, b, draws) in enumerate(users):
        args = (np.cumsum(gaps).tolist(), channels, b, beta, rho, memory, terms)
        lo, hi = offsets[u], offsets[u + 1]
        assert converted[lo:hi].tolist() == _reference_path(*args, draws)
        actual = _reference_expected(*args)
        for c in range(4):
            partnered = any(
                t[3] != 0.0 and ((t[1] == c and t[2] in channels) or (t[2] == c and t[1] in channels)) for t in terms
            )
            if c in channels and (beta[c] != 0.0 or partnered):
                want = actual - _reference_expected(*args, muted=c)
                assert incremental[u, c] == pytest.approx(want, rel=1e-9, abs=1e-12)
            else:
                assert incremental[u, c] == 0.0  # exactly: the muted scenario is not evaluated


@pytest.mark.parametrize("name", ["interaction", "order_effect", "additive"])
def test_expected_conversions_match_realised_ones(name: str) -> None:
    """The DP's expectation (row 0) agrees with the simulated conversions on 20k users."""
    model = simulation._Model.of(get_scenario(name))
    rng = np.random.default_rng(4)
    n_users = 20_000
    counts = simulation._draw_touch_counts(rng, n_users, 5.0)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    intent = rng.standard_normal(n_users)
    available = simulation._draw_availability(rng, intent, model.availability, model.intent_loading)
    ts = simulation._draw_times(rng, offsets, 90 * 86_400_000_000)
    chan = _kernels._draw_channels(offsets, available, rng.random(ts.size), model.base_logit, model.drift)
    base = model.alpha + model.intercept_sd * intent
    converted, _ = _kernels._simulate_conversions(
        offsets, ts, chan, base, rng.random(ts.size), model.beta, model.rho, simulation._MEMORY_US, model.terms
    )
    n_channels = len(CHANNELS)
    gain = model.rho ** np.arange(int(counts.max()) + 1)
    saturation = np.concatenate([[0.0], np.cumsum(gain)[:-1]])
    longest = int(counts.max())
    scratch = (
        np.empty((longest, n_channels + 1)),
        np.empty(n_channels + 1),
        np.empty(n_channels + 1),
        np.empty(n_channels, np.int64),
        np.empty(n_channels, np.int64),
        np.empty(n_channels + 1),
        np.empty(model.terms[0].size),
    )
    none = np.zeros(n_channels, np.int64)
    expected = 0.0
    for u in range(n_users):
        _kernels._expected_conversions(
            offsets[u],
            offsets[u + 1],
            ts,
            chan,
            base[u],
            model.beta,
            none,
            none,
            0,
            gain,
            saturation,
            simulation._MEMORY_US,
            model.terms,
            scratch,
        )
        expected += scratch[5][0]
    assert converted.sum() == pytest.approx(expected, rel=0.03)
