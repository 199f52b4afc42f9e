"""The data-driven reference (tests/reference/data_driven.py) against hand-computed examples and the
identities of docs/data_driven.md.

Every expected number in a worked example is derived in the comment next to it, with fractions, from
docs/data_driven.md, not read back from the code. The random checks compare the reference's two
independent computations (dense solve vs walk, orderings vs subsets vs the closed forms of §4).
"""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction as F

import pytest

from tests.reference.attribution import MICROS_PER_DAY, check_invariants
from tests.reference.data_driven import (
    CONVERSION,
    NULL,
    START,
    characteristic_function,
    credit_journey,
    data_driven_reference,
    fitting_journeys,
    logistic_probability,
    logistic_shapley,
    markov_dense,
    markov_enumerate,
    markov_links,
    path_table,
    shapley_links,
    shapley_permutations,
    shapley_subsets,
    sigmoid,
    transform_path,
)

DAY = MICROS_PER_DAY
T0 = 1_700_000_000_000_000
TOL = 1e-12


def tp(touchpoint_id: str, t: int, channel: str, anon_id: str = "u1") -> dict:
    return {"touchpoint_id": touchpoint_id, "anon_id": anon_id, "occurred_at": t, "channel": channel}


def conv(conversion_id: str, t: int, value: int = 0, anon_id: str = "u1") -> dict:
    return {"conversion_id": conversion_id, "anon_id": anon_id, "occurred_at": t, "value_micros": value}


def approx(expected: dict) -> dict:
    return {key: pytest.approx(float(value), abs=TOL) for key, value in expected.items()}


# ======================================================================================
# §2 Path transforms
# ======================================================================================


@pytest.mark.parametrize(
    ("transform", "expected"),
    [
        ("exposure", ("a", "b", "a", "c")),  # consecutive repeats collapsed
        ("unique", ("a", "b", "c")),  # each channel once, at its first occurrence
        ("first", ("a",)),  # the first touch only
        ("frequency", ("a", "a", "b", "a", "c")),  # every touch
    ],
)
def test_transforms_of_a_a_b_a_c(transform: str, expected: tuple) -> None:
    assert transform_path(["a", "a", "b", "a", "c"], transform) == expected


def test_exposure_is_the_default_transform() -> None:
    assert transform_path(("a", "a", "b")) == ("a", "b")


def test_unknown_transform_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown transform"):
        transform_path(("a",), "last")


def test_remove_direct_if_not_all() -> None:
    # direct a direct b: not all direct -> direct touches go -> a b
    assert transform_path(("direct", "a", "direct", "b"), "frequency", remove_direct_if_not_all=True) == ("a", "b")
    # every touch direct: kept; exposure collapses the repeat
    assert transform_path(("direct", "direct"), "exposure", remove_direct_if_not_all=True) == ("direct",)
    assert transform_path(("direct", "direct"), "frequency", remove_direct_if_not_all=True) == ("direct", "direct")
    # removal comes BEFORE the transform: a direct a -> a a -> exposure a (not a direct a -> a a)
    assert transform_path(("a", "direct", "a"), "exposure", remove_direct_if_not_all=True) == ("a",)
    # ... and first touch is taken after removal: direct a -> a
    assert transform_path(("direct", "a"), "first", remove_direct_if_not_all=True) == ("a",)
    # without the option, direct is an ordinary channel
    assert transform_path(("direct", "a"), "first") == ("direct",)
    # the direct channels are configurable
    assert transform_path(("(none)", "a"), "first", remove_direct_if_not_all=True, direct=("(none)",)) == ("a",)


def test_path_table_aggregates_journeys() -> None:
    journeys = [
        {"channels": ["a", "a", "b"], "converted": True, "value_micros": 10},
        {"channels": ["a", "b", "b"], "converted": True, "value_micros": 5},
        {"channels": ["a", "b"], "converted": False, "value_micros": 0},
        {"channels": ["direct"], "converted": False, "value_micros": 0},
        {"channels": ["direct", "b"], "converted": True, "value_micros": 7},
    ]
    # exposure: a b (conv 10), a b (conv 5), a b (null), direct (null), direct b (conv 7)
    assert path_table(journeys) == {
        ("a", "b"): (2, 1, 15),
        ("direct",): (0, 1, 0),
        ("direct", "b"): (1, 0, 7),
    }
    # remove_direct_if_not_all: direct b -> b; direct alone stays
    assert path_table(journeys, remove_direct_if_not_all=True) == {
        ("a", "b"): (2, 1, 15),
        ("direct",): (0, 1, 0),
        ("b",): (1, 0, 7),
    }
    # frequency keeps the three paths a a b / a b b / a b apart
    assert path_table(journeys, transform="frequency")[("a", "a", "b")] == (1, 0, 10)


# ======================================================================================
# §1 Journeys fitted on
# ======================================================================================


def pipeline_example() -> tuple[list[dict], list[dict]]:
    """lookback 7 days.

    u1: t0 c (day -10), t1 a (day 1), t2 b (day 2), conversion c1 (day 3, value 101), t3 c (day 4).
        c1's window is (day -4, day 3]: t1 t2. t0 is in no window and not in the tail (it is before the
        conversion). Tail: t3.
    u2: t4 a (day 0), no conversion: tail t4.
    u3: conversion c3 (day 5), no touchpoint: unattributed, no journey.
    u4: t5 d (day 0), t6 a (day 20), no conversion: tail restricted to t > day 20 - 7: only t6.
    """
    touchpoints = [
        tp("t0", T0 - 10 * DAY, "c"),
        tp("t1", T0 + 1 * DAY, "a"),
        tp("t2", T0 + 2 * DAY, "b"),
        tp("t3", T0 + 4 * DAY, "c"),
        tp("t4", T0, "a", anon_id="u2"),
        tp("t5", T0, "d", anon_id="u4"),
        tp("t6", T0 + 20 * DAY, "a", anon_id="u4"),
    ]
    conversions = [conv("c1", T0 + 3 * DAY, 101), conv("c3", T0 + 5 * DAY, 9, anon_id="u3")]
    return touchpoints, conversions


