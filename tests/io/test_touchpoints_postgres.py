"""Touchpoint extraction against a real Optiq database: merge scope, reruns, platform rows, tenants, batch."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import polars as pl
import psycopg
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

import optiq_engine as oq
from optiq_engine.batch import run_batch
from optiq_engine.cli import app
from optiq_engine.errors import InputError
from optiq_engine.io import db, postgres, seed
from tests.support.pg import fresh_database
from tests.support.pg_data import retag

pytestmark = pytest.mark.postgres


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture()
def database(postgres_url: str) -> Iterator[tuple[str, dict[str, oq.synthetic.SyntheticData]]]:
    """Two organizations whose users share anon ids; every platform touchpoint has its PAGE_VIEW event."""
    orgs = {
        "orgA": retag(oq.synthetic.generate(n_users=300, seed=41), "orgA"),
        "orgB": retag(oq.synthetic.generate(n_users=300, seed=42), "orgB"),
    }
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        for data in orgs.values():
            seed.write_synthetic(url, data, page_views=True)
        with psycopg.connect(_dsn(url)) as conn:  # a campaign and an ad of orgA, and events that name them
            conn.execute("""INSERT INTO "Platform" (id, code, name) VALUES ('p_g', 'GOOGLE_ADS', 'Google Ads')""")
            conn.execute(
                """INSERT INTO "AdAccount" (id, "organizationId", "platformId", "externalId") VALUES ('aa1', 'orgA', 'p_g', '123')"""
            )
            conn.execute(
                """INSERT INTO "Campaign" (id, "organizationId", "adAccountId", "externalId", name) VALUES ('cmp1', 'orgA', 'aa1', '777', 'Brand')"""
            )
            conn.execute(
                """INSERT INTO "Ad" (id, "organizationId", "campaignId", "externalId", name) VALUES ('ad1', 'orgA', 'cmp1', '888', 'Ad')"""
            )
            for org in ("orgA", "orgB"):
                conn.execute(
                    """INSERT INTO "TrackingEvent" (id, "siteId", "eventId", type, "occurredAt", "anonId", url, properties)
                       VALUES (%s, %s, %s, 'PAGE_VIEW', '2020-01-01T00:00:00Z', 'u_props', %s, %s)""",
                    (
                        f"{org}_ev_p",
                        f"site_{org}",
                        "ev_p",
                        "https://shop.example/?gclid=GX&utm_campaign=777",
                        '{"utm_content": "888"}',
                    ),
                )
        yield url, orgs


def _rows(url: str, sql: str, *params: object) -> list[tuple]:
    with psycopg.connect(_dsn(url)) as conn:
        return conn.execute(sql, params).fetchall()


_PLATFORM_ROWS = """SELECT tp.* FROM "TouchPoint" tp WHERE tp.id !~ '^tp_[0-9a-f]{32}$' ORDER BY tp.id"""


def test_extracting_run_writes_engine_touchpoints_links_equal_in_memory_and_rerun_changes_nothing(database) -> None:
    url, _ = database
    platform_before = _rows(url, _PLATFORM_ROWS)
    first = run_batch(url, organization_id="orgA", full=True, extract_touchpoints=True)
    assert first.touchpoints_changed == first.touchpoints > 0
    # In memory, from the same events: the same touchpoints and the same links.
    window = postgres.Window(organization_id="orgA")
    events = postgres.read_events_for_touchpoints(url, window)
    campaigns, ads = postgres.read_campaigns(url, "orgA")
    extraction = oq.extract_touchpoints(events, campaigns=campaigns, ads=ads)
    in_db = pl.DataFrame(
        _rows(
            url,
            """SELECT tp.id, tp."trackingEventId", tp."platformCode"::text, tp."campaignId", tp."adId"
                      FROM "TouchPoint" tp JOIN "TrackingSite" s ON s.id = tp."siteId"
                      WHERE s."organizationId" = 'orgA' AND tp.id ~ '^tp_' ORDER BY tp.id""",
        ),
        schema=dict.fromkeys(["touchpoint_id", "event_id", "platform_code", "campaign_id", "ad_id"], pl.String),
        orient="row",
    )
    assert in_db.equals(extraction.touchpoints.select(in_db.columns).sort("touchpoint_id"))
    props = extraction.touchpoints.filter(pl.col("event_id") == "orgA_ev_p").row(0, named=True)
    assert (props["gclid"], props["platform_code"], props["campaign_id"], props["ad_id"]) == (
        "GX",
        "GOOGLE_ADS",
        "cmp1",
        "ad1",
    )
    expected = oq.attribute(extraction.touchpoints, postgres.read_conversions(url, window)).links
    links = _rows(
        url,
        """SELECT l."conversionId", l."touchPointId", l.model::text, l.weight FROM "AttributionLink" l
                          JOIN "TrackingEvent" e ON e.id = l."conversionId" JOIN "TrackingSite" s ON s.id = e."siteId"
                          WHERE s."organizationId" = 'orgA' ORDER BY 1, 2, 3""",
    )
    want = expected.select("conversion_id", "touchpoint_id", pl.col("model").cast(pl.String), "weight").sort(
        "conversion_id", "touchpoint_id", "model"
    )
    assert [r[:3] for r in links] == [r[:3] for r in want.rows()]
    assert all(link[1].startswith("tp_") for link in links)
    # Journeys: touchPointCount equals the engine touchpoints of the journey.
    (bad,) = _rows(
        url,
        """SELECT count(*) FROM "Journey" j WHERE j."organizationId" = 'orgA' AND j."touchPointCount" <>
        (SELECT count(*) FROM "TouchPoint" tp JOIN "JourneyEvent" je ON je."trackingEventId" = tp."trackingEventId"
         WHERE je."journeyId" = j.id AND tp.id ~ '^tp_')""",
    )[0]
    assert bad == 0
    again = run_batch(url, organization_id="orgA", full=True, extract_touchpoints=True)
    assert (again.touchpoints_changed, again.inserted, again.updated, again.deleted, again.journeys_changed) == (
        0,
        0,
        0,
        0,
        0,
    )
    # Platform rows untouched (both organizations), orgB has no engine rows.
    assert _rows(url, _PLATFORM_ROWS) == platform_before
    assert _rows(
        url, """SELECT count(*) FROM "TouchPoint" tp WHERE tp."siteId" = 'site_orgB' AND tp.id ~ '^tp_'"""
    ) == [(0,)]
    # An incremental run right after ignores the engine's own rows: no user changed.
    quiet = run_batch(url, organization_id="orgA", extract_touchpoints=True, overlap=timedelta(0))
    assert quiet.mode == "INCREMENTAL" and quiet.users == 0


def test_two_organizations_sharing_anon_ids_get_their_own_touchpoints(database) -> None:
    url, _ = database
    run_batch(url, organization_id="orgA", full=True, extract_touchpoints=True)
    a = set(_rows(url, """SELECT id FROM "TouchPoint" WHERE "siteId" = 'site_orgA' AND id ~ '^tp_'"""))
    run_batch(url, organization_id="orgB", full=True, extract_touchpoints=True)
    assert set(_rows(url, """SELECT id FROM "TouchPoint" WHERE "siteId" = 'site_orgA' AND id ~ '^tp_'""")) == a
    b = set(_rows(url, """SELECT id FROM "TouchPoint" WHERE "siteId" = 'site_orgB' AND id ~ '^tp_'"""))
    assert a and b and not (a & b)
    # orgB's links only reach orgB's touchpoints; the props event of orgB resolves no campaign (orgA's).
    (cross,) = _rows(
        url,
        """SELECT count(*) FROM "AttributionLink" l JOIN "TouchPoint" tp ON tp.id = l."touchPointId"
        JOIN "TrackingEvent" e ON e.id = l."conversionId" WHERE tp."siteId" <> e."siteId" """,
    )[0]
    assert cross == 0
    assert _rows(url, """SELECT "campaignId" FROM "TouchPoint" WHERE "trackingEventId" = 'orgB_ev_p'""") == [(None,)]


def test_merge_deletes_only_stale_engine_rows_of_users_in_scope(database) -> None:
    url, _ = database
    events = postgres.read_events_for_touchpoints(url, postgres.Window(organization_id="orgA"))
    tps = oq.extract_touchpoints(events).touchpoints
    users = tps.get_column("anon_id").unique().sort()
    user = users[0]
    with postgres.transaction(url) as cur:
        first = postgres.merge_touchpoints(cur, tps, organization_id="orgA", anon_ids=events.get_column("anon_id"))
    assert first.inserted == tps.height
    platform_before = _rows(url, _PLATFORM_ROWS)
    # Recompute one user with one touchpoint fewer: exactly that row goes; others stay.
    mine = tps.filter(pl.col("anon_id") == user).sort("occurred_at")
    with postgres.transaction(url) as cur:
        counts = postgres.merge_touchpoints(cur, mine.slice(1), organization_id="orgA", anon_ids=pl.Series([user]))
    assert (counts.inserted, counts.updated, counts.deleted) == (0, 0, 1)
    assert _rows(url, """SELECT count(*) FROM "TouchPoint" WHERE id ~ '^tp_'""") == [(tps.height - 1,)]
    assert _rows(url, _PLATFORM_ROWS) == platform_before
    # Refused: a platform id, or a site of another organization; nothing written.
    with pytest.raises(InputError, match="not engine ids"), postgres.transaction(url) as cur:
        postgres.merge_touchpoints(
            cur,
            mine.with_columns(pl.lit("ckxyz").alias("touchpoint_id")),
            organization_id="orgA",
            anon_ids=pl.Series([user]),
        )
    with pytest.raises(InputError, match="outside organization"), postgres.transaction(url) as cur:
        postgres.merge_touchpoints(cur, mine, organization_id="orgB", anon_ids=pl.Series([user]))
    assert _rows(url, """SELECT count(*) FROM "TouchPoint" WHERE id ~ '^tp_'""") == [(tps.height - 1,)]


def test_cli_extract_touchpoints_flag(database) -> None:
    url, _ = database
    result = CliRunner().invoke(app, ["run", "--database-url", url, "--org", "orgA", "--full", "--extract-touchpoints"])
    assert result.exit_code == 0, result.output
    assert "touchpoints extracted" in result.output
    refused = CliRunner().invoke(
        app, ["run", "--database-url", url, "--org", "orgA", "--extract-touchpoints", "--partitions", "2"]
    )
    assert refused.exit_code == 2


def test_a_campaign_synced_after_its_clicks_is_resolved_by_the_next_incremental_run(database) -> None:
    """Ad platforms are synced after the clicks arrive: a click extracted before its campaign existed kept a
    null campaign_id through every incremental run (no tracking event changed), so the campaign showed spend
    and no conversions until a full run. A Campaign or Ad created since the last run now makes the run full."""
    url, _ = database
    with psycopg.connect(_dsn(url)) as conn:
        conn.execute(
            """INSERT INTO "TrackingEvent" (id, "siteId", "eventId", type, "occurredAt", "anonId", url)
               VALUES ('orgA_ev_late', 'site_orgA', 'ev_late', 'PAGE_VIEW', '2020-01-02T00:00:00Z', 'u_late',
                       'https://shop.example/?gclid=GL&utm_campaign=999')"""
        )
    run_batch(url, organization_id="orgA", full=True, extract_touchpoints=True)
    resolved = """SELECT tp."campaignId" FROM "TouchPoint" tp WHERE tp."trackingEventId" = 'orgA_ev_late'"""
    assert _rows(url, resolved) == [(None,)]
    assert run_batch(url, organization_id="orgA", extract_touchpoints=True).mode == "INCREMENTAL"
    with psycopg.connect(_dsn(url)) as conn:
        conn.execute(
            """INSERT INTO "Campaign" (id, "organizationId", "adAccountId", "externalId", name)
               VALUES ('cmp_late', 'orgA', 'aa1', '999', 'Synced late')"""
        )
    run = run_batch(url, organization_id="orgA", extract_touchpoints=True)
    assert run.mode == "FULL" and _rows(url, resolved) == [("cmp_late",)]
    assert run_batch(url, organization_id="orgA", extract_touchpoints=True).mode == "INCREMENTAL"
