"""Tests of the seeded synthetic-data generator (``optiq_engine.simulate.synthetic``).

The ground-truth kernel is compared with a brute-force reference that enumerates every conversion
path of small users, written from ``docs/synthetic.md`` rather than from the fast code.
"""

from __future__ import annotations

import itertools
import math
import re
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from optiq_engine.errors import ConfigError
from optiq_engine.simulate.synthetic import (
    CHANNEL_CAMPAIGNS,
    CHANNEL_UTM,
    CHANNELS,
    SyntheticData,
    _kernels,
    frames,
    generate,
    generator,
    iter_generate,
    scenarios,
    simulation,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
NO_TERMS = simulation._term_arrays([])  # the default scenario has no interaction / order terms
ZERO_BETA = [c for c in CHANNELS if scenarios._CHANNEL_PARAMS[c][0] == 0.0]


@pytest.fixture(scope="module")
def small() -> SyntheticData:
    """2,000 users over 3 organizations with 2 sites each."""
    return generate(n_users=2_000, n_organizations=3, sites_per_organization=2, seed=7)


@pytest.fixture(scope="module")
def medium() -> SyntheticData:
    """20,000 users: enough for stable aggregate statistics, still fast."""
    return generate(n_users=20_000, seed=11)


# ----------------------------------------------------------------------------------------------
# schema, ids
# ----------------------------------------------------------------------------------------------


def test_schema_and_dtypes(small: SyntheticData) -> None:
    ts = pl.Datetime("us", "UTC")
    s = pl.String
    assert small.touchpoints.schema == pl.Schema(
        {
            "touchpoint_id": s,
            "anon_id": s,
            "occurred_at": ts,
            "channel": pl.Enum(CHANNELS),
            "organization_id": s,
            "site_id": s,
            "utm_source": s,
            "utm_medium": s,
            "utm_campaign": s,
            "gclid": s,
            "fbclid": s,
            "ttclid": s,
        }
    )
    assert small.conversions.schema == pl.Schema(
        {
            "conversion_id": s,
            "anon_id": s,
            "occurred_at": ts,
            "value_micros": pl.Int64,
            "name": s,
            "organization_id": s,
            "site_id": s,
        }
    )
    assert small.truth.schema == pl.Schema(
        {
            "channel": pl.Enum(CHANNELS),
            "beta": pl.Float64,
            "reach": pl.Float64,
            "touches": pl.Int64,
            "incremental_conversions": pl.Float64,
            "true_share": pl.Float64,
        }
    )
    assert small.truth["channel"].to_list() == list(CHANNELS)
    assert small.seed == 7


def test_no_nulls_in_required_columns(small: SyntheticData) -> None:
    required = ["touchpoint_id", "anon_id", "occurred_at", "channel", "organization_id", "site_id"]
    assert small.touchpoints.select(required).null_count().sum_horizontal().item() == 0
    assert small.conversions.null_count().sum_horizontal().item() == 0


def test_ids_are_unique_and_well_formed(small: SyntheticData) -> None:
    tp, cv = small.touchpoints, small.conversions
    assert tp["touchpoint_id"].is_unique().all()
    assert cv["conversion_id"].is_unique().all()
    assert tp["touchpoint_id"].str.contains(r"^tp_\d{12}$").all()
    assert cv["conversion_id"].str.contains(r"^cv_\d{12}$").all()
    assert tp["anon_id"].str.contains(r"^u_\d{9}$").all()
    # numbered consecutively from 0 in frame order
    assert tp["touchpoint_id"].to_list() == [f"tp_{i:012d}" for i in range(tp.height)]
    assert cv["conversion_id"].to_list() == [f"cv_{i:012d}" for i in range(cv.height)]
    # every user is present (at least one touchpoint each)
    assert tp["anon_id"].n_unique() == 2_000


def test_every_user_belongs_to_one_organization_and_site(small: SyntheticData) -> None:
    keys = ["anon_id", "organization_id", "site_id"]
    both = pl.concat([small.touchpoints.select(keys), small.conversions.select(keys)]).unique()
    assert both["anon_id"].is_unique().all()
    assert both["organization_id"].str.contains(r"^org_[1-3]$").all()
    site = both["site_id"].str.extract_groups(r"^site_(\d+)_(\d+)$")
    assert (site.struct.field("1") == both["organization_id"].str.strip_prefix("org_")).all()
    assert set(site.struct.field("2").to_list()) == {"1", "2"}
    assert both["site_id"].n_unique() == 6


def test_frames_are_sorted_by_user_then_time(small: SyntheticData) -> None:
    for frame in (small.touchpoints, small.conversions):
        assert frame.equals(frame.sort("anon_id", "occurred_at", maintain_order=True))
    # no two touchpoints of a user share a timestamp
    tp = small.touchpoints
    assert tp.select("anon_id", "occurred_at").is_unique().all()


def test_timestamps_lie_in_the_period() -> None:
    start = datetime(2025, 3, 30, 23, 30, tzinfo=timezone(timedelta(hours=2)))
    data = generate(n_users=500, days=3, touchpoints_per_user=20.0, start=start, seed=1)
    lo, hi = start.astimezone(UTC), start.astimezone(UTC) + timedelta(days=3)
    for frame in (data.touchpoints, data.conversions):
        assert frame["occurred_at"].min() >= lo
        assert frame["occurred_at"].max() < hi


# ----------------------------------------------------------------------------------------------
# determinism and batches
# ----------------------------------------------------------------------------------------------


def _assert_same(a: SyntheticData, b: SyntheticData) -> None:
    assert_frame_equal(a.touchpoints, b.touchpoints)
    assert_frame_equal(a.conversions, b.conversions)
    assert_frame_equal(a.truth, b.truth)


def test_same_seed_same_data_bit_for_bit() -> None:
    _assert_same(generate(n_users=1_500, seed=5), generate(n_users=1_500, seed=5))


def test_different_seed_different_data() -> None:
    a, b = generate(n_users=1_500, seed=5), generate(n_users=1_500, seed=6)
    assert not a.touchpoints.equals(b.touchpoints)
    assert not a.conversions.equals(b.conversions)
    assert a.touchpoints["occurred_at"].to_list() != b.touchpoints["occurred_at"].to_list()


@settings(max_examples=15, deadline=None)
@given(batch_users=st.integers(20, 420), block_users=st.sampled_from([7, 64, 100, 1 << 16]))
def test_batches_concatenate_to_generate(batch_users: int, block_users: int) -> None:
    kwargs = dict(n_users=400, seed=3, n_organizations=2, sites_per_organization=3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(generator, "_BLOCK_USERS", block_users)
        whole = generate(**kwargs)
        batches = list(iter_generate(batch_users=batch_users, **kwargs))
    assert len(batches) == math.ceil(400 / batch_users)
    assert_frame_equal(pl.concat([b.touchpoints for b in batches]), whole.touchpoints)
    assert_frame_equal(pl.concat([b.conversions for b in batches]), whole.conversions)
    # a user never spans two batches, and each batch has batch_users users (the last one fewer)
    users = [b.touchpoints["anon_id"].unique() for b in batches]
    assert sum(u.len() for u in users) == pl.concat(users).n_unique() == 400
    assert all(u.len() == batch_users for u in users[:-1])
    # the truth adds up across batches
    truths = pl.concat([b.truth for b in batches])
    total = truths.group_by("channel", maintain_order=True).agg(
        pl.col("touches").sum(), pl.col("incremental_conversions").sum()
    )
    assert total["touches"].to_list() == whole.truth["touches"].to_list()
    np.testing.assert_allclose(total["incremental_conversions"], whole.truth["incremental_conversions"], rtol=1e-12)
    for b in batches:
        if (b.truth["incremental_conversions"] > 0).any():
            assert b.truth["true_share"].sum() == pytest.approx(1.0)


def test_one_user_per_batch() -> None:
    kwargs = dict(n_users=60, seed=8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(generator, "_BLOCK_USERS", 16)
        whole = generate(**kwargs)
        batches = list(iter_generate(batch_users=1, **kwargs))
    assert [b.touchpoints["anon_id"].unique().to_list() for b in batches] == [[f"u_{i:09d}"] for i in range(60)]
    assert_frame_equal(pl.concat([b.touchpoints for b in batches]), whole.touchpoints)
    assert_frame_equal(pl.concat([b.conversions for b in batches]), whole.conversions)


def test_iter_generate_default_batches_equal_generate() -> None:
    batches = list(iter_generate(n_users=1_000, batch_users=300, seed=9))
    assert [b.touchpoints["anon_id"].n_unique() for b in batches] == [300, 300, 300, 100]
    whole = generate(n_users=1_000, seed=9)
    assert_frame_equal(pl.concat([b.touchpoints for b in batches]), whole.touchpoints)
    assert_frame_equal(pl.concat([b.conversions for b in batches]), whole.conversions)
    assert all(b.seed == 9 for b in batches)


# ----------------------------------------------------------------------------------------------
# channels and utm columns
# ----------------------------------------------------------------------------------------------


def test_channel_tables_cover_the_channels() -> None:
    assert len(set(CHANNELS)) == len(CHANNELS)
    assert set(CHANNEL_UTM) == set(CHANNELS) == set(CHANNEL_CAMPAIGNS)
    for name in CHANNELS:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name)
    assert CHANNEL_UTM["direct"] == (None, None, None)
    assert CHANNEL_UTM["google_ads"][2] == "gclid"
    assert CHANNEL_UTM["meta_ads"][2] == "fbclid"
    assert CHANNEL_UTM["tiktok_ads"][2] == "ttclid"


def test_utm_and_click_columns_agree_with_channel_utm(small: SyntheticData) -> None:
    tp = small.touchpoints
    for name in CHANNELS:
        rows = tp.filter(pl.col("channel") == name)
        assert rows.height > 0, name
        source, medium, click = CHANNEL_UTM[name]
        assert rows["utm_source"].unique().to_list() == [source]
        assert rows["utm_medium"].unique().to_list() == [medium]
        for column in ("gclid", "fbclid", "ttclid"):
            if column == click:
                assert rows[column].null_count() == 0
                assert rows[column].str.starts_with(frames._CLICK_PREFIX[column]).all()
            else:
                assert rows[column].null_count() == rows.height
        campaigns = set(rows["utm_campaign"].unique().to_list())
        assert campaigns == (set(CHANNEL_CAMPAIGNS[name]) or {None})


def test_engine_derives_the_same_channels_from_the_utm_columns(small: SyntheticData) -> None:
    """The utm / click-id columns map back to ``channel`` under the engine's default rules (docs/contract.md §4)."""
    from optiq_engine.channels import derive_channels

    derived = derive_channels(small.touchpoints.drop("channel"))
    assert (derived == small.touchpoints["channel"].cast(pl.String)).all()


def test_click_ids_are_unique_per_touchpoint(small: SyntheticData) -> None:
    for column in ("gclid", "fbclid", "ttclid"):
        ids = small.touchpoints[column].drop_nulls()
        assert ids.is_unique().all()
        assert ids.str.contains(r"^\S+[0-9a-f]{16}$").all()


# ----------------------------------------------------------------------------------------------
# conversions
# ----------------------------------------------------------------------------------------------


def test_conversion_values_are_positive_whole_cents(medium: SyntheticData) -> None:
    value = medium.conversions["value_micros"]
    assert (value > 0).all()
    assert (value % 10_000 == 0).all()
    assert 40e6 < value.median() < 60e6  # log-normal with median 50 currency units
    assert (medium.conversions["name"] == "purchase").all()


def test_every_conversion_follows_a_touch_of_its_user(medium: SyntheticData) -> None:
    """What the model guarantees: a conversion at T is triggered by a touch t of the same user with
    t <= T <= t + 6 h, and that touch is after the user's previous conversion (T_prev < t)."""
    tp = medium.touchpoints.select("anon_id", pl.col("occurred_at").alias("touch_at"))
    cv = medium.conversions.select("conversion_id", "anon_id", "occurred_at").with_columns(
        previous=pl.col("occurred_at").shift(1).over("anon_id")
    )
    last_touch = cv.sort("occurred_at").join_asof(
        tp.sort("touch_at"),
        left_on="occurred_at",
        right_on="touch_at",
        by="anon_id",
        strategy="backward",
        check_sortedness=False,  # sorted by time, as join_asof requires; it cannot check within groups
    )
    assert last_touch["touch_at"].null_count() == 0
    delay = last_touch["occurred_at"] - last_touch["touch_at"]
    assert (delay >= timedelta(0)).all()
    assert (delay <= timedelta(hours=6)).all()
    has_previous = last_touch.filter(pl.col("previous").is_not_null())
    assert (has_previous["touch_at"] > has_previous["previous"]).all()


def test_conversion_rate_and_repeat_conversions(medium: SyntheticData) -> None:
    ratio = medium.conversions.height / medium.touchpoints.height
    assert 0.07 < ratio < 0.13
    per_user = medium.conversions.group_by("anon_id").len()["len"]
    assert (per_user >= 2).sum() > 0.1 * per_user.len()


# ----------------------------------------------------------------------------------------------
# realism of the journeys
# ----------------------------------------------------------------------------------------------


def test_activity_is_heavy_tailed(medium: SyntheticData) -> None:
    per_user = medium.touchpoints.group_by("anon_id").len()["len"]
    assert per_user.mean() == pytest.approx(5.0, rel=0.05)
    assert per_user.median() <= 4
    assert per_user.max() >= 10 * per_user.median()


def test_inter_arrival_times_span_days_to_weeks(medium: SyntheticData) -> None:
    gaps = medium.touchpoints.select(
        gap=pl.col("occurred_at").diff().over("anon_id").dt.total_seconds() / 86_400
    ).drop_nulls()["gap"]
    assert 0.5 < gaps.median() < 5
    assert gaps.quantile(0.95) > 7
    assert gaps.quantile(0.05) < 1


def test_channel_mix_drifts_along_the_journey(medium: SyntheticData) -> None:
    position = (
        medium.touchpoints.with_columns(r=(pl.int_range(pl.len()).over("anon_id") + 0.5) / pl.len().over("anon_id"))
        .group_by("channel")
        .agg(pl.col("r").mean(), pl.len())
    )
    r = dict(zip(position["channel"].to_list(), position["r"].to_list(), strict=True))
    for early in ("display", "video", "paid_social"):
        for late in ("email", "direct", "google_ads", "paid_search"):
            assert r[early] < r[late], (early, late)
    counts = dict(zip(position["channel"].to_list(), position["len"].to_list(), strict=True))
    assert max(counts, key=counts.__getitem__) == "direct"


def test_channels_differ_in_reach(medium: SyntheticData) -> None:
    reach = dict(zip(medium.truth["channel"].to_list(), medium.truth["reach"].to_list(), strict=True))
    assert reach["direct"] > 0.5
    assert reach["affiliate"] < 0.1
    assert all(reach[c] > 0.05 for c in ZERO_BETA)  # zero effect, real reach


# ----------------------------------------------------------------------------------------------
# ground truth
# ----------------------------------------------------------------------------------------------


def test_truth_shares_and_zero_effect_channels(medium: SyntheticData) -> None:
    truth = medium.truth
    assert truth["true_share"].sum() == pytest.approx(1.0, abs=1e-12)
    assert (truth["true_share"] >= 0).all()
    assert ZERO_BETA  # the model has channels with zero effect and real reach
    zero = truth.filter(pl.col("channel").is_in(ZERO_BETA))
    assert (zero["incremental_conversions"] == 0.0).all()
    assert (zero["touches"] > 0).all()
    positive = truth.filter(pl.col("beta") > 0)
    assert (positive["incremental_conversions"] > 0).all()


def test_truth_counts_match_the_frames(medium: SyntheticData) -> None:
    counts = medium.touchpoints.group_by("channel").len()
    joined = medium.truth.join(counts, on="channel", how="left")
    assert (joined["touches"] == joined["len"].fill_null(0)).all()
    reach = medium.touchpoints.group_by("channel").agg(pl.col("anon_id").n_unique() / 20_000)
    joined = medium.truth.join(reach, on="channel", how="left")
    np.testing.assert_allclose(joined["reach"], joined["anon_id"].fill_null(0.0))


def test_expected_conversions_match_realised_ones() -> None:
    """The truth's model expectation agrees with the realised conversions (law of large numbers)."""
    offsets, ts, chan, base = _kernel_inputs(seed=4, n_users=20_000)
    decision = np.random.default_rng(4).random(ts.size)
    converted, _ = _kernels._simulate_conversions(
        offsets, ts, chan, base, decision, scenarios._BETA, scenarios._RHO, simulation._MEMORY_US, NO_TERMS
    )
    expected = _expected_totals(offsets, ts, chan, base, scenarios._BETA)
    assert converted.sum() == pytest.approx(expected, rel=0.03)


# ----------------------------------------------------------------------------------------------
# the kernel against a brute-force reference (docs/synthetic.md, "Ground truth")
# ----------------------------------------------------------------------------------------------


def _reference_hazard(ts, chan, base, beta, rho, memory, last, j):
    """p_j for a user whose last conversion was at touch ``last`` (-1: none), straight from the docs."""
    logit = base
    for c in set(chan):
        k = sum(1 for i in range(last + 1, j + 1) if chan[i] == c and ts[i] > ts[j] - memory)
        logit += beta[c] * sum(rho**m for m in range(k))
    return 1.0 / (1.0 + math.exp(-logit))


def _reference_expected(ts, chan, base, beta, rho, memory, muted=None):
    """E[number of conversions] by enumerating all 2**n conversion paths."""
    beta = [0.0 if c == muted else b for c, b in enumerate(beta)]
    total = 0.0
    for path in itertools.product((False, True), repeat=len(ts)):
        probability, last = 1.0, -1
        for j, converts in enumerate(path):
            p = _reference_hazard(ts, chan, base, beta, rho, memory, last, j)
            probability *= p if converts else 1.0 - p
            if converts:
                last = j
        total += probability * sum(path)
    return total


def _reference_path(ts, chan, base, beta, rho, memory, decision):
    """The realised conversions for given uniform draws."""
    out, last = [], -1
    for j in range(len(ts)):
        converts = decision[j] < _reference_hazard(ts, chan, base, beta, rho, memory, last, j)
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


@settings(max_examples=60, deadline=None)
@given(
    users=st.lists(_user, min_size=1, max_size=4),
    beta=st.lists(st.sampled_from([0.0, 0.3, 1.0, 2.5, -0.7]), min_size=4, max_size=4),
    rho=st.floats(0.1, 0.9),
    memory=st.integers(1, 25),
)
def test_kernel_matches_brute_force(users, beta, rho, memory) -> None:
    offsets = np.cumsum([0] + [len(u[0]) for u in users]).astype(np.int64)
    ts = np.concatenate([np.cumsum(u[0]) for u in users]).astype(np.int64)
    chan = np.concatenate([u[1] for u in users]).astype(np.int8)
    base = np.array([u[2] for u in users])
    decision = np.concatenate([u[3] for u in users]).astype(np.float64)
    beta_arr = np.array(beta)
    converted, incremental = _kernels._simulate_conversions(
        offsets, ts, chan, base, decision, beta_arr, rho, memory, NO_TERMS
    )
    for u, (gaps, channels, b, draws) in enumerate(users):
        user_ts = np.cumsum(gaps).tolist()
        lo, hi = offsets[u], offsets[u + 1]
        args = (user_ts, channels, b, beta, rho, memory)
        assert converted[lo:hi].tolist() == _reference_path(*args, draws)
        actual = _reference_expected(*args)
        for c in range(4):
            want = actual - _reference_expected(*args, muted=c) if c in channels and beta[c] != 0 else 0.0
            assert incremental[u, c] == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_kernel_worked_example_one_touch() -> None:
    """One touch of a channel with beta = 1, base = -2: p = sigmoid(-1), muted p = sigmoid(-2)."""
    converted, incremental = _kernels._simulate_conversions(
        np.array([0, 1]),
        np.array([0]),
        np.array([1], np.int8),
        np.array([-2.0]),
        np.array([0.5]),
        np.array([0.0, 1.0]),
        0.5,
        10,
        NO_TERMS,
    )
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert incremental[0, 1] == pytest.approx(sig(-1.0) - sig(-2.0), rel=1e-15)
    assert incremental[0, 0] == 0.0
    assert converted.tolist() == [False]  # 0.5 >= sigmoid(-1) = 0.27


def test_kernel_results_do_not_depend_on_threads() -> None:
    """The parallel kernel's chunks are fixed by the data, so one thread gives the same arrays."""
    import numba

    data_args = _block_arrays(seed=1)
    default = _kernels._simulate_conversions(*data_args)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = _kernels._simulate_conversions(*data_args)
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(default[0], single[0])
    np.testing.assert_array_equal(default[1], single[1])


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(n_users=0), "n_users"),
        (dict(n_users=2.5), "n_users"),
        (dict(n_users=True), "n_users"),
        (dict(touchpoints_per_user=0.5), "touchpoints_per_user"),
        (dict(touchpoints_per_user=float("nan")), "touchpoints_per_user"),
        (dict(touchpoints_per_user=1e6), "touchpoints_per_user"),
        (dict(touchpoints_per_user="5"), "touchpoints_per_user"),
        (dict(days=0), "days"),
        (dict(n_organizations=0), "n_organizations"),
        (dict(sites_per_organization=-1), "sites_per_organization"),
        (dict(seed=-1), "seed"),
        (dict(seed=1.0), "seed"),
        (dict(start=datetime(2026, 1, 1)), "start"),
        (dict(start="2026-01-01"), "start"),
        (dict(start=datetime(9999, 12, 1, tzinfo=UTC)), "start"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        generate(**kwargs)
    with pytest.raises(ConfigError, match=field):
        iter_generate(**kwargs)


def test_bad_batch_users_raises_at_call_time() -> None:
    with pytest.raises(ConfigError, match="batch_users"):
        iter_generate(batch_users=0)
    with pytest.raises(ValueError, match="batch_users"):  # ConfigError is a ValueError
        iter_generate(batch_users=None)  # type: ignore[arg-type]


def test_single_user_and_minimum_activity() -> None:
    one = generate(n_users=1, seed=0)
    assert one.touchpoints["anon_id"].unique().to_list() == ["u_000000000"]
    flat = generate(n_users=300, touchpoints_per_user=1.0, seed=0)
    assert flat.touchpoints.height == 300


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _kernel_inputs(seed: int, n_users: int):
    """Kernel inputs (offsets, ts, chan, base) drawn with the generator's own steps."""
    rng = np.random.default_rng(seed)
    counts = simulation._draw_touch_counts(rng, n_users, 5.0)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    intent = rng.standard_normal(n_users)
    available = simulation._draw_availability(rng, intent)
    ts = simulation._draw_times(rng, offsets, 90 * 86_400_000_000)
    chan = _kernels._draw_channels(offsets, available, rng.random(ts.size), scenarios._BASE_LOGIT, scenarios._DRIFT)
    return offsets, ts, chan, scenarios._ALPHA + scenarios._INTERCEPT_SD * intent


def _expected_totals(offsets, ts, chan, base, beta) -> float:
    """Sum over users of E[conversions] (row 0 of the kernel's dynamic programme)."""
    n_channels = beta.size
    gain = scenarios._RHO ** np.arange(simulation._MAX_TOUCHES_PER_USER + 1)
    saturation = np.concatenate([[0.0], np.cumsum(gain)[:-1]])
    longest = int(np.diff(offsets).max())
    scratch = (
        np.empty((longest, n_channels + 1)),
        np.empty(n_channels + 1),
        np.empty(n_channels + 1),
        np.empty(n_channels, np.int64),
        np.empty(n_channels, np.int64),
        np.empty(n_channels + 1),
        np.empty(0),
    )
    none = np.zeros(n_channels, np.int64)
    total = 0.0
    for u in range(offsets.size - 1):
        _kernels._expected_conversions(
            offsets[u],
            offsets[u + 1],
            ts,
            chan,
            base[u],
            beta,
            none,
            none,
            0,
            gain,
            saturation,
            simulation._MEMORY_US,
            NO_TERMS,
            scratch,
        )
        total += scratch[5][0]
    return total


def _block_arrays(seed: int):
    """Arguments of the conversion kernel for a few thousand users."""
    offsets, ts, chan, base = _kernel_inputs(seed, 3_000)
    decision = np.random.default_rng(seed).random(ts.size)
    return (offsets, ts, chan, base, decision, scenarios._BETA, scenarios._RHO, simulation._MEMORY_US, NO_TERMS)
