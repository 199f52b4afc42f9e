"""Crafted series for the alert tests: one organization per case, one USD ad, members, daily numbers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Connection

from optiq_engine.io import schema

NOW = datetime(2024, 6, 15, 10, 0, tzinfo=UTC)
TODAY = NOW.date()
YESTERDAY = TODAY - timedelta(days=1)


def day(offset: int) -> date:
    """``TODAY + offset`` days (``day(-1)`` is yesterday)."""
    return TODAY + timedelta(days=offset)


def ensure_platforms(conn: Connection) -> None:
    conn.exec_driver_sql(
        """INSERT INTO "Platform" (id, code, name) VALUES ('plt_g', 'GOOGLE_ADS', 'Google Ads'), ('plt_m', 'META', 'Meta')
           ON CONFLICT DO NOTHING"""
    )


def seed_org(
    conn: Connection,
    org: str,
    *,
    metrics: Mapping[date, tuple[int, int, int]] = {},  # noqa: B006 - read only
    conversions: Mapping[date, Iterable[tuple[int | None, float]]] = {},  # noqa: B006 - read only
    members: Iterable[tuple[str, str]] = (("admin", "ADMIN"), ("viewer", "VIEWER")),
    currency: str = "USD",
) -> dict[str, str]:
    """An organization with account/campaign/ad ``acc_<org>``/``cmp_<org>``/``ad_<org>``; returns the ids.

    ``metrics``: day -> (impressions, clicks, spend micros), written at the ad, campaign and account levels.
    ``conversions``: day -> [(value micros, LAST_TOUCH weight), ...] at noon UTC, credited to the ad.
    Users are ``<name>_<org>``.
    """
    ensure_platforms(conn)
    ids = {"account": f"acc_{org}", "campaign": f"cmp_{org}", "ad": f"ad_{org}", "site": f"site_{org}"}
    t = schema.metadata.tables
    conn.execute(t["Organization"].insert(), {"id": org, "name": f"Org {org}", "slug": org})
    for name, role in members:
        user = f"{name}_{org}"
        conn.execute(t["User"].insert(), {"id": user, "email": f"{user}@example.com"})
        conn.execute(
            t["Membership"].insert(), {"id": f"mb_{user}", "userId": user, "organizationId": org, "role": role}
        )
    conn.execute(
        t["AdAccount"].insert(),
        {
            "id": ids["account"],
            "organizationId": org,
            "platformId": "plt_g",
            "externalId": org,
            "name": f"Account {org}",
            "currency": currency,
        },
    )
    conn.execute(
        t["Campaign"].insert(),
        {
            "id": ids["campaign"],
            "organizationId": org,
            "adAccountId": ids["account"],
            "externalId": org,
            "name": f"Campaign {org}",
        },
    )
    conn.execute(
        t["Ad"].insert(),
        {"id": ids["ad"], "organizationId": org, "campaignId": ids["campaign"], "externalId": org, "name": f"Ad {org}"},
    )
    conn.execute(
        t["TrackingSite"].insert(),
        {"id": ids["site"], "organizationId": org, "name": org, "domain": f"{org}.example", "publicKey": f"pk_{org}"},
    )
    set_metrics(conn, org, metrics)
    n = 0
    for d, items in conversions.items():
        for value, weight in items:
            cv, tp = f"{org}_cv{n}", f"{org}_tp{n}"
            at = datetime.combine(d, time(12), tzinfo=UTC)
            conn.execute(
                t["TrackingEvent"].insert(),
                {
                    "id": cv,
                    "siteId": ids["site"],
                    "eventId": cv,
                    "type": "CONVERSION",
                    "occurredAt": at,
                    "anonId": f"u{n}",
                    "valueMicros": value,
                },
            )
            conn.execute(
                t["TouchPoint"].insert(),
                {
                    "id": tp,
                    "siteId": ids["site"],
                    "anonId": f"u{n}",
                    "occurredAt": at - timedelta(hours=1),
                    "gclid": "g",
                    "adId": ids["ad"],
                    "campaignId": ids["campaign"],
                },
            )
            conn.execute(
                t["AttributionLink"].insert(),
                {
                    "id": f"l_{tp}",
                    "conversionId": cv,
                    "touchPointId": tp,
                    "model": "LAST_TOUCH",
                    "weight": weight,
                    "position": 1,
                    "touchPointCount": 1,
                },
            )
            n += 1
    return ids


def set_metrics(conn: Connection, org: str, metrics: Mapping[date, tuple[int, int, int]]) -> None:
    """Write (or overwrite) the daily metrics of ``org``'s ad, campaign and account."""
    for table, col, scope in (
        ("DailyAdMetric", "adId", f"ad_{org}"),
        ("DailyCampaignMetric", "campaignId", f"cmp_{org}"),
        ("DailyAdAccountMetric", "adAccountId", f"acc_{org}"),
    ):
        for d, (imp, clk, spend) in metrics.items():
            conn.exec_driver_sql(
                f'INSERT INTO "{table}" (id, "organizationId", "{col}", date, impressions, clicks, "spendMicros") '
                "VALUES (%(id)s, %(org)s, %(scope)s, %(date)s, %(imp)s, %(clk)s, %(spend)s) "
                f'ON CONFLICT ("organizationId", "{col}", date) DO UPDATE SET impressions = EXCLUDED.impressions, '
                'clicks = EXCLUDED.clicks, "spendMicros" = EXCLUDED."spendMicros"',
                {
                    "id": f"{table}_{scope}_{d}",
                    "org": org,
                    "scope": scope,
                    "date": d,
                    "imp": imp,
                    "clk": clk,
                    "spend": spend,
                },
            )