def test_fitting_journeys_worked_example() -> None:
    touchpoints, conversions = pipeline_example()
    journeys = fitting_journeys(touchpoints, conversions, lookback_us=7 * DAY)
    summary = [
        (j["conversion_id"], j["touchpoint_ids"], j["channels"], j["converted"], j["value_micros"]) for j in journeys
    ]
    assert summary == [
        ("c1", ["t1", "t2"], ["a", "b"], True, 101),
        (None, ["t3"], ["c"], False, 0),
        (None, ["t4"], ["a"], False, 0),
        (None, ["t6"], ["a"], False, 0),
    ]


def test_fitting_journeys_reset_and_tail_boundaries() -> None:
    # t1 a (day 1), c1 (day 2), t2 b (day 3), t3 c (day 4, exactly at c2), c2 (day 4), t4 d (day 4 + 1us)
    touchpoints = [
        tp("t1", T0 + DAY, "a"),
        tp("t2", T0 + 3 * DAY, "b"),
        tp("t3", T0 + 4 * DAY, "c"),
        tp("t4", T0 + 4 * DAY + 1, "d"),
    ]
    conversions = [conv("c1", T0 + 2 * DAY, 1), conv("c2", T0 + 4 * DAY, 2)]

    def summary(reset: bool) -> list:
        journeys = fitting_journeys(touchpoints, conversions, lookback_us=30 * DAY, reset_after_conversion=reset)
        return [(j["conversion_id"], j["touchpoint_ids"]) for j in journeys]

    # reset: c1 gets t1; c2 gets t2, t3 (a touchpoint at exactly T counts). The tail is strictly after
    # c2: only t4.
    assert summary(True) == [("c1", ["t1"]), ("c2", ["t2", "t3"]), (None, ["t4"])]
    # no reset: c2 looks back over its whole window: t1 t2 t3. Same tail.
    assert summary(False) == [("c1", ["t1"]), ("c2", ["t1", "t2", "t3"]), (None, ["t4"])]


def test_fitting_journeys_ties_ordered_by_touchpoint_id_bytes() -> None:
    # Same instant: order by touchpoint_id as UTF-8 bytes ("B" < "a" < "é").
    touchpoints = [tp("é", T0, "x"), tp("a", T0, "y"), tp("B", T0, "z")]
    journeys = fitting_journeys(touchpoints, [conv("c", T0, 0)], lookback_us=DAY)
    assert journeys[0]["touchpoint_ids"] == ["B", "a", "é"]
    tails = fitting_journeys(touchpoints, [], lookback_us=DAY)
    assert tails[0]["touchpoint_ids"] == ["B", "a", "é"]


def test_fitting_journeys_group_by_site() -> None:
    # Same anon_id on two sites: two groups, so the site-2 touchpoint is a tail, not in c1's window.
    touchpoints = [dict(tp("t1", T0, "a"), site_id="s1"), dict(tp("t2", T0, "b"), site_id="s2")]
    conversions = [dict(conv("c1", T0 + 1, 0), site_id="s1")]
    journeys = fitting_journeys(touchpoints, conversions, lookback_us=DAY, group_by=("site_id", "anon_id"))
    assert [(j["conversion_id"], j["touchpoint_ids"]) for j in journeys] == [("c1", ["t1"]), (None, ["t2"])]


# ======================================================================================
# §3 MARKOV: worked examples
# ======================================================================================

# paths {a: 1 conv 1 null, a b: 1 conv, b: 1 null}
SMALL = {("a",): (1, 1), ("a", "b"): (1, 0), ("b",): (0, 1)}


@pytest.mark.parametrize("markov", [markov_dense, markov_enumerate])
def test_markov_order_1_worked_example(markov) -> None:
    # Counts: START->a 2+1 = 3, START->b 1; a->CONV 1, a->NULL 1, a->b 1; b->CONV 1, b->NULL 1.
    # x_b = 1/2; x_a = 1/3 + 1/3 x_b = 1/2; P = 3/4 x_a + 1/4 x_b = 1/2.
    # Remove a: START->a goes to NULL: P = 1/4 * 1/2 = 1/8, effect 1 - (1/8)/(1/2) = 3/4.
    # Remove b: x_a = 1/3, START->b to NULL: P = 3/4 * 1/3 = 1/4, effect 1 - 1/2 = 1/2.
    # Shares: 3/4 / (5/4) = 3/5 and 2/5.
    fit = markov(SMALL)
    assert fit["p_conversion"] == pytest.approx(0.5, abs=TOL)
    assert fit["removal_effect"] == approx({"a": F(3, 4), "b": F(1, 2)})
    assert fit["share"] == approx({"a": F(3, 5), "b": F(2, 5)})
    assert fit["transitions"] == {
        (START, ("a",)): 3,
        (START, ("b",)): 1,
        (("a",), CONVERSION): 1,
        (("a",), NULL): 1,
        (("a",), ("b",)): 1,
        (("b",), CONVERSION): 1,
        (("b",), NULL): 1,
    }


