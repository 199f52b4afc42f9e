"""Hand-computed worked examples, run against the reference and the engine (tests/support/adapters.py).

Every expected number below is derived in the comment next to it from
docs/attribution.md, not read back from the code.
"""

from __future__ import annotations

import pytest

from tests.reference.attribution import (
    MICROS_PER_DAY,
    check_invariants,
    model_weights,
    split_value,
)
from tests.support.adapters import IMPLEMENTATIONS

DAY = MICROS_PER_DAY
T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z in microseconds
I63 = 2**63 - 1  # largest int64

U_SHAPED = {"first": 0.4, "last": 0.4}
J_CURVE = {"first": 0.2, "last": 0.6}
INVERSE_J = {"first": 0.6, "last": 0.2}
ALL_MODELS = [
    ("FIRST_TOUCH", {}),
    ("LAST_TOUCH", {}),
    ("LAST_NON_DIRECT", {}),
    ("LINEAR", {}),
    ("POSITION_BASED", U_SHAPED),
    ("TIME_DECAY", {"half_life_us": 7 * DAY}),
]


def tp(
    touchpoint_id: str,
    t: int,
    channel: str = "google_ads",
    anon_id: str = "a1",
    **extra,
) -> dict:
    return {
        "touchpoint_id": touchpoint_id,
        "anon_id": anon_id,
        "occurred_at": t,
        "channel": channel,
        **extra,
    }


def conv(conversion_id: str, t: int, value: int = 0, anon_id: str = "a1", **extra) -> dict:
    return {
        "conversion_id": conversion_id,
        "anon_id": anon_id,
        "occurred_at": t,
        "value_micros": value,
        **extra,
    }


def rows(links: list[dict], conversion_id: str, model: str) -> list[tuple[str, int, int]]:
    """(touchpoint_id, position, credited_value_micros) by position."""
    selected = [x for x in links if x["conversion_id"] == conversion_id and x["model"] == model]
    selected.sort(key=lambda x: x["position"])
    return [(x["touchpoint_id"], x["position"], x["credited_value_micros"]) for x in selected]


def weights_of(links: list[dict], conversion_id: str, model: str) -> list[float]:
    selected = [x for x in links if x["conversion_id"] == conversion_id and x["model"] == model]
    selected.sort(key=lambda x: x["position"])
    return [x["weight"] for x in selected]


def ids_of(links: list[dict], conversion_id: str, model: str = "LINEAR") -> list[str]:
    return [r[0] for r in rows(links, conversion_id, model)]


_IMPL = {"attribute": IMPLEMENTATIONS["reference"]}


@pytest.fixture(autouse=True, params=sorted(IMPLEMENTATIONS))
def implementation(request: pytest.FixtureRequest):
    """Run every end-to-end example against each implementation."""
    _IMPL["attribute"] = IMPLEMENTATIONS[request.param]
    yield request.param
    _IMPL["attribute"] = IMPLEMENTATIONS["reference"]


def run(touchpoints: list[dict], conversions: list[dict], **kwargs) -> tuple[list[dict], list[dict]]:
    """The chosen implementation plus the invariant self-check on its output."""
    kwargs.setdefault("models", [("LINEAR", {})])
    links, unattributed = _IMPL["attribute"](touchpoints, conversions, **kwargs)
    check_invariants(links, {c["conversion_id"]: c for c in conversions})
    return links, unattributed


# --------------------------------------------------------------------------------------
# split_value
# --------------------------------------------------------------------------------------


def test_split_exact_quotas_need_no_remainder() -> None:
    # q = 5 * 1.0 = 5.0 -> b = 5 (q >= float(V) gives V), R = 0.
    assert split_value(5, [1.0]) == [5]
    # q = (50, 50), all fractions 0, R = 0.
    assert split_value(100, [0.5, 0.5]) == [50, 50]
    # V = 0: every quota is 0.
    assert split_value(0, [0.25, 0.75]) == [0, 0]


