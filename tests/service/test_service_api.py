"""The HTTP API against a real Postgres: keys, tenant scoping, roles, metrics and alert operations, and a
schemathesis run of the OpenAPI spec (no server error on any generated request)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import polars as pl
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from sqlalchemy import text

from optiq_engine.io import schema
from optiq_engine.service import keys
from optiq_engine.service.metrics import MetricsQuery, read_metrics
from tests.support import service_data as sd
from tests.support.service_alert_data import NOW
from tests.support.service_api import http_api

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def api(postgres_url: str) -> Iterator[dict]:
    """The data set of the metrics tests, members of orgA (admin, viewer) and orgB (admin), a key each."""
    with http_api(postgres_url) as served:
        yield served


def test_health_needs_no_key_and_everything_else_does(api) -> None:
    c, h = api["client"], api["h"]
    assert c.get("/v1/health").json() == {"status": "ok"}
    for headers in (
        {},
        {"Authorization": "Bearer optiq_nope_nope"},
        {"Authorization": "Bearer garbage"},
        h["ux"],
    ):  # ux: revoked
        r = c.get("/v1/alerts", headers=headers)
        assert r.status_code == 401, (headers, r.text)
    token = h["ua"]["Authorization"].removeprefix("Bearer ")
    assert c.get("/v1/alerts", headers={"Authorization": f"Bearer {token[:-2]}xx"}).status_code == 401  # wrong secret
    with api["engine"].connect() as conn:
        stored = conn.execute(text('SELECT "keyHash" FROM "ApiKey"')).scalars().all()
    assert all(token.rsplit("_", 1)[1] not in s for s in stored) and all(len(s) == 64 for s in stored)


def test_metrics_endpoint_equals_the_library_and_the_recomputation(api) -> None:
    c, h, ds = api["client"], api["h"], api["ds"]
    r = c.get(
        "/v1/metrics",
        params={"start": "2024-03-08", "end": "2024-03-14", "grain": "campaign", "model": "LINEAR"},
        headers=h["uv"],
    )
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    expected = sd.reference(
        ds, "orgA", start=date(2024, 3, 8), end=date(2024, 3, 14), model="LINEAR", grain="campaign", level=2
    )
    assert [row["campaign_id"] for row in rows] == expected["key"].to_list()
    for row, exp in zip(rows, expected.iter_rows(named=True), strict=True):
        assert (row["spend_micros"], row["clicks"], row["revenue_micros"], row["cpa_micros"]) == (
            exp["spend_micros"],
            exp["clicks"],
            exp["revenue_micros"],
            exp["cpa_micros"],
        )
        assert row["conversions"] == pytest.approx(exp["conversions"]) and "spend_micros_previous" in row
    with api["engine"].connect() as conn:
        frame = read_metrics(MetricsQuery("orgA", date(2024, 3, 8), date(2024, 3, 14), grain="ad", daily=True), conn)
    r = c.get(
        "/v1/metrics",
        params={"start": "2024-03-08", "end": "2024-03-14", "grain": "ad", "daily": True},
        headers=h["ua"],
    )
    assert (
        pl.DataFrame(r.json()["rows"]).with_columns(pl.col("date").str.to_date())["spend_micros"].to_list()
        == frame["spend_micros"].to_list()
    )


def test_metrics_validation_and_currencies(api) -> None:
    c, h = api["client"], api["h"]["ua"]
    base = {"start": "2024-03-08", "end": "2024-03-14"}
    r = c.get("/v1/metrics", params=base | {"grain": "organization"}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "currency"]
    assert "different currencies" in r.json()["detail"][0]["msg"]
    r = c.get(
        "/v1/metrics", params=base | {"grain": "organization", "currency": "USD", "rate": ["EUR:1.25"]}, headers=h
    )
    assert r.status_code == 200 and r.json()["rows"][0]["currency"] == "USD"
    for params, field in (
        (base | {"grain": "country"}, "grain"),
        (base | {"start": "2024-13-01"}, "start"),
        ({"end": "2024-03-01"}, "start"),
        (base | {"end": "2024-03-01"}, "start"),
        (base | {"model": "NOPE"}, "model"),
        (base | {"rate": ["EUR:x"]}, "rate"),
    ):
        r = c.get("/v1/metrics", params=params, headers=h)
        assert r.status_code == 422, (params, r.text)
        assert field in {x for d in r.json()["detail"] for x in d["loc"]}, (params, r.json())
        assert "Traceback" not in r.text


def test_credit_endpoint(api) -> None:
    c, h, ds = api["client"], api["h"]["ub"], api["ds"]
    r = c.get(
        "/v1/credit",
        params={"start": "2024-03-01", "end": "2024-03-14", "model": ["LINEAR"], "grain": "channel"},
        headers=h,
    )
    assert r.status_code == 200
    got = {row["channel"]: row["conversions"] for row in r.json()["rows"]}
    rows = sd.credit_rows(ds, "orgB", "LINEAR").filter(pl.col("day").is_between(date(2024, 3, 1), date(2024, 3, 14)))
    expected = dict(rows.group_by("channel").agg(pl.col("w").sum()).iter_rows())
    assert got == pytest.approx(expected)


def test_rules_events_lifecycle_roles_and_tenancy(api) -> None:
    c, h = api["client"], api["h"]
    rule = {
        "name": "spend cap",
        "type": "SPEND_THRESHOLD",
        "config": {"threshold": 1, "adAccountId": "accA1"},
        "severity": "INFO",
    }
    assert c.post("/v1/alert-rules", json=rule, headers=h["uv"]).status_code == 403  # VIEWER is read-only
    bad = c.post("/v1/alert-rules", json=rule | {"config": {"threshold": -5, "adAccountId": "accB1"}}, headers=h["ua"])
    assert bad.status_code == 422
    assert {tuple(d["loc"]) for d in bad.json()["detail"]} == {
        ("body", "config", "threshold"),
        ("body", "config", "adAccountId"),
    }
    assert c.post("/v1/alert-rules", json=rule | {"type": "NOPE"}, headers=h["ua"]).status_code == 422
    created = c.post("/v1/alert-rules", json=rule, headers=h["ua"])
    assert created.status_code == 201, created.text
    rule_id = created.json()["id"]
    assert [r["id"] for r in c.get("/v1/alert-rules", headers=h["uv"]).json()] == [rule_id]
    assert c.get("/v1/alert-rules", headers=h["ub"]).json() == []
    assert c.get(f"/v1/alert-rules/{rule_id}", headers=h["ub"]).status_code == 404
    assert c.post(f"/v1/alert-rules/{rule_id}/evaluate", headers=h["ub"]).status_code == 404
    # The data set's spend is in March 2024; pretend "today" is the 14th by setting the spend of today.
    with api["engine"].begin() as conn:
        conn.execute(
            text('UPDATE "DailyAdAccountMetric" SET date = CURRENT_DATE WHERE id = :id'), {"id": "m_accA1_2024-03-14"}
        )
    ev = c.post(f"/v1/alert-rules/{rule_id}/evaluate", headers=h["ua"])
    assert ev.status_code == 200 and ev.json()["action"] == "opened", ev.text
    event_id = ev.json()["event_id"]
    listed = c.get("/v1/alerts", params={"status": "TRIGGERED"}, headers=h["uv"]).json()
    assert [e["id"] for e in listed] == [event_id] and listed[0]["severity"] in ("INFO", "CRITICAL")
    assert c.get("/v1/alerts", headers=h["ub"]).json() == []
    assert c.get(f"/v1/alerts/{event_id}", headers=h["ub"]).status_code == 404
    assert c.post(f"/v1/alerts/{event_id}/acknowledge", headers=h["ub"]).status_code == 404
    assert c.post(f"/v1/alerts/{event_id}/acknowledge", headers=h["uv"]).status_code == 403
    ack = c.post(f"/v1/alerts/{event_id}/acknowledge", headers=h["ua"])
    assert ack.status_code == 200 and ack.json()["acknowledgedBy"] == "ua" and ack.json()["acknowledgedAt"]
    again = c.post(f"/v1/alerts/{event_id}/acknowledge", headers=h["ua"])
    assert again.status_code == 409 and "ACKNOWLEDGED" in again.json()["detail"]
    assert c.post(f"/v1/alerts/{event_id}/resolve", headers=h["ua"]).json()["status"] == "RESOLVED"
    assert c.post(f"/v1/alerts/{event_id}/dismiss", headers=h["ua"]).status_code == 409
    assert c.post("/v1/alerts/evaluate", headers=h["ub"]).status_code == 200
    assert NOW.tzinfo is not None


# --- schemathesis ---------------------------------------------------------------------------------------------------
def test_openapi_spec_has_no_server_error(api) -> None:
    """Every operation of the spec, with generated valid and invalid requests, under an admin key: never a 5xx."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", api["app"])
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:
            response = case.call_and_validate(headers=api["h"]["ua"], checks=[not_a_server_error])
            assert "Traceback" not in response.text

        check()