def test_markov_accepts_rows_with_value() -> None:
    with_value = {path: (*row, 1_000) for path, row in SMALL.items()}
    assert markov_dense(with_value)["removal_effect"] == markov_dense(SMALL)["removal_effect"]


# paths {a b: 1 conv, b a: 1 null, a: 1 conv 1 null}
ORDER_EXAMPLE = {("a", "b"): (1, 0), ("b", "a"): (0, 1), ("a",): (1, 1)}


@pytest.mark.parametrize("markov", [markov_dense, markov_enumerate])
def test_markov_order_2_states(markov) -> None:
    # States (a), (b), (a, b), (b, a).
    # START->(a) 1+2 = 3, START->(b) 1; (a)->(a,b) 1, (a)->CONV 1, (a)->NULL 1; (a,b)->CONV 1;
    # (b)->(b,a) 1; (b,a)->NULL 1.
    # x_(a,b) = 1, x_(b,a) = 0, x_(b) = 0, x_(a) = 1/3 + 1/3 = 2/3; P = 3/4 * 2/3 = 1/2 (= 2 conv / 4).
    # Remove a: every state holds a except (b), and (b) only leads to (b, a): P = 0, effect 1.
    # Remove b: (a)->(a,b) to NULL: x_(a) = 1/3, START->(b) to NULL: P = 1/4, effect 1/2.
    # Shares 1 / (3/2) = 2/3 and 1/3.
    fit = markov(ORDER_EXAMPLE, order=2)
    assert fit["p_conversion"] == pytest.approx(0.5, abs=TOL)
    assert fit["removal_effect"] == approx({"a": 1, "b": F(1, 2)})
    assert fit["share"] == approx({"a": F(2, 3), "b": F(1, 3)})
    assert fit["transitions"] == {
        (START, ("a",)): 3,
        (START, ("b",)): 1,
        (("a",), ("a", "b")): 1,
        (("a",), CONVERSION): 1,
        (("a",), NULL): 1,
        (("a", "b"), CONVERSION): 1,
        (("b",), ("b", "a")): 1,
        (("b", "a"), NULL): 1,
    }


@pytest.mark.parametrize("markov", [markov_dense, markov_enumerate])
def test_markov_order_1_on_the_order_2_example(markov) -> None:
    # Order 1 mixes the two paths: a: ->b 1, ->CONV 1, ->NULL 1+1 (total 4); b: ->CONV 1, ->a 1 (total 2).
    # x_a = 1/4 + 1/4 x_b, x_b = 1/2 + 1/2 x_a  =>  7/8 x_a = 3/8, x_a = 3/7, x_b = 5/7.
    # P = 3/4 * 3/7 + 1/4 * 5/7 = 14/28 = 1/2.
    # Remove a: x_b = 1/2, P = 1/8, effect 3/4. Remove b: x_a = 1/4, P = 3/16, effect 5/8.
    # Shares (3/4) / (11/8) = 6/11 and 5/11: not those of order 2.
    fit = markov(ORDER_EXAMPLE, order=1)
    assert fit["p_conversion"] == pytest.approx(0.5, abs=TOL)
    assert fit["removal_effect"] == approx({"a": F(3, 4), "b": F(5, 8)})
    assert fit["share"] == approx({"a": F(6, 11), "b": F(5, 11)})


# frequency paths {a a b: 1 conv, a: 1 null, b b: 1 null}
SELF_LOOPS = {("a", "a", "b"): (1, 0), ("a",): (0, 1), ("b", "b"): (0, 1)}


@pytest.mark.parametrize("markov", [markov_dense, markov_enumerate])
def test_markov_self_transitions_keep_vs_drop(markov) -> None:
    # keep: START->a 2, START->b 1; a: ->a 1, ->b 1, ->NULL 1; b: ->b 1, ->CONV 1, ->NULL 1.
    #   x_b = 1/3 + 1/3 x_b => x_b = 1/2; x_a = 1/3 x_a + 1/3 x_b => x_a = 1/4.
    # drop: a: ->b 1, ->NULL 1; b: ->CONV 1, ->NULL 1.  x_b = 1/2, x_a = 1/2 x_b = 1/4: the same.
    # P = 2/3 * 1/4 + 1/3 * 1/2 = 1/3.
    # Remove a: P = 1/3 * 1/2 = 1/6, effect 1/2. Remove b: x_a = 0, P = 0, effect 1. Shares 1/3, 2/3.
    keep = markov(SELF_LOOPS, self_transitions="keep")
    drop = markov(SELF_LOOPS, self_transitions="drop")
    for fit in (keep, drop):
        assert fit["p_conversion"] == pytest.approx(1 / 3, abs=TOL)
        assert fit["removal_effect"] == approx({"a": F(1, 2), "b": 1})
        assert fit["share"] == approx({"a": F(1, 3), "b": F(2, 3)})
    assert keep["transitions"][(("a",), ("a",))] == 1
    assert keep["transitions"][(("b",), ("b",))] == 1
    assert (("a",), ("a",)) not in drop["transitions"]
    assert {key: n for key, n in keep["transitions"].items() if key[0] != key[1]} == drop["transitions"]


def test_markov_no_conversion() -> None:
    # P = 0: every removal effect is 0 (docs), and the shares are all 0 (AMBIGUITY in the reference).
    for markov in (markov_dense, markov_enumerate):
        fit = markov({("a", "b"): (0, 3)})
        assert fit["p_conversion"] == 0.0
        assert fit["removal_effect"] == {"a": 0.0, "b": 0.0}
        assert fit["share"] == {"a": 0.0, "b": 0.0}