def test_split_remainder_with_equal_fractions_goes_to_later_positions() -> None:
    # w = 1/3: q = 10/3 = 3.33..; b = (3, 3, 3), R = 10 - 9 = 1; equal f -> position 3.
    assert split_value(10, [1 / 3] * 3) == [3, 3, 4]
    # q = 11/3 = 3.66..; b = (3, 3, 3), R = 2 -> positions 3 then 2.
    assert split_value(11, [1 / 3] * 3) == [3, 4, 4]
    # w = 1/6: q = 16.66..; b = 16 * 6 = 96, R = 4 -> positions 6, 5, 4, 3.
    assert split_value(100, [1 / 6] * 6) == [16, 16, 17, 17, 17, 17]
    # q = (0.5, 0.5): b = (0, 0), R = 1, f tie 0.5 = 0.5 -> position 2.
    assert split_value(1, [0.5, 0.5]) == [0, 1]
    # q = (1.5, 1.5): b = (1, 1), R = 1 -> position 2.
    assert split_value(3, [0.5, 0.5]) == [1, 2]


def test_split_remainder_follows_largest_fraction() -> None:
    # w = (1/7, 2/7, 4/7), V = 10: q = (1.43, 2.86, 5.71), b = (1, 2, 5) = 8, R = 2,
    # f = (0.43, 0.86, 0.71) -> position 2 (0.86), then position 3 (0.71).
    assert split_value(10, [1 / 7, 2 / 7, 4 / 7]) == [1, 3, 6]
    # U-shaped n=3, V=7: w = (0.4, 0.19999999999999996, 0.4); q = (2.8000000000000003,
    # 1.3999999999999997, 2.8000000000000003); b = (2, 1, 2) = 5, R = 2;
    # f = (0.8, 0.4, 0.8): positions 3 and 1 tie on 0.8 -> position 3 first, then 1.
    assert split_value(7, [0.4, 1 - 0.4 - 0.4, 0.4]) == [3, 1, 3]


def test_split_zero_weights_get_nothing() -> None:
    # q = (0, 0, 9), f all 0, R = 0.
    assert split_value(9, [0.0, 0.0, 1.0]) == [0, 0, 9]


def test_split_positive_remainder_over_several_rounds() -> None:
    # V = 2**62 (exact in float64), w = fl(1/3) = 6004799503160661 / 2**54.
    # q = 2**62 * w = 6004799503160661 * 2**8 = 1537228672809129216 exactly, f = 0.
    # sum b = 3 * 1537228672809129216 = 4611686018427387648; R = 2**62 - that = 256.
    # Rounds hand out one unit to positions 3, 2, 1 (equal f, later first):
    # 256 = 85 * 3 + 1, so each gets 85 and position 3 gets the 256th unit.
    q = 1537228672809129216
    assert split_value(2**62, [1 / 3] * 3) == [q + 85, q + 85, q + 86]


def test_split_huge_values_near_int64_max() -> None:
    # float(2**63 - 1) = 2**63. FIRST_TOUCH: q_1 = 2**63 >= float(V) -> b_1 = V; R = 0.
    assert split_value(I63, [1.0, 0.0]) == [I63, 0]
    assert split_value(I63, [0.0, 0.0, 1.0]) == [0, 0, I63]
    # V = 2**53 + 1: float(V) = 2**53, q_1 = 2**53 is not below float(V) -> b_1 = V,
    # R = 0
    # (no unit leaks to the weight-0 position).
    assert split_value(2**53 + 1, [1.0, 0.0]) == [2**53 + 1, 0]
    # w = (0.5, 0.5): q = 2**62 each, f = 0, sum b = 2**63, R = -1 (negative case):
    # take 1 from the smallest (f, -k) -> position 2.
    assert split_value(I63, [0.5, 0.5]) == [2**62, 2**62 - 1]
    # V = 2**63 - 3 still rounds to 2**63; R = -3: round 1 takes from 2 then 1,
    # round 2 from 2.
    assert split_value(2**63 - 3, [0.5, 0.5]) == [2**62 - 1, 2**62 - 2]
    # w = 0.25 x 4: q = 2**61 each, sum 2**63, R = -1 -> position 4.
    assert split_value(I63, [0.25] * 4) == [2**61, 2**61, 2**61, 2**61 - 1]
    # V = 2**53 + 1, w = (0.5, 0.5): q = 2**52 each, sum 2**53, R = +1 -> position 2.
    assert split_value(2**53 + 1, [0.5, 0.5]) == [2**52, 2**52 + 1]


# --------------------------------------------------------------------------------------
# model_weights
# --------------------------------------------------------------------------------------

TIMES3 = [T0, T0 + 1, T0 + 2]
CH3 = ["google_ads", "email", "meta_ads"]


