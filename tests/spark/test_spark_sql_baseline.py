"""The Spark SQL window-function baseline of benchmarks/spark_scaleout.py computes attribute()'s links.

``window_sql`` (all six heuristic models, default config) on a local Spark against ``oq.attribute`` on
the same frames: same rows, ids, model names, positions, counts, channels and credited micros exactly;
weights bit-identical except TIME_DECAY's, within 1e-12 (Spark's ``POW`` is Java's fdlibm ``pow``, the
engine's ``2.0 ** x`` the C library's ``exp2``: a few differ in the last bit). One local[2] session for the
module; without pyspark or Java the tests skip, unless OPTIQ_REQUIRE_SPARK=1 (CI), which fails them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal, assert_series_equal

import optiq_engine as oq
from benchmarks.spark_scaleout import SQL_MODELS, window_sql
from optiq_engine.spark.attribution import LINK_COLUMNS
from tests.support.spark import local_session

pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
SIX = list(oq.models.HEURISTIC_MODELS)
KEY = ["model", "conversion_id", "touchpoint_id"]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TS = pl.Datetime("us", "UTC")
TP_SCHEMA = {
    "touchpoint_id": pl.String,
    "anon_id": pl.String,
    "occurred_at": TS,
    "channel": pl.String,
    "organization_id": pl.String,
    "site_id": pl.String,
}
CV_SCHEMA = {
    "conversion_id": pl.String,
    "anon_id": pl.String,
    "occurred_at": TS,
    "value_micros": pl.Int64,
    "organization_id": pl.String,
    "site_id": pl.String,
}


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    yield from local_session()


def sql_links(spark, tp: pl.DataFrame, cv: pl.DataFrame, models: list[str]) -> pl.DataFrame:
    """``window_sql(models, AttributionConfig())`` over ``tp`` / ``cv`` as the views ``tp`` and ``cv``."""
    spark.createDataFrame(tp.to_arrow()).createOrReplaceTempView("tp")
    spark.createDataFrame(cv.to_arrow()).createOrReplaceTempView("cv")
    out = pl.from_arrow(spark.sql(window_sql(models, oq.AttributionConfig())).toArrow())
    assert isinstance(out, pl.DataFrame)
    return out


def assert_same_links(expected: pl.DataFrame, got: pl.DataFrame) -> None:
    """Same rows and columns; everything but the weight exactly; weights exactly but TIME_DECAY's (1e-12)."""
    assert got.columns == list(LINK_COLUMNS)
    a = expected.with_columns(pl.col(pl.Enum, pl.Categorical).cast(pl.String)).select(LINK_COLUMNS).sort(KEY)
    b = got.sort(KEY)
    assert a.height == b.height > 0
    assert_frame_equal(a.drop("weight"), b.drop("weight"), check_exact=True)
    td = pl.col("model") == "TIME_DECAY"
    assert_series_equal(a.filter(~td)["weight"], b.filter(~td)["weight"], check_exact=True)
    np.testing.assert_allclose(b.filter(td)["weight"].to_numpy(), a.filter(td)["weight"].to_numpy(), rtol=0, atol=1e-12)


def test_synthetic_users_all_six_models(spark) -> None:
    d = oq.synthetic.generate(n_users=2_000, seed=3)
    tp = d.touchpoints.with_columns(pl.col(pl.Enum).cast(pl.String))
    cv = d.conversions
    expected = oq.attribute(tp, cv, models=SIX).links
    got = sql_links(spark, tp, cv, SIX)
    assert set(got["model"].unique()) == set(SIX)
    assert_same_links(expected, got)


