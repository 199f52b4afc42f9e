"""Spend, ROAS, CPA and CPC per channel over a real Postgres: a worked example with hand-computed numbers,
spend no channel rule maps, the channels' spend adding up to the organization's, custom rules, the
summaries serving the same report, and tenant isolation (another organization's spend never appears)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime

import polars as pl
import pytest
from fastapi.testclient import TestClient
from polars.testing import assert_frame_equal
from sqlalchemy import Connection, create_engine, pool, text

from optiq_engine.batch import summarize
from optiq_engine.channels import ChannelRule, ChannelRules
from optiq_engine.io import db, schema
from optiq_engine.service import keys, tenancy
from optiq_engine.service.api import create_app
from optiq_engine.service.errors import CurrencyError
from optiq_engine.service.metrics import (
    METRICS,
    PLATFORM_CLICK_IDS,
    UNMAPPED,
    CurrencyConversion,
    MetricsQuery,
    _metrics_sql,
    read_metrics,
)
from tests.support import service_data as sd
from tests.support.pg import fresh_database

pytestmark = pytest.mark.postgres

D0, D1, D2 = date(2024, 3, 7), date(2024, 3, 8), date(2024, 3, 9)
#: Custom rules: Google clicks are ``search_ads``; a Meta click maps only with a UTM medium, so Meta's spend
#: (a click id and nothing else) matches no rule; TikTok has no rule at all.
RULES = ChannelRules(
    (
        ChannelRule("search_ads", click_id="gclid"),
        ChannelRule("social_ads", click_id="fbclid", medium="paid_social"),
        ChannelRule("email", medium="email"),
    )
)


def _at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _worked_example() -> dict[str, list[dict]]:
    """orgS: Google, Meta and TikTok USD accounts (UTC) with account-level spend on 2024-03-07 .. 09 (the
    campaign-level row of the Google campaign differs, as platforms' levels may); four LINEAR conversions
    (Google clicks, a Meta click shared with a newsletter, organic search). orgX: its own Google account and a
    spend row that names orgS's account (a foreign reference that must count for nobody)."""
    rows: dict[str, list[dict]] = {
        "Platform": [{"id": i, "code": c, "name": n} for i, c, n in sd.PLATFORMS],
        "Organization": [{"id": o, "name": o, "slug": o} for o in ("orgS", "orgX")],
        "AdAccount": [],
        "Campaign": [],
        "DailyAdAccountMetric": [],
        "DailyCampaignMetric": [],
        "TrackingSite": [],
        "TrackingEvent": [],
        "TouchPoint": [],
        "AttributionLink": [],
    }
    for org, acc, plat in (
        ("orgS", "accG", "plt_g"),
        ("orgS", "accM", "plt_m"),
        ("orgS", "accT", "plt_t"),
        ("orgX", "accX", "plt_g"),
    ):
        rows["AdAccount"].append(
            {"id": acc, "organizationId": org, "platformId": plat, "externalId": acc, "name": acc, "currency": "USD"}
        )
        rows["Campaign"].append(
            {"id": f"c_{acc}", "organizationId": org, "adAccountId": acc, "externalId": acc, "name": f"c {acc}"}
        )
    spend = [  # organization, account, day, impressions, clicks, spend micros
        ("orgS", "accG", D0, 4_000, 80, 20_000_000),
        ("orgS", "accG", D1, 10_000, 200, 50_000_000),
        ("orgS", "accG", D2, 5_000, 100, 25_000_000),
        ("orgS", "accM", D1, 20_000, 100, 40_000_000),
        ("orgS", "accT", D1, 1_000, 10, 5_000_000),
        ("orgX", "accX", D1, 90_000, 9_000, 900_000_000),
        ("orgX", "accG", D1, 77_000, 7_700, 777_000_000),  # orgX's row naming orgS's account
    ]
    for n, (org, acc, day, imp, clk, micros) in enumerate(spend):
        rows["DailyAdAccountMetric"].append(
            {
                "id": f"ma{n}",
                "organizationId": org,
                "adAccountId": acc,
                "date": day,
                "impressions": imp,
                "clicks": clk,
                "spendMicros": micros,
            }
        )
    rows["DailyCampaignMetric"].append(
        {
            "id": "mc0",
            "organizationId": "orgS",
            "campaignId": "c_accG",
            "date": D1,
            "impressions": 9_000,
            "clicks": 150,
            "spendMicros": 30_000_000,
        }
    )
    conversions = [  # organization, conversion, time, value, [(touch, weight, attributes)]
        ("orgS", "cv1", _at(D1, 12), 120_000_000, [("tp1", 1.0, {"gclid": "g1", "campaignId": "c_accG"})]),
        ("orgS", "cv2", _at(D2, 10), 30_000_000, [("tp2", 1.0, {"gclid": "g2", "campaignId": "c_accG"})]),
        (
            "orgS",
            "cv3",
            _at(D1, 15),
            60_000_000,
            [
                ("tp3", 0.5, {"fbclid": "f3", "campaignId": "c_accM"}),
                ("tp4", 0.5, {"utmSource": "newsletter", "utmMedium": "email"}),
            ],
        ),
        ("orgS", "cv4", _at(D2, 18), 10_000_000, [("tp5", 1.0, {"utmSource": "google", "utmMedium": "organic"})]),
        ("orgX", "cvX", _at(D1, 9), 500_000_000, [("tpX", 1.0, {"gclid": "gx", "campaignId": "c_accX"})]),
    ]
    for org in ("orgS", "orgX"):
        rows["TrackingSite"].append(
            {
                "id": f"site_{org}",
                "organizationId": org,
                "name": org,
                "domain": f"{org}.example",
                "publicKey": f"pk_{org}",
            }
        )
    for org, cv, at, value, touches in conversions:
        site = f"site_{org}"
        rows["TrackingEvent"].append(
            {
                "id": cv,
                "siteId": site,
                "eventId": cv,
                "type": "CONVERSION",
                "occurredAt": at,
                "anonId": cv,
                "valueMicros": value,
            }
        )
        for pos, (tp, weight, attrs) in enumerate(touches, start=1):
            rows["TouchPoint"].append({"id": tp, "siteId": site, "anonId": cv, "occurredAt": at, **attrs})
            rows["AttributionLink"].append(
                {
                    "id": f"l_{tp}",
                    "conversionId": cv,
                    "touchPointId": tp,
                    "model": "LINEAR",
                    "weight": weight,
                    "position": pos,
                    "touchPointCount": len(touches),
                }
            )
    return rows


@pytest.fixture(scope="module")
def url(postgres_url: str) -> Iterator[str]:
    with fresh_database(postgres_url, upgraded=True) as fresh:
        engine = create_engine(db.normalise_url(fresh), poolclass=pool.NullPool)
        example = _worked_example()
        with engine.begin() as conn:
            for table in schema.TABLE_NAMES:
                for row in example.get(table, []):  # one by one: the rows do not all have the same columns
                    conn.execute(schema.metadata.tables[table].insert(), row)
        engine.dispose()
        yield fresh


@pytest.fixture()
def conn(url: str) -> Iterator[Connection]:
    engine = create_engine(db.normalise_url(url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        yield connection
    engine.dispose()


def _report(conn: Connection, org: str = "orgS", **kwargs) -> pl.DataFrame:
    kwargs = {"start": D1, "end": D2, "model": "LINEAR", "grain": "channel", "compare": False} | kwargs
    return read_metrics(MetricsQuery(org, **kwargs), conn)


_NONE = dict.fromkeys(
    ("spend_micros", "impressions", "clicks", "roas", "cpa_micros", "cpc_micros", "ctr", "conversion_rate")
)


def test_worked_example_spend_roas_cpa_cpc_per_channel(conn) -> None:
    got = {row["channel"]: row for row in _report(conn).to_dicts()}
    assert list(got) == ["email", "google_ads", "meta_ads", "organic_search", "tiktok_ads"]
    # google_ads: 50 + 25 USD for 200 + 100 clicks; conversions cv1 (120 USD) and cv2 (30 USD), whole.
    assert {k: got["google_ads"][k] for k in METRICS} == {
        "spend_micros": 75_000_000,
        "impressions": 15_000,
        "clicks": 300,
        "conversions": 2.0,
        "revenue_micros": 150_000_000,
        "roas": 2.0,
        "cpa_micros": 37_500_000,
        "cpc_micros": 250_000,
        "ctr": 0.02,
        "conversion_rate": 2 / 300,
    }
    # meta_ads: 40 USD, 100 clicks; half of cv3 (60 USD) -> 0.5 conversions, 30 USD: ROAS 0.75, CPA 80 USD.
    assert {k: got["meta_ads"][k] for k in METRICS} == {
        "spend_micros": 40_000_000,
        "impressions": 20_000,
        "clicks": 100,
        "conversions": 0.5,
        "revenue_micros": 30_000_000,
        "roas": 0.75,
        "cpa_micros": 80_000_000,
        "cpc_micros": 400_000,
        "ctr": 0.005,
        "conversion_rate": 0.005,
    }
    # tiktok_ads: 5 USD for 10 clicks and nothing credited: ROAS 0, no CPA (no conversion to divide by).
    assert {k: got["tiktok_ads"][k] for k in METRICS} == {
        "spend_micros": 5_000_000,
        "impressions": 1_000,
        "clicks": 10,
        "conversions": 0.0,
        "revenue_micros": 0,
        "roas": 0.0,
        "cpa_micros": None,
        "cpc_micros": 500_000,
        "ctr": 0.01,
        "conversion_rate": 0.0,
    }
    # Channels no platform's spend maps to: results, and spend unknown (null), not zero.
    assert (got["email"]["conversions"], got["email"]["revenue_micros"]) == (0.5, 30_000_000)
    assert (got["organic_search"]["conversions"], got["organic_search"]["revenue_micros"]) == (1.0, 10_000_000)
    for channel in ("email", "organic_search"):
        assert {k: got[channel][k] for k in _NONE} == _NONE
        assert got[channel]["name"] == channel
    # Currency: of the ad accounts behind the row; the organic touches resolve to none.
    assert {k: row["currency"] for k, row in got.items()} == {
        "email": None,
        "google_ads": "USD",
        "meta_ads": "USD",
        "organic_search": None,
        "tiktok_ads": "USD",
    }


def test_previous_period_spend_and_change_per_channel(conn) -> None:
    got = {row["channel"]: row for row in _report(conn, compare=True).to_dicts()}
    # The previous period is 03-06 .. 03-07: Google spent 20 USD; Meta nothing (zero: it has an account).
    assert (got["google_ads"]["spend_micros_previous"], got["google_ads"]["spend_micros_change"]) == (20_000_000, 2.75)
    assert (got["meta_ads"]["spend_micros_previous"], got["meta_ads"]["spend_micros_change"]) == (0, None)
    assert got["email"]["spend_micros_previous"] is None


def test_spend_no_rule_maps_is_one_unmapped_row_and_never_dropped(conn) -> None:
    got = _report(conn, channel_rules=RULES)
    assert got["channel"].to_list() == ["direct", "email", "search_ads", "unassigned", None]
    rows = {row["channel"]: row for row in got.to_dicts()}
    unmapped = rows[None]
    # Meta (40 USD, 100 clicks) and TikTok (5 USD, 10 clicks): no rule on fbclid or ttclid alone.
    assert (unmapped["name"], unmapped["currency"]) == (UNMAPPED, "USD")
    assert {k: unmapped[k] for k in METRICS} == {
        "spend_micros": 45_000_000,
        "impressions": 21_000,
        "clicks": 110,
        "conversions": 0.0,
        "revenue_micros": 0,
        "roas": 0.0,
        "cpa_micros": None,
        "cpc_micros": 409_091,
        "ctr": 110 / 21_000,
        "conversion_rate": 0.0,
    }
    assert (rows["search_ads"]["spend_micros"], rows["search_ads"]["roas"]) == (75_000_000, 2.0)
    # The Meta click (no UTM medium) is direct for these rules, as the engine would derive it; no spend maps there.
    assert (rows["direct"]["conversions"], rows["direct"]["spend_micros"]) == (0.5, None)
    assert (rows["unassigned"]["conversions"], rows["unassigned"]["revenue_micros"]) == (1.0, 10_000_000)
    assert got["spend_micros"].sum() == _report(conn, grain="organization")["spend_micros"].item() == 120_000_000


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"platform": "META"},
        {"ad_account_id": "accG"},
        {"campaign_id": "c_accG"},
        {"daily": True},
        {"channel_rules": RULES},
        {"channel_rules": RULES, "daily": True, "compare": True},
    ],
)
def test_the_channels_spend_adds_up_to_the_organizations(conn, filters) -> None:
    org_filters = {k: v for k, v in filters.items() if k != "channel_rules"}
    for start in (D0, D1):
        channels = _report(conn, start=start, **filters)
        total = _report(conn, start=start, grain="organization", **org_filters)
        for metric in ("spend_micros", "impressions", "clicks"):
            assert channels[metric].sum() == total[metric].sum(), (filters, metric)
        assert channels["conversions"].sum() == pytest.approx(total["conversions"].sum())
    if "campaign_id" in filters:  # the campaign's own row (30 USD), as the organization report reads it
        assert channels.filter(pl.col("channel") == "google_ads")["spend_micros"].item() == 30_000_000