# ======================================================================================
# §3 MARKOV: random checks
# ======================================================================================


def random_table(rng: random.Random, channels: str, max_len: int, transform: str, rows: int = 4) -> dict:
    table: dict[tuple, tuple[int, int]] = {}
    for _ in range(rng.randint(1, rows)):
        raw = [rng.choice(channels) for _ in range(rng.randint(1, max_len))]
        path = transform_path(raw, transform)
        old = table.get(path, (0, 0))
        table[path] = (old[0] + rng.randint(0, 3), old[1] + rng.randint(0, 3))
    return table


def test_markov_dense_equals_enumerate_on_random_tables() -> None:
    rng = random.Random(20240611)
    for case in range(500):
        transform = rng.choice(["exposure", "unique", "first", "frequency"])
        table = (
            random_table(rng, "abc", 4, transform) if case < 300 else random_table(rng, "abcd", 6, transform, rows=6)
        )
        order = rng.randint(1, 3)
        self_transitions = rng.choice(["keep", "drop"])
        dense = markov_dense(table, order, self_transitions)
        walked = markov_enumerate(table, order, self_transitions)
        assert dense["transitions"] == walked["transitions"]
        assert walked["p_conversion"] == pytest.approx(dense["p_conversion"], abs=1e-12)
        assert walked["removal_effect"] == approx(dense["removal_effect"])
        assert walked["share"] == approx(dense["share"])
        for effect in dense["removal_effect"].values():
            assert -1e-12 <= effect <= 1 + 1e-12


def test_markov_self_transitions_never_change_the_effects() -> None:
    rng = random.Random(7)
    for _ in range(100):
        table = random_table(rng, "abc", 5, "frequency")
        order = rng.randint(1, 3)
        keep = markov_dense(table, order, "keep")
        drop = markov_dense(table, order, "drop")
        assert drop["p_conversion"] == pytest.approx(keep["p_conversion"], abs=1e-12)
        assert drop["removal_effect"] == approx(keep["removal_effect"])


def test_markov_at_full_order_is_the_empirical_rate() -> None:
    # At an order >= the longest path, the states are the paths' prefixes: the chain is a prefix tree, so
    # P = total conversions / total journeys, and removing c loses exactly the conversions of the paths
    # that contain c: effect_c = conversions(paths with c) / conversions.
    rng = random.Random(11)
    for _ in range(100):
        table = random_table(rng, "abcd", 4, rng.choice(["exposure", "frequency"]))
        conversions = sum(row[0] for row in table.values())
        journeys = sum(row[0] + row[1] for row in table.values())
        fit = markov_dense(table, order=4)
        assert fit["p_conversion"] == pytest.approx(conversions / journeys if journeys else 0.0, abs=1e-12)
        if conversions:
            expected = {
                c: sum(row[0] for path, row in table.items() if c in path) / conversions for c in fit["removal_effect"]
            }
            assert fit["removal_effect"] == approx(expected)


# ======================================================================================
# §4 SHAPLEY: worked examples
# ======================================================================================


def test_shapley_rate_two_channels() -> None:
    # SMALL: v({a}) = 1/2, v({a, b}) = 1/1 = 1, v({b}) = 0/1 = 0, v(∅) = 0.
    # φ_a = 1/2 [(v(a) - v(∅)) + (v(ab) - v(b))] = 1/2 [1/2 + 1] = 3/4
    # φ_b = 1/2 [(v(b) - v(∅)) + (v(ab) - v(a))] = 1/2 [0 + 1/2] = 1/4.  Σ = 1 = v(N).
    fit = shapley_permutations(SMALL)
    assert fit["shapley_value"] == approx({"a": F(3, 4), "b": F(1, 4)})
    assert fit["share"] == approx({"a": F(3, 4), "b": F(1, 4)})
    assert fit["coalition_values"] == approx({frozenset("a"): F(1, 2), frozenset("ab"): 1, frozenset("b"): 0})


def test_shapley_conversions_two_channels() -> None:
    # SMALL, "conversions": v({a}) = 1 (coalition {a}), v({b}) = 0, v({a, b}) = 1 + 1 + 0 = 2.
    # φ_a = 1/2 [1 + (2 - 0)] = 3/2, φ_b = 1/2 [0 + (2 - 1)] = 1/2.
    # Closed form: φ_a = conv({a})/1 + conv({a,b})/2 = 1 + 1/2; φ_b = 0 + 1/2.
    fit = shapley_permutations(SMALL, "conversions")
    assert fit["shapley_value"] == approx({"a": F(3, 2), "b": F(1, 2)})
    assert fit["share"] == approx({"a": F(3, 4), "b": F(1, 4)})


# paths {a: 1 conv 3 null, b: 1 conv 1 null, a b: 3 conv 1 null, a b c: 1 conv 1 null}
THREE = {("a",): (1, 3), ("b",): (1, 1), ("a", "b"): (3, 1), ("a", "b", "c"): (1, 1)}


