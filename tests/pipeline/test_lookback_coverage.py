"""``result.lookback_coverage`` (docs/contract.md §2.1) against its reference, and the warning of data-driven runs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from hypothesis import given, settings

import optiq_engine as oq
import optiq_engine.matching as matching
from tests.reference.lookback_coverage import lookback_coverage
from tests.support.adapters import conversions_frame, touchpoints_frame
from tests.support.strategies import Case, cases


def _check(case: Case) -> None:
    result = oq.attribute(
        touchpoints_frame(case.touchpoints, case.group_by),
        conversions_frame(case.conversions, case.group_by),
        models=["LINEAR"],
        lookback=timedelta(microseconds=case.lookback_us),
        reset_after_conversion=case.reset_after_conversion,
    )
    got = result.lookback_coverage
    n, cut, left_out, q95 = lookback_coverage(
        case.touchpoints,
        case.conversions,
        lookback_us=case.lookback_us,
        reset=case.reset_after_conversion,
        group_by=case.group_by,
    )
    assert (got.conversions, got.cut, got.touchpoints_left_out) == (n, cut, left_out)
    want = None if q95 is None else timedelta(microseconds=q95)
    assert got.lookback_95 is None and want is None or abs(got.lookback_95 - want) <= timedelta(microseconds=1)


@given(cases())
def test_lookback_coverage_matches_reference(case: Case) -> None:
    _check(case)


@given(cases(max_touchpoints=60, max_conversions=4))
@settings(max_examples=30)
def test_lookback_coverage_with_hash_collisions(case: Case) -> None:
    """Group hashes cut to 2 bits: the exact-code fallback must give the same coverage."""
    old = matching._HASH_MASK
    matching._HASH_MASK = np.uint64(3)
    try:
        _check(case)
    finally:
        matching._HASH_MASK = old


def _frames(days_before: list[int]) -> tuple[pl.DataFrame, pl.DataFrame]:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    tp = pl.DataFrame(
        {
            "touchpoint_id": [f"t{i}" for i in range(len(days_before))],
            "anon_id": [f"u{i % 2}" for i in range(len(days_before))],
            "occurred_at": [t0 - timedelta(days=d) for d in days_before],
            "channel": ["email"] * len(days_before),
        }
    )
    cv = pl.DataFrame(
        {"conversion_id": ["c0", "c1"], "anon_id": ["u0", "u1"], "occurred_at": [t0, t0], "value_micros": [1, 1]}
    )
    return tp, cv


def test_worked_example_and_warning(caplog) -> None:
    # u0: touches 40 and 10 days before its conversion (cut at 30 days); u1: 5 and 1 day before (whole)
    tp, cv = _frames([40, 5, 10, 1])
    with caplog.at_level(logging.WARNING, logger="optiq_engine.pipeline"):
        result = oq.attribute(tp, cv, models=["LINEAR", "MARKOV", "DATA_DRIVEN"])
    got = result.lookback_coverage
    assert (got.conversions, got.cut, got.touchpoints_left_out, got.cut_fraction) == (2, 1, 1, 0.5)
    assert "the lookback of 30 days cuts the journeys of 1 of 2 conversions (50%" in caplog.text
    assert "Every model credits the window only, and MARKOV is fitted on it" in caplog.text
    assert "(50%: 1 touchpoint of their journeys is older)" in caplog.text
    one_day = oq.attribute(tp, cv, models=["LINEAR"], lookback=timedelta(days=1)).lookback_coverage.message()
    assert one_day.startswith("the lookback of 1 day cuts")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="optiq_engine.pipeline"):
        whole = oq.attribute(tp, cv, models=["LINEAR", "MARKOV"], lookback=timedelta(days=41))
        heuristic_only = oq.attribute(tp, cv, models=["LINEAR"])
        journeys = oq.attribute(tp, cv, models=["LINEAR", "DATA_DRIVEN"])  # fitted on whole journeys
    assert whole.lookback_coverage.cut == 0 and heuristic_only.lookback_coverage.cut == 1
    assert journeys.lookback_coverage.cut == 1
    assert "lookback of" not in caplog.text  # no warning: nothing cut, or no model fitted on the windows


def test_lookback_95_holds_95_percent_and_no_more_than_needed() -> None:
    """20 journeys spanning 1..20 days: 19 days (and 1 µs) hold 19 of 20 whole, 95 %; the interpolated
    percentile (19.05 days) was needlessly long, and on other data too short to hold 95 %."""
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    n = 20
    tp = pl.DataFrame(
        {
            "touchpoint_id": [f"t{i}" for i in range(n)],
            "anon_id": [f"u{i}" for i in range(n)],
            "occurred_at": [t0 - timedelta(days=i + 1) for i in range(n)],
            "channel": ["email"] * n,
        }
    )
    cv = pl.DataFrame(
        {
            "conversion_id": [f"c{i}" for i in range(n)],
            "anon_id": [f"u{i}" for i in range(n)],
            "occurred_at": [t0] * n,
            "value_micros": [1] * n,
        }
    )
    got = oq.attribute(tp, cv, models=["LINEAR"], lookback=timedelta(days=2)).lookback_coverage
    assert got.lookback_95 == timedelta(days=19, microseconds=1)
    again = oq.attribute(tp, cv, models=["LINEAR"], lookback=got.lookback_95).lookback_coverage
    assert again.cut_fraction <= 0.05