def test_first_and_last_touch_weights() -> None:
    assert model_weights("FIRST_TOUCH", {}, TIMES3, CH3) == [1.0, 0.0, 0.0]
    assert model_weights("LAST_TOUCH", {}, TIMES3, CH3) == [0.0, 0.0, 1.0]
    assert model_weights("FIRST_TOUCH", {}, [T0], ["direct"]) == [1.0]


def test_last_non_direct_weights() -> None:
    # Last non-direct channel is position 1 (positions 2, 3 are direct).
    assert model_weights("LAST_NON_DIRECT", {}, TIMES3, ["email", "direct", "direct"]) == [1.0, 0.0, 0.0]
    # Position 2 is the last non-direct one.
    assert model_weights("LAST_NON_DIRECT", {}, TIMES3, ["direct", "email", "direct"]) == [0.0, 1.0, 0.0]
    # All direct -> position n.
    assert model_weights("LAST_NON_DIRECT", {}, TIMES3, ["direct"] * 3) == [
        0.0,
        0.0,
        1.0,
    ]
    # Custom direct set: "(none)" now counts as direct, so position 1 wins.
    assert model_weights(
        "LAST_NON_DIRECT",
        {},
        TIMES3,
        ["email", "(none)", "direct"],
        direct_channels=("direct", "(none)"),
    ) == [1.0, 0.0, 0.0]


def test_linear_weights() -> None:
    assert model_weights("LINEAR", {}, TIMES3 + [T0 + 3], CH3 + ["x"]) == [0.25] * 4
    assert model_weights("LINEAR", {}, TIMES3, CH3) == [1 / 3] * 3


def test_position_based_weights() -> None:
    # n = 1 -> 1 whatever the parameters.
    assert model_weights("POSITION_BASED", J_CURVE, [T0], ["x"]) == [1.0]
    # n = 2: first/(first+last), last/(first+last): U -> 0.4/0.8, 0.4/0.8 = (0.5, 0.5).
    assert model_weights("POSITION_BASED", U_SHAPED, [T0, T0], ["x", "y"]) == [0.5, 0.5]
    # J-curve: 0.2/0.8 = 0.25, 0.6/0.8 = 0.75.
    assert model_weights("POSITION_BASED", J_CURVE, [T0, T0], ["x", "y"]) == pytest.approx([0.25, 0.75])
    # n = 3, U: (0.4, 1 - 0.8 = 0.2, 0.4).
    assert model_weights("POSITION_BASED", U_SHAPED, TIMES3, CH3) == pytest.approx([0.4, 0.2, 0.4])
    # n = 4, inverse J: (0.6, (1 - 0.8)/2 = 0.1, 0.1, 0.2).
    w = model_weights("POSITION_BASED", INVERSE_J, TIMES3 + [T0 + 3], CH3 + ["x"])
    assert w == pytest.approx([0.6, 0.1, 0.1, 0.2])
    # n = 5, U: middle (1 - 0.8)/3 = 1/15 each.
    w = model_weights("POSITION_BASED", U_SHAPED, [T0 + i for i in range(5)], ["x"] * 5)
    assert w == pytest.approx([0.4, 1 / 15, 1 / 15, 1 / 15, 0.4])


def test_time_decay_weights() -> None:
    h = 7 * DAY
    # Ages from t_n: 14d, 7d, 0 -> r = (1/4, 1/2, 1), sum 7/4 -> w = (1/7, 2/7, 4/7).
    w = model_weights("TIME_DECAY", {"half_life_us": h}, [T0, T0 + h, T0 + 2 * h], CH3)
    assert w == pytest.approx([1 / 7, 2 / 7, 4 / 7], abs=1e-15)
    # Equal times: r = (1, 1, 1) -> 1/3 each, exactly 1.0 / 3.0.
    assert model_weights("TIME_DECAY", {"half_life_us": h}, [T0] * 3, CH3) == [1 / 3] * 3
    # Half-life 1 day, ages 1d and 0: r = (1/2, 1), sum 3/2 -> (1/3, 2/3).
    w = model_weights("TIME_DECAY", {"half_life_us": DAY}, [T0, T0 + DAY], ["x", "y"])
    assert w == pytest.approx([1 / 3, 2 / 3], abs=1e-15)
    # n = 1 -> 1.
    assert model_weights("TIME_DECAY", {"half_life_us": h}, [T0], ["x"]) == [1.0]