def test_shapley_rate_three_channels_negative_value() -> None:
    # v(a) = 1/4, v(b) = 1/2, v(ab) = 3/4, v(abc) = 1/2, every other set 0.
    # n = 3: w(0) = 0!2!/3! = 1/3, w(1) = 1!1!/3! = 1/6, w(2) = 2!0!/3! = 1/3.
    # φ_a = 1/3 (1/4 - 0) + 1/6 (3/4 - 1/2) + 1/6 (0 - 0) + 1/3 (1/2 - 0) = 2/24 + 1/24 + 4/24 = 7/24
    #        S = ∅              S = {b}             S = {c}          S = {b, c}
    # φ_b = 1/3 (1/2) + 1/6 (3/4 - 1/4) + 1/6 (0) + 1/3 (1/2) = 4/24 + 2/24 + 4/24 = 10/24
    # φ_c = 1/3 (0) + 1/6 (0 - 1/4) + 1/6 (0 - 1/2) + 1/3 (1/2 - 3/4) = -1/24 - 2/24 - 2/24 = -5/24
    # Σ = 12/24 = 1/2 = v(abc). Shares: c gets 0, a = 7/17, b = 10/17.
    for shapley in (shapley_permutations, shapley_subsets):
        fit = shapley(THREE)
        assert fit["shapley_value"] == approx({"a": F(7, 24), "b": F(10, 24), "c": F(-5, 24)})
        assert fit["share"] == approx({"a": F(7, 17), "b": F(10, 17), "c": 0})


def test_shapley_conversions_three_channels() -> None:
    # conversions: {a} 1, {b} 1, {a,b} 3, {a,b,c} 1.
    # φ_a = 1/1 + 3/2 + 1/3 = 17/6, φ_b = 1/1 + 3/2 + 1/3 = 17/6, φ_c = 1/3.  Σ = 6 conversions.
    fit = shapley_permutations(THREE, "conversions")
    assert fit["shapley_value"] == approx({"a": F(17, 6), "b": F(17, 6), "c": F(1, 3)})
    assert fit["share"] == approx({"a": F(17, 36), "b": F(17, 36), "c": F(2, 36)})


def test_shapley_coalitions_merge_paths_with_the_same_channels() -> None:
    # a b and b a a are the same coalition {a, b}: v = (1 + 2) / (1 + 1 + 2 + 0) = 3/4.
    fit = shapley_permutations({("a", "b"): (1, 1), ("b", "a", "a"): (2, 0)})
    assert fit["coalition_values"] == approx({frozenset("ab"): F(3, 4)})
    # only {a, b} observed: φ_a = φ_b = 1/2 · 3/4 = 3/8
    assert fit["shapley_value"] == approx({"a": F(3, 8), "b": F(3, 8)})


# ======================================================================================
# §4 SHAPLEY: random checks
# ======================================================================================


def closed_form(table: dict, characteristic: str) -> dict[str, float]:
    """The closed forms of docs/data_driven.md §4, summed over observed coalitions only."""
    coalitions: dict[frozenset, list[int]] = {}
    for path, row in table.items():
        if row[0] + row[1] == 0:
            continue
        counts = coalitions.setdefault(frozenset(path), [0, 0])
        counts[0] += row[0]
        counts[1] += row[1]
    players = sorted(set().union(*coalitions)) if coalitions else []
    n = len(players)

    def w(s: int) -> F:
        return F(math.factorial(s) * math.factorial(n - s - 1), math.factorial(n))

    phi = {}
    for c in players:
        total = F(0)
        for coalition, (conversions, nulls) in coalitions.items():
            if characteristic == "conversions":
                if c in coalition:
                    total += F(conversions, len(coalition))
            else:
                v = F(conversions, conversions + nulls)
                total += w(len(coalition) - 1) * v if c in coalition else -w(len(coalition)) * v
        phi[c] = total
    return phi


def test_shapley_orderings_subsets_and_closed_forms_agree() -> None:
    rng = random.Random(3)
    for _ in range(150):
        table = random_table(rng, "abcde", 4, rng.choice(["exposure", "unique", "frequency"]), rows=6)
        for characteristic in ("rate", "conversions"):
            by_orderings = shapley_permutations(table, characteristic)
            by_subsets = shapley_subsets(table, characteristic)
            expected = approx(closed_form(table, characteristic))
            assert by_orderings["shapley_value"] == expected
            assert by_subsets["shapley_value"] == expected


def test_shapley_eight_players() -> None:
    rng = random.Random(8)
    table = random_table(rng, "abcdefgh", 5, "unique", rows=12)
    table[tuple("abcdefgh")] = (2, 1)
    for characteristic in ("rate", "conversions"):
        by_orderings = shapley_permutations(table, characteristic)
        assert len(by_orderings["players"]) == 8
        assert by_orderings["shapley_value"] == approx(closed_form(table, characteristic))


def test_shapley_efficiency() -> None:
    # Σ φ = v(N) - v(∅), v(∅) = 0.
    rng = random.Random(5)
    for _ in range(100):
        table = random_table(rng, "abcd", 4, "exposure", rows=6)
        for characteristic in ("rate", "conversions"):
            fit = shapley_permutations(table, characteristic)
            v = characteristic_function(table, characteristic)
            assert v(frozenset()) == 0.0
            assert sum(fit["shapley_value"].values()) == pytest.approx(v(frozenset(fit["players"])), abs=1e-12)
            if any(value > 0 for value in fit["shapley_value"].values()):
                assert sum(fit["share"].values()) == pytest.approx(1.0, abs=1e-12)


def swap(path: tuple, x: str, y: str) -> tuple:
    return tuple(y if c == x else x if c == y else c for c in path)


def test_shapley_symmetry() -> None:
    # A table closed under swapping a and b (same counts): a and b are symmetric players.
    rng = random.Random(6)
    for _ in range(60):
        base = random_table(rng, "abc", 3, "exposure")
        table: dict[tuple, tuple[int, int]] = {}
        for path, row in base.items():
            for image in (path, swap(path, "a", "b")):
                old = table.get(image, (0, 0))
                table[image] = (old[0] + row[0], old[1] + row[1])
        for characteristic in ("rate", "conversions"):
            phi = shapley_permutations(table, characteristic)["shapley_value"]
            if "a" in phi or "b" in phi:
                assert phi["a"] == pytest.approx(phi["b"], abs=1e-12)