def test_the_channels_spend_adds_up_on_the_multi_currency_data_set(postgres_url) -> None:
    """The service tests' random data set (two organizations, USD and EUR accounts, a TikTok touch without an
    account): per period, rules and filter (down to one ad: the ad-level spend table), the channels' spend
    equals the organization's, and Google's channel spend equals the Polars recomputation from the rules'
    definition."""
    ds = sd.build()
    fx = CurrencyConversion("USD", {"EUR": "1.25"})
    filters = ({}, {"platform": "META"}, {"campaign_id": "accA2_c0"}, {"ad_id": "accA1_c0_ad0"})
    periods = ((date(2024, 3, 1), date(2024, 3, 14)), (date(2024, 3, 8), date(2024, 3, 10)))
    with fresh_database(postgres_url, upgraded=True) as fresh:
        sd.insert(fresh, ds)
        engine = create_engine(db.normalise_url(fresh), poolclass=pool.NullPool)
        with engine.connect() as c:
            for org, (start, end), rules, where in itertools.product(("orgA", "orgB"), periods, (None, RULES), filters):
                q = {"start": start, "end": end, "model": "LINEAR", "compare": False, "conversion": fx, **where}
                channels = read_metrics(MetricsQuery(org, grain="channel", channel_rules=rules, **q), c)
                total = read_metrics(MetricsQuery(org, grain="organization", **q), c)
                # Converted amounts are rounded once per row: at most half a micro apart per row.
                expected = total["spend_micros"].sum()
                assert abs(channels["spend_micros"].sum() - expected) <= channels.height, (org, rules, where)
                assert (channels["clicks"].sum(), channels["impressions"].sum()) == (
                    total["clicks"].sum(),
                    total["impressions"].sum(),
                ), (org, rules, where)
            for org, (start, end), rules in itertools.product(("orgA", "orgB"), periods, (None, RULES)):
                google = sd.spend_channel("GOOGLE_ADS", rules)
                mine = read_metrics(
                    MetricsQuery(
                        org,
                        start,
                        end,
                        model="LINEAR",
                        grain="channel",
                        channel_rules=rules,
                        compare=False,
                        platform="GOOGLE_ADS",
                    ),
                    c,
                )
                ref = sd.reference(ds, org, start=start, end=end, model="LINEAR", grain="channel", level=1, rules=rules)
                assert mine.filter(pl.col("channel") == google)["spend_micros"].to_list() == (
                    ref.filter(pl.col("key") == google)["spend_micros"].to_list()
                )
        engine.dispose()


