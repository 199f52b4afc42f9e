"""DATA_DRIVEN fitted on whole journeys, credited within the lookback (``fit_on``, docs/data_driven.md §1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

import optiq_engine as oq
from optiq_engine.errors import ConfigError
from optiq_engine.partial import path_tables
from optiq_engine.simulate import worlds

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    """u0: display 40 days and email 5 days before its conversion; u1: display 50 days before its last touch
    (email, no conversion); u2: only display, 45 days before its conversion."""
    rows = [("t0", "u0", 40, "display"), ("t1", "u0", 5, "email"), ("t2", "u1", 60, "display")]
    rows += [("t3", "u1", 10, "email"), ("t4", "u2", 45, "display")]
    tp = pl.DataFrame(
        {
            "touchpoint_id": [r[0] for r in rows],
            "anon_id": [r[1] for r in rows],
            "occurred_at": [T0 - timedelta(days=r[2]) for r in rows],
            "channel": [r[3] for r in rows],
        }
    )
    cv = pl.DataFrame(
        {"conversion_id": ["c0", "c2"], "anon_id": ["u0", "u2"], "occurred_at": [T0, T0], "value_micros": [5, 7]}
    )
    return tp, cv


def _paths(table) -> dict[tuple[str, ...], tuple[float, float]]:
    return {tuple(r["path"]): (r["conversions"], r["nulls"]) for r in table.to_frame().iter_rows(named=True)}


def test_fitted_on_whole_journeys_and_credited_in_the_window() -> None:
    tp, cv = _frames()
    whole = oq.attribute(tp, cv, models=[oq.models.DataDriven(bootstrap=0)])
    window = oq.attribute(tp, cv, models=[oq.models.DataDriven(fit_on="windows")])
    # whole journeys: the conversion of u2 (no touchpoint in its window) is a converting journey of the fit
    assert _paths(whole.fitted["DATA_DRIVEN"].paths) == {
        ("display", "email"): (1.0, 1.0),
        ("display",): (1.0, 0.0),
    }
    assert _paths(window.fitted["DATA_DRIVEN"].paths) == {("email",): (1.0, 1.0)}
    # the links: only touchpoints within the lookback, for either fit
    for result in (whole, window):
        assert set(result.links_for("DATA_DRIVEN")["touchpoint_id"]) <= {"t1"}
    # path_tables (what Spark partitions add up) reads the same journeys as the fit
    tables = path_tables(tp, cv, models=[oq.models.DataDriven(bootstrap=0)])
    assert _paths(tables["DATA_DRIVEN"]) == _paths(whole.fitted["DATA_DRIVEN"].paths)


def test_fit_on_is_checked() -> None:
    with pytest.raises(ConfigError, match="fit_on must be 'journeys' or 'windows'"):
        oq.models.DataDriven(fit_on="window")


def _distance(result, truth: pl.DataFrame) -> float:
    shares = result.shares().select(pl.col("channel").cast(pl.String), "share")
    joined = truth.join(shares, on="channel", how="left").fill_null(0.0)
    return 0.5 * float((joined["share"] - joined["true_share"]).abs().sum())


def test_whole_journeys_recover_a_world_whose_journeys_the_lookback_cuts() -> None:
    """worlds' end_additive (journeys up to 90 days, one decision at the end; written without reading the
    models): the 30-day windows read the cut early touches into the late channels (direct), the whole
    journeys do not. 20k users: 0.043 against 0.159."""
    world = worlds.generate("end_additive", n_users=20_000, seed=1)
    whole = _distance(oq.attribute(world.touchpoints, world.conversions, models=[oq.models.DataDriven()]), world.truth)
    cut = _distance(
        oq.attribute(world.touchpoints, world.conversions, models=[oq.models.DataDriven(fit_on="windows")]),
        world.truth,
    )
    assert whole < 0.08 and cut > whole + 0.06, (whole, cut)