# --------------------------------------------------------------------------------------
# attribute_reference: windows, reset, ordering, grouping
# --------------------------------------------------------------------------------------


def test_lookback_window_edges() -> None:
    lookback = 30 * DAY
    t = T0 + 100 * DAY
    touchpoints = [
        tp("at_lower_edge", t - lookback),  # T - L < t fails: excluded
        tp("just_inside", t - lookback + 1),  # included
        tp("middle", t - DAY),  # included
        tp("at_conversion", t),  # t <= T: included
        tp("after", t + 1),  # excluded
    ]
    links, unattributed = run(touchpoints, [conv("c", t, 3)], lookback_us=lookback, models=ALL_MODELS)
    assert unattributed == []
    # LINEAR over 3: q = 1.0 each, R = 0.
    assert rows(links, "c", "LINEAR") == [
        ("just_inside", 1, 1),
        ("middle", 2, 1),
        ("at_conversion", 3, 1),
    ]
    assert rows(links, "c", "FIRST_TOUCH")[0] == ("just_inside", 1, 3)
    assert rows(links, "c", "LAST_TOUCH")[2] == ("at_conversion", 3, 3)
    assert {x["touchpoint_count"] for x in links} == {3}
    # 6 models x 3 eligible touchpoints, weight-0 links included.
    assert len(links) == 18


def test_reset_after_conversion_on_and_off() -> None:
    t1, t2 = T0 + 10 * DAY, T0 + 20 * DAY
    touchpoints = [
        tp("a", T0 + 5 * DAY),
        tp("b", t1),  # exactly at T_prev: belongs to c1
        tp("c", t1 + 1),  # just after c1: belongs to c2
        tp("d", T0 + 15 * DAY),
        tp("e", t2),
    ]
    # Input order must not matter: c2 comes first.
    conversions = [conv("c2", t2, 30), conv("c1", t1, 20)]

    links, unattributed = run(touchpoints, conversions, reset_after_conversion=True)
    assert unattributed == []
    # c1: a, b -> 20/2 = 10 each. c2 (T_prev = t1): c, d, e -> 30/3 = 10 each.
    assert rows(links, "c1", "LINEAR") == [("a", 1, 10), ("b", 2, 10)]
    assert rows(links, "c2", "LINEAR") == [("c", 1, 10), ("d", 2, 10), ("e", 3, 10)]

    links, unattributed = run(touchpoints, conversions, reset_after_conversion=False)
    assert unattributed == []
    # c1 unchanged; c2 looks back over (t2 - 30d, t2], which holds all five:
    # 30/5 = 6 each.
    assert rows(links, "c1", "LINEAR") == [("a", 1, 10), ("b", 2, 10)]
    assert rows(links, "c2", "LINEAR") == [
        ("a", 1, 6),
        ("b", 2, 6),
        ("c", 3, 6),
        ("d", 4, 6),
        ("e", 5, 6),
    ]


def test_reset_chain_of_three_conversions() -> None:
    touchpoints = [tp("at_c2", T0), tp("after_c2", T0 + DAY)]
    links, unattributed = run(touchpoints, [conv("c1", T0 - DAY), conv("c2", T0), conv("c3", T0 + 2 * DAY)])
    # c1 at T0 - 1d: nothing at or before it -> outside_window (group has touchpoints).
    assert [(u["conversion_id"], u["reason"]) for u in unattributed] == [("c1", "outside_window")]
    # c2 (T_prev = T0 - 1d) gets at_c2 (t = T0 = T); c3 (T_prev = T0) gets after_c2.
    assert ids_of(links, "c2") == ["at_c2"]
    assert ids_of(links, "c3") == ["after_c2"]


def test_reset_window_still_bounded_by_lookback() -> None:
    # c1 at T0, c2 at T0 + 40d; the touchpoint at T0 + 5d is after c1 but 35d before
    # c2 (> 30d).
    links, unattributed = run([tp("old", T0 + 5 * DAY)], [conv("c1", T0), conv("c2", T0 + 40 * DAY)])
    assert links == []
    assert [(u["conversion_id"], u["reason"]) for u in unattributed] == [
        ("c1", "outside_window"),
        ("c2", "outside_window"),
    ]