def test_shapley_null_player() -> None:
    rng = random.Random(9)
    for _ in range(60):
        base = random_table(rng, "abc", 3, "exposure")
        base_rate = shapley_permutations(base, "rate")["shapley_value"]
        base_conversions = shapley_permutations(base, "conversions")["shapley_value"]

        # "rate": every path also seen with d appended, same counts: v(T ∪ {d}) = v(T) for every T and
        # v({d}) = 0 (never observed) = v(∅). d is a null player; the others keep their values.
        with_d = dict(base)
        for path, row in base.items():
            with_d[(*path, "d")] = row
        phi = shapley_permutations(with_d, "rate")["shapley_value"]
        assert phi.get("d", 0.0) == pytest.approx(0.0, abs=1e-12)  # absent only if every row is 0, 0
        assert {c: phi[c] for c in base_rate} == approx(base_rate)

        # "conversions": d only on non-converting paths adds no conversion to any v(S).
        with_d = dict(base)
        with_d[("d",)] = (0, 2)
        with_d[("a", "d")] = (0, 1)
        phi = shapley_permutations(with_d, "conversions")["shapley_value"]
        assert phi["d"] == pytest.approx(0.0, abs=1e-12)
        assert {c: phi[c] for c in base_conversions} == approx(base_conversions)


def test_shapley_too_many_players_for_orderings() -> None:
    with pytest.raises(ValueError, match="orderings"):
        shapley_permutations({tuple("abcdefghi"): (1, 0)})


# ======================================================================================
# §5 Crediting
# ======================================================================================


def test_credit_journey_splits_a_share_over_its_touches() -> None:
    # a b a, shares a 0.6, b 0.4: raw a = 0.6/2 = 0.3 (twice), b = 0.4; Σ = 1.
    weights, fell_back = credit_journey(["a", "b", "a"], {"a": 0.6, "b": 0.4})
    assert weights == pytest.approx([0.3, 0.4, 0.3], abs=TOL)
    assert not fell_back
    # a a a b, shares a 1/4, b 1/2: raw a = 1/12 (x3), b = 1/2; Σ = 3/4 -> a 1/9 each, b 2/3.
    weights, _ = credit_journey(["a", "a", "a", "b"], {"a": 0.25, "b": 0.5})
    assert weights == pytest.approx([1 / 9, 1 / 9, 1 / 9, 2 / 3], abs=TOL)


def test_credit_journey_remove_direct_if_not_all() -> None:
    share = {"direct": 0.5, "a": 0.5}
    # direct a direct: direct touches get raw 0 -> a gets everything
    assert credit_journey(["direct", "a", "direct"], share, remove_direct_if_not_all=True) == ([0.0, 1.0, 0.0], False)
    # all direct: kept, direct's share split over its two touches
    assert credit_journey(["direct", "direct"], share, remove_direct_if_not_all=True) == ([0.5, 0.5], False)
    # option off: direct 0.25 each, a 0.5
    assert credit_journey(["direct", "a", "direct"], share)[0] == pytest.approx([0.25, 0.5, 0.25], abs=TOL)


def test_credit_journey_baseline_conversion_gets_no_weights() -> None:
    # every share of the journey 0 -> a baseline conversion: no weights (it was LINEAR 1/n each before)
    assert credit_journey(["a", "b", "b"], {"a": 0.0, "b": 0.0, "c": 1.0}) == ([], True)
    # a channel without a share counts as share 0
    assert credit_journey(["x", "y"], {"a": 1.0}) == ([], True)
    # remove_direct: direct a with a at share 0 -> Σ raw = 0 -> none, even though direct has a share
    assert credit_journey(["direct", "a"], {"direct": 1.0, "a": 0.0}, remove_direct_if_not_all=True) == ([], True)
    # a positive share whose multiplier is 0 (DATA_DRIVEN: φ > 0 in the journey, share 0 in the fit): none
    assert credit_journey(["a", "b"], {"a": 0.3, "b": 0.0}, scale={"a": 0.0, "b": 1.0}) == ([], True)


def test_credit_weights_sum_to_one() -> None:
    rng = random.Random(12)
    for _ in range(300):
        channels = [rng.choice(["a", "b", "c", "direct"]) for _ in range(rng.randint(1, 6))]
        share = {c: rng.choice([0.0, rng.random()]) for c in ["a", "b", "c", "direct"]}
        weights, baseline = credit_journey(channels, share, remove_direct_if_not_all=rng.random() < 0.5)
        if baseline:  # no weights: every channel of the journey has share 0 (or only direct, dropped)
            assert weights == []
            assert all(share[c] == 0.0 for c in channels if c != "direct" or all(x == "direct" for x in channels))
            continue
        assert sum(weights) == pytest.approx(1.0, abs=1e-12)
        assert all(0.0 <= w <= 1.0 for w in weights)


# ======================================================================================
# The pipeline (§1 -> §5)
# ======================================================================================