def test_metrics_by_default_report_campaigns_with_a_row_for_touchpoints_without_one(api) -> None:
    """A tracking-only organization (no ad account, no campaign): the default report has its conversions in
    the row of campaign null, and the organization grain gives a null cost, not 0."""
    c = api["client"]
    with api["engine"].begin() as conn:
        for table, rows in sd.no_campaign_rows().items():
            for row in rows:
                conn.execute(schema.metadata.tables[table].insert(), row)
        conn.execute(text("""INSERT INTO "User" (id, email) VALUES ('un', 'un@example.com')"""))
        conn.execute(
            text(
                """INSERT INTO "Membership" (id, "userId", "organizationId", role) VALUES ('m_un', 'un', 'orgN', 'VIEWER')"""
            )
        )
        token = keys.create_api_key(conn, organization_id="orgN", user_id="un")[1]
    h = {"Authorization": f"Bearer {token}"}
    r = c.get("/v1/metrics", params={"start": "2024-03-08", "end": "2024-03-08"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["grain"] == "campaign"
    (row,) = r.json()["rows"]
    assert (row["campaign_id"], row["name"], row["conversions"], row["revenue_micros"]) == (None, None, 3.0, 15_000_000)
    assert (row["spend_micros"], row["cpa_micros"], row["roas"]) == (None, None, None)
    r = c.get("/v1/metrics", params={"start": "2024-03-08", "end": "2024-03-08", "grain": "organization"}, headers=h)
    (row,) = r.json()["rows"]
    assert (row["organization_id"], row["conversions"], row["spend_micros"], row["cpa_micros"]) == (
        "orgN",
        3.0,
        None,
        None,
    )
    # orgA's default report ends with its own row of touchpoints without a campaign.
    rows = c.get("/v1/metrics", params={"start": "2024-03-08", "end": "2024-03-14"}, headers=api["h"]["uv"]).json()[
        "rows"
    ]
    assert rows[-1]["campaign_id"] is None and rows[-1]["conversions"] > 0
    assert all(row["campaign_id"] is not None for row in rows[:-1])


def test_metrics_of_a_model_never_run_is_refused_not_zero(api) -> None:
    """A model the organization has no links of (or a conversion name none has) would report zero conversions
    and a ROAS of 0 next to real spend: 404 with the reason, not 200 with a wrong number."""
    c, h = api["client"], api["h"]["ua"]
    base = {"start": "2024-03-08", "end": "2024-03-14", "grain": "campaign"}
    ok = c.get("/v1/metrics", params=base | {"model": "LINEAR"}, headers=h)
    assert ok.status_code == 200 and sum(r["conversions"] for r in ok.json()["rows"]) > 0
    for params, what in (
        (base | {"model": "MARKOV"}, "model MARKOV"),
        (base | {"conversion_name": "purchse"}, "'purchse'"),
    ):
        r = c.get("/v1/metrics", params=params, headers=h)
        assert r.status_code == 404, (params, r.text)
        assert what in r.text and "would read 0" in r.text
    # A filter that credits nothing for a model that ran stays a report (its zeros are true).
    far = {"start": "2023-01-01", "end": "2023-01-07", "grain": "campaign", "model": "LINEAR"}
    assert c.get("/v1/metrics", params=far, headers=h).status_code == 200
