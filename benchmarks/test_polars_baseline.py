"""Worked examples for the plain-Polars baseline, expected numbers computed by hand."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from benchmarks.polars_baseline import ALL_MODELS, LINKS_SCHEMA, attribute_polars

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
US = timedelta(microseconds=1)


def tps(rows, **extra):
    """rows: (touchpoint_id, anon_id, occurred_at, channel)."""
    cols = list(zip(*rows, strict=True)) if rows else [[], [], [], []]
    return pl.DataFrame(
        {
            "touchpoint_id": list(cols[0]),
            "anon_id": list(cols[1]),
            "occurred_at": list(cols[2]),
            "channel": list(cols[3]),
            **extra,
        },
        schema_overrides={"occurred_at": pl.Datetime("us", "UTC")},
    )


def convs(rows, **extra):
    """rows: (conversion_id, anon_id, occurred_at, value_micros)."""
    cols = list(zip(*rows, strict=True))
    return pl.DataFrame(
        {
            "conversion_id": list(cols[0]),
            "anon_id": list(cols[1]),
            "occurred_at": list(cols[2]),
            "value_micros": list(cols[3]),
            **extra,
        },
        schema_overrides={
            "occurred_at": pl.Datetime("us", "UTC"),
            "value_micros": pl.Int64,
        },
    )


def per_model(links: pl.DataFrame, conversion_id: str, model: str) -> pl.DataFrame:
    return links.filter((pl.col("conversion_id") == conversion_id) & (pl.col("model") == model)).sort("position")


def ids_of(links: pl.DataFrame, conversion_id: str) -> list[str]:
    return per_model(links, conversion_id, "LINEAR")["touchpoint_id"].to_list()


# One journey: google at day 0, direct at days 1 and 2, conversion at day 5, value 100.
JOURNEY_TP = tps(
    [
        ("a1", "u", T0, "google"),
        ("a2", "u", T0 + DAY, "direct"),
        ("a3", "u", T0 + 2 * DAY, "direct"),
    ]
)
JOURNEY_CV = convs([("c", "u", T0 + 5 * DAY, 100)])

# (model, expected weights, expected credited micros), by position
JOURNEY_EXPECTED = [
    ("FIRST_TOUCH", [1.0, 0.0, 0.0], [100, 0, 0]),
    ("LAST_TOUCH", [0.0, 0.0, 1.0], [0, 0, 100]),
    # last non-direct is a1 (google)
    ("LAST_NON_DIRECT", [1.0, 0.0, 0.0], [100, 0, 0]),
    # q = 33.333... each (identical fractions), floors 99, R = 1 -> later position
    ("LINEAR", [1 / 3, 1 / 3, 1 / 3], [33, 33, 34]),
    # middle = 1 - 0.4 - 0.4 = 0.19999999999999996 -> q = 19.999999999999996:
    # floors 40 + 19 + 40 = 99, R = 1 goes to the largest fraction (position 2)
    ("POSITION_BASED", [0.4, 0.19999999999999996, 0.4], [40, 20, 40]),
    # half-life 1 day, ages from t_n: 2, 1, 0 days -> r = 1/4, 1/2, 1; sum 7/4
    # w = 1/7, 2/7, 4/7; q = 14.29, 28.57, 57.14 -> floors 99, R = 1 -> position 2 (.571)
    ("TIME_DECAY", [1 / 7, 2 / 7, 4 / 7], [14, 29, 57]),
]


@pytest.mark.parametrize(("model", "weights", "credited"), JOURNEY_EXPECTED)
def test_each_model_on_one_journey(model, weights, credited):
    links = attribute_polars(JOURNEY_TP, JOURNEY_CV, half_life=DAY)
    got = per_model(links, "c", model)
    assert got["touchpoint_id"].to_list() == ["a1", "a2", "a3"]
    assert got["position"].to_list() == [1, 2, 3]
    assert got["touchpoint_count"].to_list() == [3, 3, 3]
    assert got["channel"].to_list() == ["google", "direct", "direct"]
    assert got["weight"].to_list() == pytest.approx(weights, rel=1e-15, abs=0)
    assert got["credited_value_micros"].to_list() == credited


def test_schema_and_row_count():
    links = attribute_polars(JOURNEY_TP, JOURNEY_CV)
    assert dict(links.schema) == LINKS_SCHEMA
    assert links.height == 3 * len(ALL_MODELS)  # every touchpoint, every model, weight 0 included
    assert links["model"].unique(maintain_order=True).to_list() == list(ALL_MODELS)


def test_model_subset_and_order():
    links = attribute_polars(JOURNEY_TP, JOURNEY_CV, models=["LINEAR", "FIRST_TOUCH"])
    assert links["model"].unique(maintain_order=True).to_list() == [
        "LINEAR",
        "FIRST_TOUCH",
    ]
    with pytest.raises(ValueError):
        attribute_polars(JOURNEY_TP, JOURNEY_CV, models=["MARKOV"])


def test_last_non_direct_all_direct_and_custom_direct_set():
    tp = tps(
        [
            ("a1", "u", T0, "email"),
            ("a2", "u", T0 + DAY, "direct"),
            ("a3", "u", T0 + 2 * DAY, "direct"),
        ]
    )
    cv = convs([("c", "u", T0 + 3 * DAY, 10)])
    lnd = per_model(attribute_polars(tp, cv), "c", "LAST_NON_DIRECT")
    assert lnd["weight"].to_list() == [1.0, 0.0, 0.0]
    # email also counted as direct -> all direct -> position n
    lnd = per_model(
        attribute_polars(tp, cv, direct_channels=("direct", "email")),
        "c",
        "LAST_NON_DIRECT",
    )
    assert lnd["weight"].to_list() == [0.0, 0.0, 1.0]
    assert lnd["credited_value_micros"].to_list() == [0, 0, 10]


def test_categorical_channel_is_returned_as_string():
    tp = JOURNEY_TP.with_columns(pl.col("channel").cast(pl.Categorical))
    links = attribute_polars(tp, JOURNEY_CV)
    assert links.schema["channel"] == pl.String
    assert per_model(links, "c", "LAST_NON_DIRECT")["weight"].to_list() == [
        1.0,
        0.0,
        0.0,
    ]


def test_position_based_small_n_and_presets():
    # n = 1 -> 1
    tp1 = tps([("a", "u", T0, "x")])
    cv = convs([("c", "u", T0 + DAY, 7)])
    one = per_model(attribute_polars(tp1, cv), "c", "POSITION_BASED")
    assert one["weight"].to_list() == [1.0]
    assert one["credited_value_micros"].to_list() == [7]
    # n = 2, U-shaped: 0.5 / 0.5; V = 5 -> 2.5 / 2.5, tie -> later position: 2, 3
    tp2 = tps([("a", "u", T0, "x"), ("b", "u", T0 + US, "y")])
    cv5 = convs([("c", "u", T0 + DAY, 5)])
    two = per_model(attribute_polars(tp2, cv5), "c", "POSITION_BASED")
    assert two["weight"].to_list() == [0.5, 0.5]
    assert two["credited_value_micros"].to_list() == [2, 3]
    # n = 2, J-curve (0.2, 0.6): 0.2/0.8 = 0.25, 0.6/0.8 = 0.7499999999999999 (float);
    # V = 10 -> q = 2.5, 7.499999999999999: floors 9, R = 1 -> the 0.5 fraction (position 1)
    cv10 = convs([("c", "u", T0 + DAY, 10)])
    j = per_model(attribute_polars(tp2, cv10, first=0.2, last=0.6), "c", "POSITION_BASED")
    assert j["weight"].to_list() == [0.25, 0.6 / 0.8]
    assert j["credited_value_micros"].to_list() == [3, 7]
    # n = 4, inverse J (0.6, 0.2): middle (1 - 0.6 - 0.2) / 2 = 0.1 each
    tp4 = tps([(f"a{i}", "u", T0 + i * US, "x") for i in range(4)])
    four = per_model(attribute_polars(tp4, cv10, first=0.6, last=0.2), "c", "POSITION_BASED")
    mid = (1.0 - 0.6 - 0.2) / 2
    assert four["weight"].to_list() == [0.6, mid, mid, 0.2]
    # q = 6, 1, 1, 2 exactly -> R = 0
    assert four["credited_value_micros"].to_list() == [6, 1, 1, 2]


def test_time_decay_uses_age_from_last_touchpoint_not_conversion():
    # touchpoints 1 and 2 half-lives apart; conversion 1000 half-lives later (would underflow
    # if measured from T). r = 1/4, 1/2, 1 -> 1/7, 2/7, 4/7
    h = timedelta(hours=1)
    tp = tps([("a", "u", T0, "x"), ("b", "u", T0 + h, "x"), ("c", "u", T0 + 2 * h, "x")])
    cv = convs([("conv", "u", T0 + 2 * h + 1000 * h, 700)])
    td = per_model(
        attribute_polars(tp, cv, half_life=h, lookback=timedelta(days=365)),
        "conv",
        "TIME_DECAY",
    )
    assert td["weight"].to_list() == pytest.approx([1 / 7, 2 / 7, 4 / 7], rel=1e-15)
    assert td["credited_value_micros"].to_list() == [100, 200, 400]


def test_window_edges_without_reset():
    T = T0 + 40 * DAY
    L = timedelta(days=30)
    tp = tps(
        [
            ("at_T_minus_L", "u", T - L, "x"),  # excluded: T - L < t is strict
            ("just_inside", "u", T - L + US, "x"),  # included
            ("at_T", "u", T, "x"),  # included: t <= T
            ("after_T", "u", T + US, "x"),  # excluded
        ]
    )
    cv = convs([("c", "u", T, 0)])
    links = attribute_polars(tp, cv, lookback=L, reset_after_conversion=False)
    assert ids_of(links, "c") == ["just_inside", "at_T"]
    assert per_model(links, "c", "LINEAR")["touchpoint_count"].to_list() == [2, 2]
    assert per_model(links, "c", "LINEAR")["credited_value_micros"].to_list() == [0, 0]


def test_reset_on_and_off():
    tp = tps(
        [
            ("x1", "u", T0, "x"),
            (
                "x2",
                "u",
                T0 + 2 * DAY,
                "x",
            ),  # exactly at c1 -> belongs to c1 under reset
            ("x3", "u", T0 + 3 * DAY, "x"),
            ("y1", "v", T0 + 9 * DAY, "x"),
        ]
    )
    cv = convs(
        [
            ("c1", "u", T0 + 2 * DAY, 10),
            ("c2", "u", T0 + 4 * DAY, 10),
            ("c3", "u", T0 + 5 * DAY, 10),  # after c2, nothing new in between
            # two conversions of v at the same instant, ordered by conversion_id
            ("vb", "v", T0 + 10 * DAY, 10),
            ("va", "v", T0 + 10 * DAY, 10),
            ("nobody", "w", T0, 10),  # group without touchpoints
        ]
    )
    on = attribute_polars(tp, cv, reset_after_conversion=True)
    assert ids_of(on, "c1") == ["x1", "x2"]
    assert ids_of(on, "c2") == ["x3"]
    assert ids_of(on, "c3") == []
    assert ids_of(on, "va") == ["y1"]
    assert ids_of(on, "vb") == []  # T_prev = T -> empty window
    assert ids_of(on, "nobody") == []

    off = attribute_polars(tp, cv, reset_after_conversion=False)
    assert ids_of(off, "c1") == ["x1", "x2"]
    assert ids_of(off, "c2") == ["x1", "x2", "x3"]
    assert ids_of(off, "c3") == ["x1", "x2", "x3"]
    assert ids_of(off, "va") == ["y1"]
    assert ids_of(off, "vb") == ["y1"]
    assert ids_of(off, "nobody") == []


def test_reset_still_applies_lookback():
    tp = tps([("old", "u", T0, "x"), ("new", "u", T0 + 40 * DAY, "x")])
    cv = convs([("c", "u", T0 + 45 * DAY, 1)])
    assert ids_of(attribute_polars(tp, cv), "c") == ["new"]


def test_timestamp_ties_broken_by_touchpoint_id_and_row_order_irrelevant():
    tp = tps(
        [
            ("tp_b", "u", T0 + DAY, "b_chan"),
            ("tp_c", "u", T0 + DAY, "direct"),
            ("tp_a", "u", T0 + DAY, "a_chan"),
        ]
    )
    cv = convs([("c", "u", T0 + 2 * DAY, 100)])
    links = attribute_polars(tp, cv)
    assert ids_of(links, "c") == ["tp_a", "tp_b", "tp_c"]
    assert per_model(links, "c", "FIRST_TOUCH")["weight"].to_list() == [1.0, 0.0, 0.0]
    assert per_model(links, "c", "LAST_TOUCH")["weight"].to_list() == [0.0, 0.0, 1.0]
    # last non-direct in (t, id) order is tp_b
    assert per_model(links, "c", "LAST_NON_DIRECT")["weight"].to_list() == [
        0.0,
        1.0,
        0.0,
    ]
    # identical times -> TIME_DECAY is linear; 33.33 x3 -> the remainder unit to position 3
    assert per_model(links, "c", "TIME_DECAY")["credited_value_micros"].to_list() == [
        33,
        33,
        34,
    ]
    for seed in range(3):
        shuffled = attribute_polars(tp.sample(fraction=1.0, shuffle=True, seed=seed), cv)
        assert shuffled.equals(links)


def test_value_split_remainders():
    tp = tps([(f"a{i}", "u", T0 + i * US, "x") for i in range(3)])
    # V = 2, LINEAR: q = 0.667 x3, floors 0, R = 2 -> positions 3 and 2
    # V = 0: all zero; V = 1: position 3
    cv = convs(
        [("v2", "u", T0 + DAY, 2)],
    )
    lin = per_model(attribute_polars(tp, cv), "v2", "LINEAR")
    assert lin["credited_value_micros"].to_list() == [0, 1, 1]
    for v, expected in [
        (0, [0, 0, 0]),
        (1, [0, 0, 1]),
        (3, [1, 1, 1]),
        (10**15 + 1, None),
    ]:
        cv = convs([("c", "u", T0 + DAY, v)])
        got = per_model(attribute_polars(tp, cv), "c", "LINEAR")["credited_value_micros"]
        if expected is not None:
            assert got.to_list() == expected
        assert got.sum() == v


def test_null_group_key_is_a_value_and_keys_separate_groups():
    tp = tps(
        [("t_null", "u", T0, "x"), ("t_org1", "u", T0, "x")],
        organization_id=[None, "org1"],
    )
    cv = convs(
        [("c_null", "u", T0 + DAY, 1), ("c_org2", "u", T0 + DAY, 1)],
        organization_id=[None, "org2"],
    )
    links = attribute_polars(tp, cv, group_by=("organization_id", "anon_id"))
    assert ids_of(links, "c_null") == ["t_null"]
    assert ids_of(links, "c_org2") == []
    # grouping by anon_id alone mixes them
    links = attribute_polars(tp, cv)
    assert ids_of(links, "c_null") == ["t_null", "t_org1"]


def test_empty_result_has_schema():
    tp = tps([("a", "u", T0 + DAY, "x")])
    cv = convs([("c", "u", T0, 1)])
    links = attribute_polars(tp, cv)
    assert links.height == 0
    assert dict(links.schema) == LINKS_SCHEMA


def test_invariants_on_random_data():
    rng = random.Random(7)
    users = [f"u{i}" for i in range(30)]
    chans = ["direct", "google", "email", "meta"]
    tp = tps(
        [
            (
                f"t{i:04d}",
                rng.choice(users),
                T0 + rng.randrange(0, 60 * 24) * timedelta(hours=1),
                rng.choice(chans),
            )
            for i in range(600)
        ]
    )
    cv = convs(
        [
            (
                f"c{i:03d}",
                rng.choice(users),
                T0 + rng.randrange(0, 60 * 24) * timedelta(hours=1),
                rng.randrange(0, 10**9),
            )
            for i in range(80)
        ]
    )
    value = dict(zip(cv["conversion_id"], cv["value_micros"], strict=True))
    for reset in (True, False):
        links = attribute_polars(tp, cv, reset_after_conversion=reset)
        sums = links.group_by("conversion_id", "model").agg(
            pl.col("weight").sum(),
            pl.col("credited_value_micros").sum(),
            pl.col("credited_value_micros").min().alias("min_credit"),
            pl.len(),
            pl.col("touchpoint_count").first(),
            pl.col("position").max(),
        )
        assert sums["weight"].to_list() == pytest.approx([1.0] * sums.height, abs=1e-12)
        assert all(value[c] == s for c, s in zip(sums["conversion_id"], sums["credited_value_micros"], strict=True))
        assert (sums["min_credit"] >= 0).all()
        assert (sums["len"] == sums["touchpoint_count"]).all()
        assert (sums["len"] == sums["position"]).all()
        if reset:  # a touchpoint belongs to at most one conversion
            per_tp = links.filter(pl.col("model") == "LINEAR")["touchpoint_id"]
            assert per_tp.n_unique() == per_tp.len()