def test_pipeline_worked_example() -> None:
    touchpoints, conversions = pipeline_example()
    # Journeys (see pipeline_example): c1 a b (101), tails c, a, a.
    # Path table: (a, b): 1 conv, value 101; (c,): 1 null; (a,): 2 nulls.
    # MARKOV: START->a 3, START->c 1; a->b 1, a->NULL 2; b->CONV 1; c->NULL 1.
    #   P = 3/4 * 1/3 = 1/4; without a or b: 0 (effect 1); without c: 1/4 (effect 0). Shares 1/2, 1/2, 0.
    # c1: a and b get weight 1/2; 101 * 1/2 = 50.5 each: floors 50 + 50, the remaining unit goes to the
    #   later position on the tie of fractions: 50, 51.
    links, fit = markov_links(touchpoints, conversions, lookback_us=7 * DAY)
    assert fit["path_table"] == {("a", "b"): (1, 0, 101), ("c",): (0, 1, 0), ("a",): (0, 2, 0)}
    assert fit["p_conversion"] == pytest.approx(0.25, abs=TOL)
    assert fit["removal_effect"] == approx({"a": 1, "b": 1, "c": 0})
    assert fit["baseline_conversions"] == 0
    assert [(x["touchpoint_id"], x["position"], x["weight"], x["credited_value_micros"]) for x in links] == [
        ("t1", 1, 0.5, 50),
        ("t2", 2, 0.5, 51),
    ]
    assert {x["model"] for x in links} == {"MARKOV"}
    check_invariants(links, {c["conversion_id"]: c for c in conversions})

    # SHAPLEY ("rate"): players a, b, c (d is in no journey); only {a, b} has v = 1 (v({a}) = v({c}) = 0).
    #   n = 3: φ_a = φ_b = w(1) · 1 = 1!1!/3! = 1/6; φ_c = -w(2) · v(ab) = -1/3 (Σ = 0 = v(abc)).
    #   Shares 1/2, 1/2, 0: the same links.
    links, fit = shapley_links(touchpoints, conversions, lookback_us=7 * DAY)
    assert fit["shapley_value"] == approx({"a": F(1, 6), "b": F(1, 6), "c": F(-1, 3)})
    assert [(x["touchpoint_id"], x["credited_value_micros"], x["model"]) for x in links] == [
        ("t1", 50, "SHAPLEY"),
        ("t2", 51, "SHAPLEY"),
    ]


def test_pipeline_baseline_conversion_and_remove_direct() -> None:
    # u1: direct (day 0), a (day 1), conversion (day 2, value 10)   -> path a (remove_direct) / direct a
    # u2: b (day 0), conversion (day 1, value 3)                      -> path b
    # u3: b (day 0), no conversion                                    -> tail b
    touchpoints = [
        tp("t1", T0, "direct"),
        tp("t2", T0 + DAY, "a"),
        tp("t3", T0, "b", anon_id="u2"),
        tp("t4", T0, "b", anon_id="u3"),
    ]
    conversions = [conv("c1", T0 + 2 * DAY, 10), conv("c2", T0 + DAY, 3, anon_id="u2")]
    # remove_direct: table a (1, 0), b (1, 1). MARKOV: START->a 1, START->b 2, a->CONV 1, b->CONV 1,
    # b->NULL 1. P = 1/3 + 2/3 * 1/2 = 2/3. Without a: 1/3 (effect 1/2); without b: 1/3 (effect 1/2).
    # c1: direct raw 0, a raw 1/2 -> weights 0, 1; credited 0, 10.
    links, fit = data_driven_reference(
        touchpoints, conversions, model="MARKOV", lookback_us=30 * DAY, remove_direct_if_not_all=True
    )
    assert fit["removal_effect"] == approx({"a": F(1, 2), "b": F(1, 2)})
    by_touchpoint = {x["touchpoint_id"]: (x["weight"], x["credited_value_micros"]) for x in links}
    assert by_touchpoint == {"t1": (0.0, 0), "t2": (1.0, 10), "t3": (1.0, 3)}

    # SHAPLEY "rate" without the option: coalitions {direct, a} v = 1, {b} v = 1/2.
    #   φ_direct = φ_a = w(1) · 1 - w(1) · 1/2 = 1/6 - 1/12 = 1/12 (n = 3, w(1) = 1/6);
    #   φ_b = w(0) · 1/2 - w(2) · 1 = 1/6 - 1/3 = -1/6.  Σ = 0 = v({direct, a, b}).
    # c2 is all b, whose share is 0: a baseline conversion, no links (before: LINEAR, t3 weight 1).
    links, fit = data_driven_reference(touchpoints, conversions, model="SHAPLEY", lookback_us=30 * DAY)
    assert fit["shapley_value"] == approx({"direct": F(1, 12), "a": F(1, 12), "b": F(-1, 6)})
    assert fit["baseline_conversions"] == 1 and fit["uncredited"] == ["c2"]
    by_touchpoint = {x["touchpoint_id"]: (x["weight"], x["credited_value_micros"]) for x in links}
    assert by_touchpoint == {"t1": (0.5, 5), "t2": (0.5, 5)}