def test_summaries_serve_the_default_rules_report_with_the_same_numbers(url, postgres_url) -> None:
    with fresh_database(postgres_url, copy_of=url) as copy:
        engine = create_engine(db.normalise_url(copy), poolclass=pool.NullPool)
        queries = [
            {},
            {"compare": True},
            {"daily": True, "compare": True},
            {"channel_rules": RULES},
            {"platform": "GOOGLE_ADS"},
        ]
        with engine.connect() as c:
            before = [_report(c, **q) for q in queries]
        summarize(copy, "orgS")
        with engine.connect() as c:
            for q, expected in zip(queries, before, strict=True):
                assert_frame_equal(_report(c, **q), expected, check_exact=True)
            sql, params = _metrics_sql(MetricsQuery("orgS", D1, D2, grain="channel"), summarized=True)
            plan = "\n".join(r[0] for r in c.execute(text("EXPLAIN " + sql), params))
        engine.dispose()
    assert "EngineCreditDaily" in plan and "EngineSpendDaily" in plan
    assert "AttributionLink" not in plan and "DailyAdAccountMetric" not in plan


def test_another_organizations_spend_never_appears(conn) -> None:
    # orgX spent 900 USD on its account and wrote 777 USD against orgS's account: neither is orgS's.
    mine = _report(conn)
    assert mine["spend_micros"].sum() == 120_000_000 and mine["conversions"].sum() == 4.0
    theirs = _report(conn, "orgX").to_dicts()
    assert [(r["channel"], r["spend_micros"], r["conversions"], r["roas"]) for r in theirs] == [
        ("google_ads", 900_000_000, 1.0, 500 / 900)
    ]
    assert _report(conn, "nobody").height == 0


