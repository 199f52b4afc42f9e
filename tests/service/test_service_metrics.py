"""Metrics over a real Postgres: every grain against a Polars recomputation, a hand-computed worked example,
division by zero, currencies, the previous-period comparison and tenant isolation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import Connection, create_engine, pool, text

from optiq_engine.errors import ConfigError
from optiq_engine.io import db, schema
from optiq_engine.service.errors import CurrencyError
from optiq_engine.service.metrics import (
    METRICS,
    CurrencyConversion,
    MetricsQuery,
    key_column,
    read_credit,
    read_metrics,
)
from tests.support import service_data as sd
from tests.support.pg import fresh_database

pytestmark = pytest.mark.postgres

START, END = date(2024, 3, 8), date(2024, 3, 14)
PREV_START, PREV_END = date(2024, 3, 1), date(2024, 3, 7)


def _worked_example() -> dict[str, list[dict]]:
    """orgW: one USD ad; day 1 spends 10 USD for 50 clicks, day 2 is dark; three conversions."""
    org, d1, d2 = "orgW", date(2024, 3, 8), date(2024, 3, 9)
    t1 = datetime(2024, 3, 8, 12, tzinfo=UTC)
    metric = {"organizationId": org}
    rows: dict[str, list[dict]] = {
        "Organization": [{"id": org, "name": "Worked", "slug": org}],
        "AdAccount": [
            {"id": "accW", "organizationId": org, "platformId": "plt_g", "externalId": "w", "currency": "USD"}
        ],
        "Campaign": [{"id": "cmpW", "organizationId": org, "adAccountId": "accW", "externalId": "w", "name": "W"}],
        "Ad": [{"id": "adW", "organizationId": org, "campaignId": "cmpW", "externalId": "w", "name": "W ad"}],
        "TrackingSite": [
            {"id": "siteW", "organizationId": org, "name": "w", "domain": "w.example", "publicKey": "pk_w"}
        ],
    }
    for table, col, scope in (
        ("DailyAdMetric", "adId", "adW"),
        ("DailyCampaignMetric", "campaignId", "cmpW"),
        ("DailyAdAccountMetric", "adAccountId", "accW"),
    ):
        rows[table] = [
            {
                **metric,
                "id": f"{table}1",
                col: scope,
                "date": d1,
                "impressions": 1000,
                "clicks": 50,
                "spendMicros": 10_000_000,
            },
            {**metric, "id": f"{table}2", col: scope, "date": d2, "impressions": 0, "clicks": 0, "spendMicros": 0},
        ]
    events, touches, links = [], [], []
    for n, (at, value, weight) in enumerate(
        [(t1, 30_000_000, 1.0), (t1, None, 1.0), (t1 + timedelta(days=1), 8_000_000, 0.5)]
    ):
        events.append(
            {
                "id": f"w_cv{n}",
                "siteId": "siteW",
                "eventId": f"w{n}",
                "type": "CONVERSION",
                "occurredAt": at,
                "anonId": f"w{n}",
                "valueMicros": value,
            }
        )
        touches.append(
            {
                "id": f"w_tp{n}",
                "siteId": "siteW",
                "anonId": f"w{n}",
                "occurredAt": at - timedelta(hours=1),
                "adId": "adW",
                "gclid": "g",
            }
        )
        links.append(
            {
                "id": f"w_l{n}",
                "conversionId": f"w_cv{n}",
                "touchPointId": f"w_tp{n}",
                "model": "LAST_TOUCH",
                "weight": weight,
                "position": 1,
                "touchPointCount": 1,
            }
        )
    touches.append(
        {"id": "w_tp_organic", "siteId": "siteW", "anonId": "w2", "occurredAt": t1, "utmSource": "newsletter"}
    )
    links.append(
        {
            "id": "w_l_org",
            "conversionId": "w_cv2",
            "touchPointId": "w_tp_organic",
            "model": "LAST_TOUCH",
            "weight": 0.5,
            "position": 1,
            "touchPointCount": 2,
        }
    )
    rows |= {"TrackingEvent": events, "TouchPoint": touches, "AttributionLink": links}
    return rows


@pytest.fixture(scope="module")
def dataset(postgres_url: str) -> Iterator[tuple[sd.Dataset, str]]:
    ds = sd.build()
    with fresh_database(postgres_url, upgraded=True) as url:
        sd.insert(url, ds)
        engine = create_engine(db.normalise_url(url), poolclass=pool.NullPool)
        with engine.begin() as conn:
            for table in schema.TABLE_NAMES:
                for row in _worked_example().get(table, []) + sd.no_campaign_rows().get(table, []):
                    conn.execute(schema.metadata.tables[table].insert(), row)
        engine.dispose()
        yield ds, url


@pytest.fixture()
def conn(dataset) -> Iterator[Connection]:
    engine = create_engine(db.normalise_url(dataset[1]), poolclass=pool.NullPool)
    with engine.connect() as connection:
        yield connection
    engine.dispose()


def _compare(got: pl.DataFrame, expected: pl.DataFrame, grain: str) -> None:
    cols = list(METRICS)
    assert_frame_equal(got.rename({key_column(grain): "key"}).select("key", *cols), expected.select("key", *cols))


@pytest.mark.parametrize("model", ["LAST_TOUCH", "LINEAR"])
@pytest.mark.parametrize("grain", ["ad", "campaign", "ad_account", "channel"])
def test_each_grain_equals_the_polars_recomputation(dataset, conn, grain: str, model: str) -> None:
    ds, _ = dataset
    query = MetricsQuery("orgA", START, END, model=model, grain=grain, compare=False)  # type: ignore[arg-type]
    got = read_metrics(query, conn)
    expected = sd.reference(ds, "orgA", start=START, end=END, model=model, grain=grain, level=query.spend_level)
    assert got.height >= 3
    _compare(got, expected, grain)
    if grain != "channel":  # the row of the credit without a key of the grain (last) has no currency
        keyed = got.filter(pl.col(key_column(grain)).is_not_null())
        assert keyed["currency"].null_count() == 0 and set(keyed["currency"]) <= {"USD", "EUR"}
        assert got.height - keyed.height == (grain != "ad") and got[key_column(grain)].is_null().to_list()[-1] == (
            grain != "ad"
        )


def test_a_finer_filter_reads_the_finer_spend_table(dataset, conn) -> None:
    ds, _ = dataset
    query = MetricsQuery("orgA", START, END, grain="ad_account", campaign_id="accA1_c0", compare=False)
    assert query.spend_level == 2
    got = read_metrics(query, conn)
    camp = read_metrics(MetricsQuery("orgA", START, END, grain="campaign", compare=False), conn)
    row = camp.filter(pl.col("campaign_id") == "accA1_c0")
    assert got["ad_account_id"].to_list() == ["accA1"]
    for col in ("spend_micros", "clicks", "conversions", "revenue_micros"):
        assert got[col].to_list() == row[col].to_list()


def test_daily_rows_equal_the_recomputation_per_day(dataset, conn) -> None:
    ds, _ = dataset
    query = MetricsQuery("orgA", START, END, grain="campaign", daily=True, compare=False)
    got = read_metrics(query, conn)
    assert got["date"].min() >= START and got["date"].max() <= END
    for day in (START, date(2024, 3, 10), END):
        expected = sd.reference(ds, "orgA", start=day, end=day, model="LAST_TOUCH", grain="campaign", level=2)
        _compare(got.filter(pl.col("date") == day).drop("date"), expected, "campaign")


def test_previous_period_and_change(dataset, conn) -> None:
    ds, _ = dataset
    got = read_metrics(MetricsQuery("orgA", START, END, grain="ad_account"), conn)
    prev = sd.reference(ds, "orgA", start=PREV_START, end=PREV_END, model="LAST_TOUCH", grain="ad_account", level=1)
    cur = sd.reference(ds, "orgA", start=START, end=END, model="LAST_TOUCH", grain="ad_account", level=1)
    previous = got.select(pl.col("ad_account_id").alias("key"), *(pl.col(f"{m}_previous").alias(m) for m in METRICS))
    assert_frame_equal(previous, prev.select("key", *METRICS))
    joined = cur.join(prev, on="key", suffix="_p", nulls_equal=True)
    for m in ("spend_micros", "conversions", "roas", "cpa_micros"):
        expected = (joined[m].cast(pl.Float64) / joined[f"{m}_p"].cast(pl.Float64) - 1).to_list()
        changes = got[f"{m}_change"].to_list()
        assert [v is None for v in changes] == [v is None for v in expected]
        assert [v for v in changes if v is not None] == pytest.approx([v for v in expected if v is not None], rel=1e-12)


def test_daily_comparison_aligns_each_day_with_the_same_day_of_the_previous_period(dataset, conn) -> None:
    ds, _ = dataset
    got = read_metrics(MetricsQuery("orgA", START, END, grain="ad_account", daily=True), conn)
    row = got.filter((pl.col("ad_account_id") == "accA1") & (pl.col("date") == date(2024, 3, 10))).row(0, named=True)
    prev = sd.reference(
        ds, "orgA", start=date(2024, 3, 3), end=date(2024, 3, 3), model="LAST_TOUCH", grain="ad_account", level=1
    )
    assert row["spend_micros_previous"] == prev.filter(pl.col("key") == "accA1")["spend_micros"].item()


def test_worked_example_with_hand_computed_numbers_and_division_by_zero(conn) -> None:
    got = read_metrics(
        MetricsQuery("orgW", date(2024, 3, 8), date(2024, 3, 9), grain="ad", daily=True, compare=False), conn
    )
    day1, day2 = got.sort("date").to_dicts()
    assert (day1["ad_id"], day1["name"], day1["currency"]) == ("adW", "W ad", "USD")
    assert {k: day1[k] for k in METRICS} == {
        "spend_micros": 10_000_000,
        "impressions": 1000,
        "clicks": 50,
        "conversions": 2.0,
        "revenue_micros": 30_000_000,
        "roas": 3.0,
        "cpa_micros": 5_000_000,
        "cpc_micros": 200_000,
        "ctr": 0.05,
        "conversion_rate": 0.04,
    }
    # Day 2 is dark: no spend, no impressions, no clicks, half a conversion worth 4 USD.
    assert {k: day2[k] for k in METRICS} == {
        "spend_micros": 0,
        "impressions": 0,
        "clicks": 0,
        "conversions": 0.5,
        "revenue_micros": 4_000_000,
        "roas": None,
        "cpa_micros": 0,
        "cpc_micros": None,
        "ctr": None,
        "conversion_rate": None,
    }
    total = read_metrics(MetricsQuery("orgW", date(2024, 3, 9), date(2024, 3, 9), grain="organization"), conn).row(
        0, named=True
    )
    # The organization total counts the organic half too; the previous day (day 1) is the comparison.
    assert (total["conversions"], total["revenue_micros"], total["spend_micros_previous"]) == (
        1.0,
        8_000_000,
        10_000_000,
    )
    assert total["spend_micros_change"] == -1.0 and total["roas_change"] is None and total["conversions_change"] == -0.5


def test_mixed_currencies_are_refused_and_converted_with_a_table(dataset, conn) -> None:
    ds, _ = dataset
    with pytest.raises(CurrencyError, match="different currencies") as info:
        read_metrics(MetricsQuery("orgA", START, END, grain="organization"), conn)
    assert info.value.currencies == {"orgA": ["EUR", "USD"]}
    # GOOGLE_ADS has two USD accounts only: one currency, no conversion needed.
    one = read_metrics(MetricsQuery("orgA", START, END, grain="platform", platform="GOOGLE_ADS", compare=False), conn)
    assert one["currency"].to_list() == ["USD"]
    with pytest.raises(CurrencyError, match="no conversion rate to USD for EUR"):
        read_metrics(MetricsQuery("orgA", START, END, grain="organization", conversion=CurrencyConversion("USD")), conn)
    fx = CurrencyConversion("USD", {"EUR": "1.25"})
    got = read_metrics(MetricsQuery("orgA", START, END, grain="organization", compare=False, conversion=fx), conn).row(
        0, named=True
    )
    spend = sd.spend_rows(ds, "orgA", 1).filter(pl.col("day").is_between(START, END))
    rate = pl.when(pl.col("currency") == "EUR").then(pl.lit(Decimal("1.25"))).otherwise(pl.lit(Decimal(1)))
    expected_spend = spend.select((pl.col("spendMicros").cast(pl.Decimal(38, 2)) * rate).sum()).item()
    assert got["currency"] == "USD" and got["spend_micros"] == int(
        Decimal(expected_spend).to_integral_value("ROUND_HALF_UP")
    )
    credit = sd.credit_rows(ds, "orgA", "LAST_TOUCH").filter(pl.col("day").is_between(START, END))
    expected_rev = credit.select(
        (pl.col("r") * pl.when(pl.col("currency") == "EUR").then(1.25).otherwise(1.0)).sum()
    ).item()
    assert got["revenue_micros"] == round(expected_rev)
    assert got["conversions"] == credit["w"].sum()


def test_two_organizations_never_see_each_other(dataset, conn) -> None:
    ds, _ = dataset
    for org in ("orgA", "orgB"):
        got = read_metrics(MetricsQuery(org, PREV_START, END, grain="ad", compare=False), conn)
        own = {r["id"] for r in ds.rows["Ad"] if r["organizationId"] == org}
        assert set(got["ad_id"]) <= own and got.height == len(own)
    # orgB's touchpoint points at orgA's ad: it counts for neither orgA's ad nor any orgB ad.
    a = read_metrics(MetricsQuery("orgA", PREV_START, END, grain="ad", compare=False), conn)
    ref = sd.reference(ds, "orgA", start=PREV_START, end=END, model="LAST_TOUCH", grain="ad", level=3)
    _compare(a, ref, "ad")
    credit_b = read_credit(conn, organization_id="orgB", start=PREV_START, end=END, grain="ad")
    assert not credit_b["ad_id"].str.starts_with("accA").any()
    assert read_metrics(MetricsQuery("nobody", START, END, grain="campaign"), conn).height == 0


def test_credit_by_model_equals_the_links(dataset, conn) -> None:
    ds, _ = dataset
    got = read_credit(
        conn, organization_id="orgA", start=START, end=END, models=["LINEAR", "LAST_TOUCH"], grain="channel"
    )
    for model in ("LINEAR", "LAST_TOUCH"):
        rows = sd.credit_rows(ds, "orgA", model).filter(pl.col("day").is_between(START, END))
        expected = rows.group_by("channel").agg(pl.col("w").sum().alias("conversions")).sort("channel")
        mine = got.filter(pl.col("model") == model).select("channel", "conversions")
        assert_frame_equal(mine, expected)
        assert mine["conversions"].sum() == pytest.approx(
            rows.filter(pl.col("w") > 0)["conversionId"].n_unique() if model == "LAST_TOUCH" else rows["w"].sum()
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"organization_id": ""}, "organization_id is required"),
        ({"start": END, "end": START}, "must not be after"),
        ({"model": "NOPE"}, "model must be one of"),
        ({"grain": "country"}, "grain must be one of"),
        ({"platform": "MYSPACE"}, "platform must be one of"),
        ({"start": datetime(2024, 3, 1, tzinfo=UTC)}, "must be a date"),
        ({"start": date(2000, 1, 1)}, "at most 3660"),
    ],
)
def test_invalid_queries_name_the_field(kwargs, match) -> None:
    base = {"organization_id": "orgA", "start": START, "end": END}
    with pytest.raises(ConfigError, match=match):
        MetricsQuery(**(base | kwargs))


@pytest.mark.parametrize(
    ("target", "rates", "match"),
    [("usd", {}, "3-letter"), ("USD", {"EUR": -1}, "positive"), ("USD", {"USD": 2}, "must be 1")],
)
def test_invalid_conversion_tables(target, rates, match) -> None:
    with pytest.raises(ConfigError, match=match):
        CurrencyConversion(target, rates)


# --- results without a campaign, and zero against unknown spend ---------------------------------------------
_NO_SPEND = dict.fromkeys(
    ("spend_micros", "impressions", "clicks", "roas", "cpa_micros", "cpc_micros", "ctr", "conversion_rate")
)


@pytest.mark.parametrize("grain", ["campaign", "ad_account", "platform", "organization", "channel", "ad"])
def test_touchpoints_without_a_campaign_are_reported_without_spend(conn, grain: str) -> None:
    """An organization with tracking only: every grain but ``ad`` has its 3 conversions (campaign, ad
    account and platform in a row whose key is null), and none claims a spend or a cost of 0."""
    got = read_metrics(MetricsQuery("orgN", date(2024, 3, 8), date(2024, 3, 8), grain=grain, compare=False), conn)  # type: ignore[arg-type]
    if grain == "ad":
        assert got.height == 0  # left out: the campaign grain reports them
        return
    (row,) = got.to_dicts()
    key = {"organization": "orgN", "channel": "paid_search"}.get(grain)
    assert (row[key_column(grain)], row["conversions"], row["revenue_micros"]) == (key, 3.0, 15_000_000)
    assert {k: row[k] for k in _NO_SPEND} == _NO_SPEND  # the organization grain gave spend 0 and cpa_micros 0
    if grain not in ("organization", "channel"):
        assert (row["name"], row["currency"]) == (None, None)


def test_the_default_grain_is_campaign_and_shows_results_without_a_campaign(conn) -> None:
    query = MetricsQuery("orgN", date(2024, 3, 8), date(2024, 3, 8))
    assert query.grain == "campaign"
    assert read_metrics(query, conn).select("campaign_id", "conversions").rows() == [(None, 3.0)]


def test_the_rows_of_every_grain_add_up_to_the_organization(dataset, conn) -> None:
    fx = CurrencyConversion("USD", {"EUR": "1.25"})
    total = read_metrics(MetricsQuery("orgA", START, END, grain="organization", compare=False, conversion=fx), conn)
    for grain in ("platform", "ad_account", "campaign", "channel"):
        got = read_metrics(MetricsQuery("orgA", START, END, grain=grain, compare=False, conversion=fx), conn)  # type: ignore[arg-type]
        assert got["conversions"].sum() == pytest.approx(total["conversions"].item(), rel=1e-12), grain
        assert got[key_column(grain)].null_count() == (grain != "channel"), grain


def test_spend_is_zero_for_a_key_without_spend_rows_and_null_where_there_can_be_none(dataset, conn) -> None:
    day = END + timedelta(days=1)  # conversions, but no spend rows (the platforms report no delivery)
    got = read_metrics(MetricsQuery("orgA", day, day, grain="campaign", compare=False), conn)
    keyed, unkeyed = got.filter(pl.col("campaign_id").is_not_null()), got.filter(pl.col("campaign_id").is_null())
    assert keyed.height and (keyed["spend_micros"] == 0).all() and (keyed["cpa_micros"].fill_null(0) == 0).all()
    assert unkeyed.height == 1 and unkeyed.row(0, named=True)["spend_micros"] is None
    # orgA has Google and Meta ad accounts; its TikTok touchpoints resolve to no campaign: TikTok has no spend.
    platforms = read_metrics(MetricsQuery("orgA", START, END, grain="platform", compare=False), conn)
    spend = dict(platforms.select("platform", "spend_micros").rows())
    assert spend["TIKTOK"] is None and spend["GOOGLE_ADS"] > 0 and spend["META"] > 0


@pytest.mark.parametrize("zone", ["+05:30", "GMT+05:30", "Pacific Time"])
def test_an_ad_account_time_zone_that_is_no_zone_name_is_refused(dataset, conn, zone: str) -> None:
    """'+05:30' meant India and Postgres read it POSIX-style as UTC-05:30: conversions moved to the previous
    day, silently; 'Pacific Time' failed with "a value is out of the range the database can hold"."""
    account = next(r["id"] for r in dataset[0].rows["AdAccount"] if r["organizationId"] == "orgB")
    trans = conn.begin()
    try:
        conn.execute(text('UPDATE "AdAccount" SET timezone = :tz WHERE id = :id'), {"tz": zone, "id": account})
        with pytest.raises(ConfigError, match=f"\\['{re.escape(zone)}'\\] are not time zone names"):
            read_metrics(MetricsQuery("orgB", START, END, grain="campaign"), conn)
        read_metrics(MetricsQuery("orgA", START, END, grain="campaign"), conn)  # another organization's: fine
    finally:
        trans.rollback()