def test_two_conversions_at_the_same_instant() -> None:
    touchpoints = [tp("x", T0 - DAY), tp("y", T0)]
    conversions = [conv("b", T0, 10), conv("a", T0, 10)]
    # Reset on: "a" < "b", so "a" takes both; "b" has T_prev = T0 = T: empty window.
    links, unattributed = run(touchpoints, conversions)
    assert rows(links, "a", "LINEAR") == [("x", 1, 5), ("y", 2, 5)]
    assert unattributed == [
        {
            "conversion_id": "b",
            "anon_id": "a1",
            "occurred_at": T0,
            "value_micros": 10,
            "reason": "outside_window",
        }
    ]
    # Reset off: both look back over the same window.
    links, unattributed = run(touchpoints, conversions, reset_after_conversion=False)
    assert unattributed == []
    assert rows(links, "a", "LINEAR") == rows(links, "b", "LINEAR") == [("x", 1, 5), ("y", 2, 5)]


def test_ties_in_time_are_ordered_by_id_bytes() -> None:
    # UTF-8 bytes: "B" (0x42) < "a" (0x61) < "b" < "z" (0x7A) < "é" (0xC3 0xA9).
    touchpoints = [tp(i, T0) for i in ["z", "é", "b", "B", "a"]]
    links, _ = run(touchpoints, [conv("c", T0, 5)], models=ALL_MODELS)
    assert ids_of(links, "c") == ["B", "a", "b", "z", "é"]
    assert rows(links, "c", "FIRST_TOUCH")[0] == ("B", 1, 5)
    assert rows(links, "c", "LAST_TOUCH")[4] == ("é", 5, 5)
    # Equal times: TIME_DECAY is 1/5 each -> q = 1.0, R = 0.
    assert [r[2] for r in rows(links, "c", "TIME_DECAY")] == [1, 1, 1, 1, 1]


def test_time_ties_at_an_earlier_instant_sort_before_later_ones() -> None:
    touchpoints = [tp("a_late", T0 + 1), tp("z_early", T0)]
    links, _ = run(touchpoints, [conv("c", T0 + 1)])
    # Time first, then id.
    assert ids_of(links, "c") == ["z_early", "a_late"]


def test_unattributed_reasons() -> None:
    touchpoints = [
        tp("only_later", T0 + DAY, anon_id="has_tp"),
        tp("too_old", T0 - 31 * DAY, anon_id="old"),
    ]
    conversions = [
        conv("no_tp", T0, 7, anon_id="nobody"),
        conv("before_tp", T0, 8, anon_id="has_tp"),
        conv("old_tp", T0, 9, anon_id="old"),
    ]
    links, unattributed = run(touchpoints, conversions)
    assert links == []
    assert unattributed == [
        {
            "conversion_id": "no_tp",
            "anon_id": "nobody",
            "occurred_at": T0,
            "value_micros": 7,
            "reason": "no_touchpoints",
        },
        {
            "conversion_id": "before_tp",
            "anon_id": "has_tp",
            "occurred_at": T0,
            "value_micros": 8,
            "reason": "outside_window",
        },
        {
            "conversion_id": "old_tp",
            "anon_id": "old",
            "occurred_at": T0,
            "value_micros": 9,
            "reason": "outside_window",
        },
    ]


def test_grouping_keys_with_none_as_a_value() -> None:
    group_by = ("organization_id", "site_id", "anon_id")
    touchpoints = [
        tp("t_none", T0 - 2, organization_id="o1", site_id=None),
        tp("t_s1", T0 - 1, organization_id="o1", site_id="s1"),
        tp("t_o2", T0 - 3, organization_id="o2", site_id=None),
    ]
    conversions = [
        conv("c_none", T0, organization_id="o1", site_id=None),
        conv("c_s1", T0, organization_id="o1", site_id="s1"),
        conv("c_s2", T0, organization_id="o1", site_id="s2"),
    ]
    links, unattributed = run(touchpoints, conversions, group_by=group_by)
    # None matches None only; other orgs and sites are other groups.
    assert ids_of(links, "c_none") == ["t_none"]
    assert ids_of(links, "c_s1") == ["t_s1"]
    assert [(u["conversion_id"], u["reason"]) for u in unattributed] == [("c_s2", "no_touchpoints")]
    # Grouping by anon_id only merges them all: c_none is first of the three tied
    # conversions, the other two have T_prev = T0 = T.
    links, unattributed = run(touchpoints, conversions)
    assert ids_of(links, "c_none") == ["t_o2", "t_none", "t_s1"]
    assert [u["conversion_id"] for u in unattributed] == ["c_s1", "c_s2"]