def _hand_made() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Ties, window edges, a single touchpoint, simultaneous conversions, all-direct, big / zero / null values."""
    h, d = timedelta(hours=1), timedelta(days=1)
    tp_rows = [
        # ties: three touchpoints at one instant (ids out of input order), one exactly at T - lookback
        # (excluded), one exactly at T (included), one after T (no conversion follows: no link)
        ("ties_edge", "u_ties", T0 - timedelta(days=30), "email", "o1", "s1"),
        ("ties_z", "u_ties", T0 - 3 * d, "google_ads", "o1", "s1"),
        ("ties_c", "u_ties", T0 - d, "meta_ads", "o1", "s1"),
        ("ties_a", "u_ties", T0 - d, "email", "o1", "s1"),
        ("ties_b", "u_ties", T0 - d, "display", "o1", "s1"),
        ("ties_d", "u_ties", T0 - h, "direct", "o1", "s1"),
        ("ties_at", "u_ties", T0, "direct", "o1", "s1"),
        ("ties_after", "u_ties", T0 + h, "email", "o1", "s1"),
        # a single touchpoint
        ("single", "u_single", T0 - 5 * d, "referral", "o1", "s1"),
        # two conversions at the same instant (the second has an empty window); one touchpoint exactly at T
        # belongs to the first; a later conversion gets only what came after
        ("same_1", "u_same", T0 - 2 * d, "google_ads", "o1", "s1"),
        ("same_2", "u_same", T0 - d, "direct", "o1", "s1"),
        ("same_at", "u_same", T0, "email", "o1", "s1"),
        ("same_3", "u_same", T0 + d, "display", "o1", "s1"),
        # an all-direct journey
        *((f"direct_{i}", "u_direct", T0 - (3 - i) * d, "direct", "o1", "s1") for i in range(3)),
        # a large value over seven touchpoints spread in time, the last one direct
        *(
            (f"big_{i}", "u_big", T0 - timedelta(hours=97 * (7 - i) - 13 * i), ch, "o1", "s1")
            for i, ch in enumerate(["email", "google_ads", "display", "email", "meta_ads", "referral", "direct"])
        ),
        # value 0 and a null value
        *((f"zero_{i}", "u_zero", T0 - (4 - i) * d, "email", "o1", "s1") for i in range(3)),
        *((f"null_{i}", "u_null", T0 - (2 - i) * d, "display", "o1", "s1") for i in range(2)),
        # the same anon id under a null organization / site and under another site: three groups
        ("key_null_1", "u_key", T0 - 2 * d, "email", None, None),
        ("key_null_2", "u_key", T0 - d, "direct", None, None),
        ("key_s2", "u_key", T0 - 3 * d, "google_ads", "o1", "s2"),
        ("key_o2", "u_key", T0 - 4 * d, "meta_ads", None, "s1"),
        # only touchpoints outside the window
        ("old", "u_old", T0 - 40 * d, "email", "o1", "s1"),
    ]
    cv_rows = [
        ("c_ties", "u_ties", T0, 1_000_003, "o1", "s1"),
        ("c_single", "u_single", T0, 5, "o1", "s1"),
        ("c_same_b", "u_same", T0, 700, "o1", "s1"),
        ("c_same_a", "u_same", T0, 1_001, "o1", "s1"),
        ("c_same_later", "u_same", T0 + 2 * d, 3_333, "o1", "s1"),
        ("c_direct", "u_direct", T0, 100, "o1", "s1"),
        ("c_big", "u_big", T0, 10**12 + 7, "o1", "s1"),
        ("c_zero", "u_zero", T0, 0, "o1", "s1"),
        ("c_null", "u_null", T0, None, "o1", "s1"),
        ("c_key_null", "u_key", T0, 999_999, None, None),
        ("c_key_s2", "u_key", T0, 10, "o1", "s2"),
        ("c_key_o2", "u_key", T0, 7, None, "s1"),
        ("c_old", "u_old", T0, 50, "o1", "s1"),
        ("c_nobody", "u_nobody", T0, 50, "o1", "s1"),
    ]
    tp = pl.DataFrame(tp_rows, schema=TP_SCHEMA, orient="row")
    cv = pl.DataFrame(cv_rows, schema=CV_SCHEMA, orient="row")
    return tp, cv


def test_hand_made_edge_cases(spark) -> None:
    tp, cv = _hand_made()
    result = oq.attribute(tp, cv, models=SIX)
    got = sql_links(spark, tp, cv, SIX)
    assert_same_links(result.links, got)
    # the data exercise what they should
    linear = got.filter(pl.col("model") == "LINEAR")
    ties = linear.filter(pl.col("conversion_id") == "c_ties").sort("position")
    assert ties["touchpoint_id"].to_list() == ["ties_z", "ties_a", "ties_b", "ties_c", "ties_d", "ties_at"]
    assert set(linear["conversion_id"]) == {
        "c_ties",
        "c_single",
        "c_same_a",
        "c_same_later",
        "c_direct",
        "c_big",
        "c_zero",
        "c_null",
        "c_key_null",
        "c_key_s2",
        "c_key_o2",
    }
    assert set(result.unattributed["conversion_id"]) == {"c_same_b", "c_old", "c_nobody"}
    sums = got.group_by("model", "conversion_id").agg(pl.col("credited_value_micros").sum())
    assert sums.filter(pl.col("conversion_id") == "c_big")["credited_value_micros"].to_list() == [10**12 + 7] * 6
    lnd = got.filter((pl.col("model") == "LAST_NON_DIRECT") & (pl.col("weight") == 1.0))
    assert dict(zip(lnd["conversion_id"], lnd["touchpoint_id"], strict=True))["c_direct"] == "direct_2"
    assert dict(zip(lnd["conversion_id"], lnd["touchpoint_id"], strict=True))["c_big"] == "big_5"


@pytest.mark.parametrize("models", [["LINEAR", "LAST_TOUCH"], ["TIME_DECAY", "FIRST_TOUCH"], ["LAST_NON_DIRECT"]])
def test_subsets_of_models(spark, models: list[str]) -> None:
    tp, cv = _hand_made()
    assert_same_links(oq.attribute(tp, cv, models=models).links, sql_links(spark, tp, cv, models))


def test_unknown_or_repeated_models_are_refused() -> None:
    assert list(SQL_MODELS) == SIX
    for models in ([], ["MARKOV"], ["LINEAR", "LINEAR"]):
        with pytest.raises(ValueError, match="distinct names"):
            window_sql(models, oq.AttributionConfig())
