"""DATA_DRIVEN fitted on whole journeys, credited within the lookback (``fit_on``, docs/data_driven.md §1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

import optiq_engine as oq
from optiq_engine.errors import ConfigError, OptiqWarning
from optiq_engine.partial import path_tables
from optiq_engine.paths.partial import REFERENCE_KEY, WINDOWS_KEY
from optiq_engine.simulate import worlds

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _touchpoints(rows: list[tuple[str, str, int, str]]) -> pl.DataFrame:
    """Touchpoints from ``(id, anon id, days before T0, channel)``."""
    return pl.DataFrame(
        {
            "touchpoint_id": [r[0] for r in rows],
            "anon_id": [r[1] for r in rows],
            "occurred_at": [T0 - timedelta(days=r[2]) for r in rows],
            "channel": [r[3] for r in rows],
        }
    )


def _frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    """u0: display 40 days and email 5 days before its conversion; u1: display 60 and email 10 days before
    the end (no conversion); u2: only display, 45 days before its conversion (nothing in its window);
    u3: converts 10 days before the end after email, then again after display (a repeat conversion)."""
    rows = [("t0", "u0", 40, "display"), ("t1", "u0", 5, "email"), ("t2", "u1", 60, "display")]
    rows += [("t3", "u1", 10, "email"), ("t4", "u2", 45, "display"), ("t5", "u3", 20, "email")]
    rows += [("t6", "u3", 5, "display")]
    tp = _touchpoints(rows)
    cv = pl.DataFrame(
        {
            "conversion_id": ["c0", "c2", "c3a", "c3b"],
            "anon_id": ["u0", "u2", "u3", "u3"],
            "occurred_at": [T0, T0, T0 - timedelta(days=10), T0],
            "value_micros": [5, 7, 3, 4],
        }
    )
    return tp, cv


def _paths(table) -> dict[tuple[str, ...], tuple[float, float]]:
    """Conversions and nulls per channel sequence (a timed table's rows also differ by their gaps)."""
    out: dict[tuple[str, ...], tuple[float, float]] = {}
    for r in table.to_frame().iter_rows(named=True):
        conv, null = out.get(tuple(r["path"]), (0.0, 0.0))
        out[tuple(r["path"])] = (conv + r["conversions"], null + r["nulls"])
    return out


def test_fitted_on_first_journeys_whole_or_windowed_and_credited_in_the_window() -> None:
    tp, cv = _frames()
    whole = oq.attribute(tp, cv, models=[oq.models.DataDriven(fit_on="journeys")])
    window = oq.attribute(tp, cv, models=[oq.models.DataDriven(fit_on="windows")])
    # first journeys: u0's whole path, u1's whole tail, u2's conversion (whole: its touch is older than the
    # lookback) and u3's first conversion; not u3's repeat conversion, whose path keeps a row (to be
    # credited) with no count. The windows: no u2 (no path), u1's tail cut to its email
    assert _paths(whole.fitted["DATA_DRIVEN"].paths) == {
        ("display", "email"): (1.0, 1.0),
        ("email",): (1.0, 0.0),
        ("display",): (1.0, 0.0),
    }
    assert _paths(window.fitted["DATA_DRIVEN"].paths) == {("email",): (2.0, 1.0), ("display",): (0.0, 0.0)}
    assert (whole.fitted["DATA_DRIVEN"].history, window.fitted["DATA_DRIVEN"].history) == ("journeys", "windows")
    # the links: only touchpoints within the lookback, for either fit; the repeat conversion is credited
    for result in (whole, window):
        assert set(result.links_for("DATA_DRIVEN")["touchpoint_id"]) <= {"t1", "t5", "t6"}
    # path_tables (what Spark partitions add up) reads the same journeys as the fits; auto has both
    tables = path_tables(tp, cv, models=[oq.models.DataDriven()])
    assert _paths(tables["DATA_DRIVEN"]) == _paths(whole.fitted["DATA_DRIVEN"].paths)
    assert _paths(tables[WINDOWS_KEY.format("DATA_DRIVEN")]) == _paths(window.fitted["DATA_DRIVEN"].paths)
    # the choice compares the journeys both hold: the whole table without u2's conversion
    assert _paths(tables[REFERENCE_KEY.format("DATA_DRIVEN")])[("display",)] == (0.0, 0.0)
    auto = oq.attribute(tp, cv, models=[oq.models.DataDriven()]).fitted["DATA_DRIVEN"]
    assert auto.history_loglik is not None and auto.history == max(auto.history_loglik, key=auto.history_loglik.get)
    # a table given to fit alone: its history is not known
    assert oq.models.DataDriven().fit(tables["DATA_DRIVEN"]).history is None
    # no conversion fitted on (u1's tail only): no mechanism to report (helper's trial: it said "per-touch")
    only_tail = oq.attribute(tp.filter(pl.col("anon_id") == "u1"), cv.clear(), models=["DATA_DRIVEN"])
    assert only_tail.fitted["DATA_DRIVEN"].mechanism == "none: no conversion to fit on"


def test_fit_on_is_checked() -> None:
    with pytest.raises(ConfigError, match="fit_on must be one of 'auto', 'journeys', 'windows'"):
        oq.models.DataDriven(fit_on="window")


def _distance(result, truth: pl.DataFrame) -> float:
    shares = result.shares().select(pl.col("channel").cast(pl.String), "share")
    joined = truth.join(shares, on="channel", how="left").fill_null(0.0)
    return 0.5 * float((joined["share"] - joined["true_share"]).abs().sum())


def test_auto_keeps_the_history_that_holds_the_effects() -> None:
    """worlds' end_additive (journeys up to 90 days, effects that never expire; written without reading the
    models): the 30-day windows read the cut early touches into the late channels (direct), the whole
    journeys do not (20k users: 0.043 against 0.159), and auto keeps the whole journeys. The project's own
    simulator (docs/synthetic.md: the stock remembers 30 days) is the reverse: auto keeps the windows."""
    world = worlds.generate("end_additive", n_users=20_000, seed=1)
    fits = {
        fit_on: oq.attribute(world.touchpoints, world.conversions, models=[oq.models.DataDriven(fit_on=fit_on)])
        for fit_on in ("auto", "journeys", "windows")
    }
    whole, cut = _distance(fits["journeys"], world.truth), _distance(fits["windows"], world.truth)
    assert whole < 0.08 and cut > whole + 0.06, (whole, cut)
    assert fits["auto"].fitted["DATA_DRIVEN"].history == "journeys"
    data = oq.synthetic.generate(n_users=20_000, seed=0)
    assert (
        oq.attribute(data.touchpoints, data.conversions, models=["DATA_DRIVEN"]).fitted["DATA_DRIVEN"].history
        == "windows"
    )


def test_credit_of_channels_seen_only_before_the_lookback_is_reported() -> None:
    """A channel seen 60-90 days before half the conversions, and effective: fitted on whole journeys its
    credit is in the fit's share but no link can carry it; the run says how much (helper's trial, t19)."""
    n = 400
    rows, conversions = [], []
    for u in range(n):
        early = u % 2 == 0
        if early:
            rows.append((f"a{u}", f"u{u}", 70 + u % 20, "tv"))
        rows.append((f"b{u}", f"u{u}", 5, "email" if u % 3 else "direct"))
        if early or u % 10 == 0:
            conversions.append((f"c{u}", f"u{u}"))
    tp = _touchpoints(rows)
    cv = pl.DataFrame(
        {
            "conversion_id": [c[0] for c in conversions],
            "anon_id": [c[1] for c in conversions],
            "occurred_at": [T0] * len(conversions),
            "value_micros": [1] * len(conversions),
        }
    )
    with pytest.warns(OptiqWarning, match="belongs to channels seen only before the lookback"):
        result = oq.attribute(tp, cv, models=[oq.models.DataDriven(fit_on="journeys")])
    fit = result.fitted["DATA_DRIVEN"]
    tv_share = fit.channel_credit.filter(pl.col("channel") == "tv")["share"].item()
    assert tv_share > 0.2 and fit.credit_before_lookback > 0.2
    assert "tv" not in set(result.links_for("DATA_DRIVEN")["channel"].cast(pl.String))
    assert "older than the lookback (not credited)" in fit._repr_html_()