# --------------------------------------------------------------------------------------
# attribute_reference: models and values end to end
# --------------------------------------------------------------------------------------


def test_every_model_emits_every_eligible_touchpoint() -> None:
    touchpoints = [
        tp("p1", T0 - 2 * DAY, "email"),
        tp("p2", T0 - DAY, "direct"),
        tp("p3", T0, "direct"),
    ]
    links, _ = run(touchpoints, [conv("c", T0, 100)], models=ALL_MODELS)
    assert len(links) == 6 * 3
    assert [x["channel"] for x in links if x["model"] == "LINEAR"] == [
        "email",
        "direct",
        "direct",
    ]
    assert weights_of(links, "c", "FIRST_TOUCH") == [1.0, 0.0, 0.0]
    assert weights_of(links, "c", "LAST_TOUCH") == [0.0, 0.0, 1.0]
    # Last non-direct is p1 (email).
    assert rows(links, "c", "LAST_NON_DIRECT") == [
        ("p1", 1, 100),
        ("p2", 2, 0),
        ("p3", 3, 0),
    ]
    # LINEAR: 100/3 -> b = 33 each, R = 1 -> position 3.
    assert [r[2] for r in rows(links, "c", "LINEAR")] == [33, 33, 34]
    # U-shaped n=3: q = (100 * 0.4 -> 40.0, 100 * 0.19999999999999996
    # = 19.999999999999996, 40.0) -> b = (40, 19, 40) = 99, R = 1, f = (0, ~1, 0)
    # -> position 2.
    assert [r[2] for r in rows(links, "c", "POSITION_BASED")] == [40, 20, 40]
    # TIME_DECAY h = 7d, ages from t_n: 2d, 1d, 0 -> r = (2**(-2/7), 2**(-1/7), 1)
    # = (0.8203, 0.9057, 1), sum 2.7260 -> w = (0.3009, 0.3323, 0.3668);
    # q = (30.09, 33.23, 36.68) -> b = (30, 33, 36) = 99, R = 1, largest f = 0.68
    # -> position 3.
    r = [2 ** (-2 / 7), 2 ** (-1 / 7), 1.0]
    assert weights_of(links, "c", "TIME_DECAY") == pytest.approx([x / sum(r) for x in r], rel=1e-12)
    assert [x[2] for x in rows(links, "c", "TIME_DECAY")] == [30, 33, 37]


def test_last_non_direct_all_direct_end_to_end() -> None:
    touchpoints = [tp("d1", T0 - DAY, "direct"), tp("d2", T0, "direct")]
    links, _ = run(touchpoints, [conv("c", T0, 50)], models=[("LAST_NON_DIRECT", {})])
    # All direct -> position n = 2 takes everything.
    assert rows(links, "c", "LAST_NON_DIRECT") == [("d1", 1, 0), ("d2", 2, 50)]
    # With d1 the only non-direct touchpoint, d1 wins although it is not last.
    touchpoints = [tp("d1", T0 - DAY, "paid_search"), tp("d2", T0, "direct")]
    links, _ = run(touchpoints, [conv("c", T0, 50)], models=[("LAST_NON_DIRECT", {})])
    assert rows(links, "c", "LAST_NON_DIRECT") == [("d1", 1, 50), ("d2", 2, 0)]


def test_position_based_n1_n2_n3_and_more() -> None:
    def credited(n: int, params: dict, value: int) -> list[int]:
        touchpoints = [tp(f"p{i}", T0 - n + i) for i in range(1, n + 1)]
        links, _ = run(touchpoints, [conv("c", T0, value)], models=[("POSITION_BASED", params)])
        return [r[2] for r in rows(links, "c", "POSITION_BASED")]

    # n = 1: weight 1.
    assert credited(1, J_CURVE, 123) == [123]
    # n = 2, J-curve: w = (0.25, 0.7499999999999999); q = (25.0, 74.99999999999999)
    # -> b = (25, 74), R = 1, f = (0, ~1) -> position 2.
    assert credited(2, J_CURVE, 100) == [25, 75]
    # n = 2, U-shaped: (0.5, 0.5), V = 5 -> b = (2, 2), R = 1, tie -> position 2.
    assert credited(2, U_SHAPED, 5) == [2, 3]
    # n = 3, U-shaped, V = 7: as in test_split_remainder_follows_largest_fraction.
    assert credited(3, U_SHAPED, 7) == [3, 1, 3]
    # n = 5, U-shaped, V = 1e6: q_1 = q_5 = 400000.0 (f = 0); middle
    # w = 0.19999999999999996 / 3, q = 66666.67 (f ~ 0.67)
    # -> b = 800000 + 3 * 66666 = 999998, R = 2 -> positions 4 then 3.
    assert credited(5, U_SHAPED, 1_000_000) == [400000, 66666, 66667, 66667, 400000]