def test_on_the_service_path_row_level_security_keeps_the_report_to_its_organization(url) -> None:
    """As the service runs it (role optiq_service, transaction scoped to an organization): the same report; scoped
    to orgX, a query that names orgS sees none of its spend or results (the policies, not only the filters)."""
    owner = create_engine(db.normalise_url(url), poolclass=pool.NullPool)
    service = tenancy.scoped_engine(owner)
    try:
        with owner.connect() as c:
            expected = _report(c, compare=True)
        with tenancy.for_organization(service, "orgS").connect() as c:
            assert_frame_equal(_report(c, compare=True), expected, check_exact=True)
        with tenancy.for_organization(service, "orgX").connect() as c:
            assert _report(c, "orgS").height == 0
            assert _report(c, "orgX")["spend_micros"].to_list() == [900_000_000]
    finally:
        owner.dispose()


def test_a_channel_adding_up_two_currencies_is_refused_or_converted(postgres_url) -> None:
    """orgA's Google accounts are in USD, its Meta account in EUR: rules sending both click ids to one channel
    make that channel's spend two currencies (refused, naming it), unless converted."""
    one = ChannelRules((ChannelRule("paid", click_id="gclid"), ChannelRule("paid", click_id="fbclid")))
    start, end = date(2024, 3, 1), date(2024, 3, 14)
    with fresh_database(postgres_url, upgraded=True) as fresh:
        sd.insert(fresh, sd.build())
        engine = create_engine(db.normalise_url(fresh), poolclass=pool.NullPool)
        with engine.connect() as c:
            with pytest.raises(CurrencyError, match="1 channel row") as info:
                read_metrics(MetricsQuery("orgA", start, end, grain="channel", channel_rules=one), c)
            assert info.value.currencies == {"paid": ["EUR", "USD"]}
            fx = CurrencyConversion("USD", {"EUR": "1.25"})
            got = read_metrics(MetricsQuery("orgA", start, end, grain="channel", channel_rules=one, conversion=fx), c)
            total = read_metrics(MetricsQuery("orgA", start, end, grain="organization", conversion=fx), c)
            paid = got.filter(pl.col("channel") == "paid")
            assert paid["currency"].item() == "USD" and paid["spend_micros"].item() == total["spend_micros"].item()
        engine.dispose()