def test_pipeline_invariants_on_random_inputs() -> None:
    rng = random.Random(13)
    for case in range(40):
        touchpoints = [
            tp(f"t{i}", T0 + rng.randint(0, 20) * DAY, rng.choice(["a", "b", "c", "direct"]), f"u{rng.randint(1, 4)}")
            for i in range(rng.randint(0, 12))
        ]
        conversions = [
            conv(f"c{i}", T0 + rng.randint(0, 20) * DAY, rng.randint(0, 10**9), f"u{rng.randint(1, 4)}")
            for i in range(rng.randint(0, 5))
        ]
        options = {
            "lookback_us": rng.choice([3, 7, 30]) * DAY,
            "reset_after_conversion": rng.random() < 0.5,
            "transform": rng.choice(["exposure", "unique", "first", "frequency"]),
            "remove_direct_if_not_all": rng.random() < 0.5,
        }
        journeys = fitting_journeys(
            touchpoints,
            conversions,
            lookback_us=options["lookback_us"],
            reset_after_conversion=options["reset_after_conversion"],
        )
        converting = [j for j in journeys if j["converted"]]
        for model in ("MARKOV", "SHAPLEY"):
            links, fit = data_driven_reference(touchpoints, conversions, model=model, order=1 + case % 3, **options)
            check_invariants(links, {c["conversion_id"]: c for c in conversions})
            # every converting journey has links or is a baseline conversion of the model, never both
            credited = {x["conversion_id"] for x in links}
            assert credited.isdisjoint(fit["uncredited"])
            assert credited | set(fit["uncredited"]) == {j["conversion_id"] for j in converting}
            assert len(links) == sum(len(j["touchpoint_ids"]) for j in converting if j["conversion_id"] in credited)
            table = fit["path_table"]
            assert sum(row[0] for row in table.values()) == len(converting)
            assert sum(row[1] for row in table.values()) == len(journeys) - len(converting)


# ======================================================================================
# §6 DATA_DRIVEN decomposition
# ======================================================================================


def test_logistic_shapley_worked_example() -> None:
    # b = 0, β_a = ln(3)/2, β_b = ln 2, journey a a b (k_a = 2, k_b = 1), f(k) = k.
    # p(∅) = σ(0) = 1/2; p(a) = σ(ln 3) = 3/4; p(b) = σ(ln 2) = 2/3; p(ab) = σ(ln 6) = 6/7.
    # v(a) = 1/4, v(b) = 1/6, v(ab) = 6/7 - 1/2 = 5/14.
    # φ_a = 1/2 [1/4 + (5/14 - 1/6)] = 1/2 [21/84 + 16/84] = 37/168
    # φ_b = 1/2 [1/6 + (5/14 - 1/4)] = 1/2 [14/84 + 9/84] = 23/168.  Σ = 60/168 = 5/14 = p(x) - σ(b).
    coef = {"a": math.log(3) / 2, "b": math.log(2)}
    phi = logistic_shapley({"a": 2, "b": 1}, 0.0, coef)
    assert phi == approx({"a": F(37, 168), "b": F(23, 168)})
    # Saturating f with ρ = 1/2: f(2) = (1 - 1/4) / (1/2) = 3/2, f(1) = 1. β_a = (2/3) ln 3 gives
    # β_a f(2) = ln 3 again, so the same game and the same values.
    phi = logistic_shapley({"a": 2, "b": 1}, 0.0, {"a": 2 * math.log(3) / 3, "b": math.log(2)}, rho=0.5)
    assert phi == approx({"a": F(37, 168), "b": F(23, 168)})


def test_logistic_shapley_properties() -> None:
    rng = random.Random(14)
    channels = "abcdefgh"
    for case in range(150):
        d = 1 + case % 6 if case else 8
        counts = {c: rng.randint(1, 4) for c in rng.sample(channels, d)}
        counts["unused"] = 0  # a zero count is not a player
        coef = {c: rng.uniform(-2, 2) for c in channels}
        intercept = rng.uniform(-3, 1)
        rho = rng.choice([None, rng.uniform(0.05, 0.95)])
        phi = logistic_shapley(counts, intercept, coef, rho=rho)
        assert sorted(phi) == sorted(c for c, k in counts.items() if k > 0)
        # efficiency
        p_x = logistic_probability(counts, intercept, coef, rho=rho)
        assert sum(phi.values()) == pytest.approx(p_x - sigmoid(intercept), abs=1e-12)
        # one channel: φ = p(x) - σ(b)
        (only, k), *_ = [(c, k) for c, k in counts.items() if k > 0]
        single = logistic_shapley({only: k}, intercept, coef, rho=rho)
        assert single[only] == pytest.approx(
            logistic_probability({only: k}, intercept, coef, rho=rho) - sigmoid(intercept), abs=1e-12
        )


def test_logistic_shapley_symmetry_and_null_player() -> None:
    # a and b have the same β f(k): same φ. c has β = 0: φ_c = 0 (p never depends on it).
    phi = logistic_shapley({"a": 2, "b": 1, "c": 3}, -1.0, {"a": 0.5, "b": 1.0, "c": 0.0})
    assert phi["a"] == pytest.approx(phi["b"], abs=TOL)
    assert phi["c"] == pytest.approx(0.0, abs=TOL)


def test_logistic_shapley_by_subsets() -> None:
    # The orderings average equals the §4 subset sum over D.
    counts = {"a": 1, "b": 3, "c": 2, "d": 1}
    coef = {"a": 0.7, "b": -0.4, "c": 1.3, "d": 0.2}
    rho = 0.6
    players = sorted(counts)
    n = len(players)
    p_empty = sigmoid(-0.5)

    def v(s: frozenset) -> float:
        return logistic_probability({c: counts[c] for c in s}, -0.5, coef, rho=rho) - p_empty

    expected = {}
    for c in players:
        others = [x for x in players if x != c]
        expected[c] = sum(
            math.factorial(size)
            * math.factorial(n - size - 1)
            / math.factorial(n)
            * (v(frozenset(s) | {c}) - v(frozenset(s)))
            for size in range(n)
            for s in itertools.combinations(others, size)
        )
    assert logistic_shapley(counts, -0.5, coef, rho=rho) == approx(expected)