def test_time_decay_equal_times_and_age_from_last_touch() -> None:
    h = {"half_life_us": 7 * DAY}
    # Three touchpoints at the same instant, ids out of order: positions a, b, c;
    # w = 1/3 each; V = 100 -> b = (33, 33, 33), R = 1 -> position 3: (33, 33, 34).
    touchpoints = [tp("c", T0 - DAY), tp("a", T0 - DAY), tp("b", T0 - DAY)]
    links, _ = run(touchpoints, [conv("conv", T0, 100)], models=[("TIME_DECAY", h)])
    assert rows(links, "conv", "TIME_DECAY") == [
        ("a", 1, 33),
        ("b", 2, 33),
        ("c", 3, 34),
    ]
    assert weights_of(links, "conv", "TIME_DECAY") == [1 / 3] * 3
    # Ages from t_n, not T: touchpoints 7d apart give (1/3, 2/3) whether the conversion
    # is at the last touch or 10 days later; V = 9 -> q = 9 * (1/3, 2/3) = (3.0, 6.0),
    # R = 0. (Had either product rounded to just below the integer, its f ~ 1 would
    # win the missing unit back, so (3, 6) either way.)
    for t_conv in (T0, T0 + 10 * DAY):
        touchpoints = [tp("old", T0 - 7 * DAY), tp("new", T0)]
        links, _ = run(touchpoints, [conv("conv", t_conv, 9)], models=[("TIME_DECAY", h)])
        assert weights_of(links, "conv", "TIME_DECAY") == pytest.approx([1 / 3, 2 / 3], abs=1e-15)
        assert [r[2] for r in rows(links, "conv", "TIME_DECAY")] == [3, 6]


def test_huge_value_end_to_end() -> None:
    touchpoints = [tp("p1", T0 - 1), tp("p2", T0)]
    links, _ = run(
        touchpoints,
        [conv("c", T0, I63)],
        models=[("FIRST_TOUCH", {}), ("LINEAR", {}), ("LAST_TOUCH", {})],
    )
    # FIRST_TOUCH: q_1 = 2**63 >= float(V) -> V; LAST_TOUCH likewise on position 2.
    assert rows(links, "c", "FIRST_TOUCH") == [("p1", 1, I63), ("p2", 2, 0)]
    assert rows(links, "c", "LAST_TOUCH") == [("p1", 1, 0), ("p2", 2, I63)]
    # LINEAR: q = 2**62 each, R = -1 -> taken from position 2.
    assert rows(links, "c", "LINEAR") == [("p1", 1, 2**62), ("p2", 2, 2**62 - 1)]


def test_zero_value_conversion() -> None:
    links, unattributed = run([tp("p", T0)], [conv("c", T0, 0)], models=ALL_MODELS)
    assert unattributed == []
    assert {x["credited_value_micros"] for x in links} == {0}
    assert {x["weight"] for x in links} == {1.0}


def test_check_invariants_catches_violations() -> None:
    link = {
        "conversion_id": "c",
        "touchpoint_id": "p",
        "model": "LINEAR",
        "weight": 1.0,
        "position": 1,
        "touchpoint_count": 1,
        "credited_value_micros": 10,
        "channel": "x",
    }
    ten = {"c": conv("c", T0, 10)}
    check_invariants([link], ten)
    with pytest.raises(AssertionError):  # value does not add up
        check_invariants([link], {"c": conv("c", T0, 11)})
    with pytest.raises(AssertionError):  # weights sum to 0.5
        check_invariants([{**link, "weight": 0.5}], ten)
    with pytest.raises(AssertionError):  # positions are not 1..n
        check_invariants([{**link, "position": 2}], ten)