def test_the_endpoint_returns_spend_and_ratios_per_channel_for_the_callers_organization(url) -> None:
    engine = create_engine(db.normalise_url(url), poolclass=pool.NullPool)
    tokens = {}
    with engine.begin() as c:
        for user, org in (("us", "orgS"), ("ux", "orgX")):
            c.execute(text('INSERT INTO "User" (id, email) VALUES (:u, :e)'), {"u": user, "e": f"{user}@example.com"})
            c.execute(
                text(
                    """INSERT INTO "Membership" (id, "userId", "organizationId", role) VALUES (:i, :u, :o, 'VIEWER')"""
                ),
                {"i": f"m_{user}", "u": user, "o": org},
            )
            tokens[org] = keys.create_api_key(c, organization_id=org, user_id=user)[1]
    app_engine = create_engine(db.normalise_url(url))
    try:
        with TestClient(create_app(engine=app_engine)) as client:
            params = {"start": "2024-03-08", "end": "2024-03-09", "grain": "channel", "model": "LINEAR"}
            r = client.get("/v1/metrics", params=params, headers={"Authorization": f"Bearer {tokens['orgS']}"})
            assert r.status_code == 200, r.text
            rows = {row["channel"]: row for row in r.json()["rows"]}
            assert (
                rows["google_ads"]["spend_micros"],
                rows["google_ads"]["roas"],
                rows["google_ads"]["cpa_micros"],
                rows["google_ads"]["cpc_micros"],
            ) == (75_000_000, 2.0, 37_500_000, 250_000)
            assert rows["google_ads"]["spend_micros_previous"] == 20_000_000
            r = client.get("/v1/metrics", params=params, headers={"Authorization": f"Bearer {tokens['orgX']}"})
            assert [row["spend_micros"] for row in r.json()["rows"]] == [900_000_000]
    finally:
        app_engine.dispose()
        engine.dispose()


def test_platform_click_ids_are_the_inverse_of_the_touchpoints_platforms() -> None:
    from optiq_engine.touchpoints import CLICK_ID_PLATFORMS

    inverse = {platform: click for click, platform in CLICK_ID_PLATFORMS.items()}
    assert inverse == PLATFORM_CLICK_IDS == sd.PLATFORM_CLICK_ID
