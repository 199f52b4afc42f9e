"""End to end: `optiq db upgrade` -> the platform's data -> `optiq run` -> `optiq serve`.

The synthetic data set goes in with ``write_synthetic`` (organizations, sites, conversions, touchpoints);
the fixture adds what the platform would have besides: ad accounts in two time zones, campaigns (their
``externalId`` the touchpoints' ``utm_campaign``), ads, the touchpoints' ``campaignId``/``adId``, and
daily spend at the three levels. ``optiq run`` writes the links; the API's credit and metrics must then
return the engine's attributed conversions and revenue exactly as a Polars recomputation from the
written ``AttributionLink`` rows gives them, for the key's organization only. Every operation of the
OpenAPI spec refuses a request without a key, and another organization's key gets 404 for this one's
resources. Last, a real ``optiq serve`` process answers the same as the in-process app.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import httpx
import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, pool, text
from typer.testing import CliRunner

import optiq_engine as oq
from benchmarks.service_bench import served as optiq_serve
from optiq_engine.channels import derive_channels
from optiq_engine.cli import app as cli
from optiq_engine.io import db, schema, seed
from optiq_engine.service import keys
from optiq_engine.service.api import create_app
from tests.support.pg import fresh_database
from tests.support.pg_data import retag

pytestmark = pytest.mark.postgres
runner = CliRunner()
ORG, OTHER = "orgE", "orgF"
MODELS = ["LAST_TOUCH", "LINEAR", "POSITION_BASED"]
#: (account id, platform id, platform code, time zone): two time zones, so local conversion days differ.
ACCOUNTS = [("acc_g", "plt_g", "GOOGLE_ADS", "America/New_York"), ("acc_m", "plt_m", "META", "Asia/Tokyo")]


def _platform_rows(conn, org: str, rng: np.random.Generator) -> dict[str, pl.DataFrame]:
    """Ad accounts, campaigns (one per utm_campaign), two ads each; touchpoints resolved; daily spend."""
    accounts = [(f"{org}_{a}", p, code, tz) for a, p, code, tz in ACCOUNTS]
    for acc, plat, _code, tz in accounts:
        conn.execute(
            schema.ad_account.insert().values(
                id=acc,
                organizationId=org,
                platformId=plat,
                externalId=f"x_{acc}",
                name=f"Account {acc}",
                currency="USD",
                timezone=tz,
            )
        )
    names = (
        conn.execute(
            text(
                'SELECT DISTINCT tp."utmCampaign" FROM "TouchPoint" tp JOIN "TrackingSite" s ON s.id = tp."siteId" '
                'WHERE s."organizationId" = :o AND tp."utmCampaign" IS NOT NULL ORDER BY 1'
            ),
            {"o": org},
        )
        .scalars()
        .all()
    )
    campaigns, ads = [], []
    for i, name in enumerate(names):
        cid = f"{org}_c{i}"
        campaigns.append(
            {"id": cid, "organizationId": org, "adAccountId": accounts[i % 2][0], "externalId": name, "name": name}
        )
        ads += [
            {
                "id": f"{cid}_ad{k}",
                "organizationId": org,
                "campaignId": cid,
                "externalId": f"{name}-{k}",
                "name": f"{name} {k}",
            }
            for k in (0, 1)
        ]
    conn.execute(schema.campaign.insert(), campaigns)
    conn.execute(schema.ad.insert(), ads)
    # The platform resolved each tagged touchpoint to its campaign; two thirds of them to an ad as well.
    conn.execute(
        text(
            'UPDATE "TouchPoint" tp SET "campaignId" = c.id, "adId" = CASE WHEN abs(hashtext(tp.id)) % 3 = 0 THEN NULL '
            "ELSE c.id || '_ad' || (abs(hashtext(tp.id)) % 2)::text END "
            'FROM "Campaign" c, "TrackingSite" s WHERE c."organizationId" = :o AND c."externalId" = tp."utmCampaign" '
            'AND s.id = tp."siteId" AND s."organizationId" = :o'
        ),
        {"o": org},
    )
    first, last = conn.execute(
        text(
            'SELECT min(e."occurredAt")::date, max(e."occurredAt")::date FROM "TrackingEvent" e '
            'JOIN "TrackingSite" s ON s.id = e."siteId" WHERE s."organizationId" = :o'
        ),
        {"o": org},
    ).one()
    days = [first + timedelta(days=d) for d in range(-1, (last - first).days + 2)]
    ad_rows = []
    for ad in ads:
        for day in days:
            imp = int(rng.integers(100, 2000))
            clk = int(rng.integers(0, imp // 10 + 1))
            ad_rows.append(
                {
                    "id": f"m_{ad['id']}_{day}",
                    "organizationId": org,
                    "adId": ad["id"],
                    "date": day,
                    "impressions": imp,
                    "clicks": clk,
                    "spendMicros": clk * int(rng.integers(50_000, 2_000_000)),
                }
            )
    conn.execute(schema.daily_ad_metric.insert(), ad_rows)
    daily = pl.DataFrame(ad_rows).join(pl.DataFrame(ads).select(pl.col("id").alias("adId"), "campaignId"), on="adId")
    daily = daily.join(pl.DataFrame(campaigns).select(pl.col("id").alias("campaignId"), "adAccountId"), on="campaignId")
    for table, key in ((schema.daily_campaign_metric, "campaignId"), (schema.daily_ad_account_metric, "adAccountId")):
        level = daily.group_by(key, "date").agg(pl.col("impressions", "clicks", "spendMicros").sum())
        level = level.with_columns(
            pl.format("m_{}_{}", pl.col(key), pl.col("date")).alias("id"), pl.lit(org).alias("organizationId")
        )
        conn.execute(table.insert(), level.to_dicts())
    return {
        "daily_campaign": daily.group_by("campaignId", "date").agg(pl.col("impressions", "clicks", "spendMicros").sum())
    }


@pytest.fixture(scope="module")
def served(postgres_url: str) -> Iterator[dict]:
    with fresh_database(postgres_url) as url:
        upgraded = runner.invoke(cli, ["db", "upgrade", "--database-url", url])
        assert upgraded.exit_code == 0, upgraded.output
        for org, n, s in ((ORG, 400, 41), (OTHER, 150, 42)):
            seed.write_synthetic(url, retag(oq.synthetic.generate(n_users=n, seed=s), org))
        engine = create_engine(db.normalise_url(url), poolclass=pool.NullPool)
        rng = np.random.default_rng(5)
        tokens: dict[str, str] = {}
        with engine.begin() as conn:
            conn.execute(schema.platform.insert(), [{"id": p, "code": c, "name": c} for _, p, c, _ in ACCOUNTS])
            spend = _platform_rows(conn, ORG, rng)
            _platform_rows(conn, OTHER, rng)
            for user, org, role in (("ue", ORG, "ADMIN"), ("uv", ORG, "VIEWER"), ("uf", OTHER, "OWNER")):
                conn.execute(schema.user.insert().values(id=user, email=f"{user}@example.com"))
                conn.execute(
                    schema.membership.insert().values(id=f"m_{user}", userId=user, organizationId=org, role=role)
                )
                tokens[user] = keys.create_api_key(conn, organization_id=org, user_id=user)[1]
        for org in (ORG, OTHER):
            ran = runner.invoke(
                cli, ["run", "--database-url", url, "--org", org, "--full", *sum((["--models", m] for m in MODELS), [])]
            )
            assert ran.exit_code == 0, ran.output
        app_engine = create_engine(db.normalise_url(url))
        app = create_app(engine=app_engine)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield {
                "url": url,
                "client": client,
                "app": app,
                "engine": engine,
                "spend": spend["daily_campaign"],
                "tokens": tokens,
                "h": {u: {"Authorization": f"Bearer {t}"} for u, t in tokens.items()},
            }
        app_engine.dispose()
        engine.dispose()


def _links(engine, org: str) -> pl.DataFrame:
    """Every written link of ``org`` with what the service keys it by, recomputed here (Polars)."""
    with engine.connect() as conn:
        rows = (
            conn.execute(
                text(
                    'SELECT l.model::text AS model, l."conversionId" AS conversion_id, l.weight, e."occurredAt" AS occurred_at, e."valueMicros" AS value, '
                    'tp."utmSource" AS utm_source, tp."utmMedium" AS utm_medium, tp.gclid, tp.fbclid, tp.ttclid, '
                    'tp."campaignId" AS campaign_id, tp."adId" AS ad_id '
                    'FROM "AttributionLink" l JOIN "TrackingEvent" e ON e.id = l."conversionId" '
                    'JOIN "TouchPoint" tp ON tp.id = l."touchPointId" JOIN "TrackingSite" s ON s.id = e."siteId" '
                    'WHERE s."organizationId" = :o'
                ),
                {"o": org},
            )
            .mappings()
            .all()
        )
        campaigns = pl.DataFrame(
            conn.execute(
                text(
                    'SELECT c.id AS campaign_id, a.timezone FROM "Campaign" c JOIN "AdAccount" a ON a.id = c."adAccountId" '
                    'WHERE c."organizationId" = :o'
                ),
                {"o": org},
            )
            .mappings()
            .all()
        )
    links = pl.DataFrame([dict(r) for r in rows], infer_schema_length=None).join(
        campaigns, on="campaign_id", how="left"
    )
    links = links.with_columns(derive_channels(links).alias("channel"), pl.col("timezone").fill_null("UTC"))
    parts = [
        part.with_columns(pl.col("occurred_at").dt.convert_time_zone(tz).dt.date().alias("day"))
        for (tz,), part in links.group_by("timezone")
    ]
    return pl.concat(parts).with_columns(
        (pl.col("weight") * pl.col("value").cast(pl.Float64)).fill_null(0.0).alias("r")
    )


def _expected(
    links: pl.DataFrame, key: str, start: date, end: date, *, null_key: bool = False
) -> dict[tuple[str | None, str], tuple[float, float]]:
    """(key, model) -> (conversions, revenue) of the links; ``null_key``: with the links of no key (None)."""
    got = links.filter(pl.col("day").is_between(start, end) & (pl.col(key).is_not_null() | null_key))
    agg = got.group_by(key, "model").agg(pl.col("weight").sum(), pl.col("r").sum())
    return {(k, m): (w, r) for k, m, w, r in agg.iter_rows()}


def _period(links: pl.DataFrame) -> tuple[date, date]:
    return links["day"].min(), links["day"].max()


def test_credit_equals_the_recomputation_from_the_written_links(served) -> None:
    c, h = served["client"], served["h"]
    links = _links(served["engine"], ORG)
    assert links.height > 1000 and set(links["model"].unique()) == set(MODELS)
    assert links["campaign_id"].null_count() < links.height  # some credit lands on campaigns, some is organic
    start, end = _period(links)
    mid = start + (end - start) / 2
    for key, grain, (lo, hi) in (
        ("campaign_id", "campaign", (start, end)),
        ("ad_id", "ad", (start, end)),
        ("channel", "channel", (start, end)),
        ("campaign_id", "campaign", (mid, end)),
    ):
        r = c.get(
            "/v1/credit", params={"start": lo.isoformat(), "end": hi.isoformat(), "grain": grain}, headers=h["uv"]
        )
        assert r.status_code == 200, r.text
        got = {(row[key], row["model"]): (row["conversions"], row["revenue_micros"]) for row in r.json()["rows"]}
        expected = _expected(links, key, lo, hi)
        assert got.keys() == expected.keys(), grain
        for k, (w, rev) in expected.items():
            assert got[k][0] == pytest.approx(w, rel=1e-12), (grain, k)
            assert abs(got[k][1] - rev) <= 1, (grain, k)  # micros, rounded once
    # The engine's total credit per model: one conversion's worth per attributed conversion.
    r = c.get(
        "/v1/credit",
        params={"start": start.isoformat(), "end": end.isoformat(), "grain": "organization"},
        headers=h["ue"],
    )
    totals = {row["model"]: row["conversions"] for row in r.json()["rows"]}
    n_conversions = links.filter(pl.col("model") == "LAST_TOUCH")["conversion_id"].n_unique()  # a link per touchpoint
    assert totals == pytest.approx(dict.fromkeys(MODELS, n_conversions))


def test_metrics_report_the_engines_conversions_and_the_platform_spend(served) -> None:
    c, h = served["client"], served["h"]
    links = _links(served["engine"], ORG)
    start, end = _period(links)
    lo = end - timedelta(days=29)
    r = c.get(
        "/v1/metrics",
        params={"start": lo.isoformat(), "end": end.isoformat(), "grain": "campaign", "model": "LINEAR"},
        headers=h["uv"],
    )
    assert r.status_code == 200, r.text
    rows = {row["campaign_id"]: row for row in r.json()["rows"]}
    # The credit of touchpoints without a campaign is the row of campaign None (no spend, no currency).
    credit = {k: v for (k, m), v in _expected(links, "campaign_id", lo, end, null_key=True).items() if m == "LINEAR"}
    prev = {
        k: v
        for (k, m), v in _expected(
            links, "campaign_id", lo - timedelta(days=30), lo - timedelta(days=1), null_key=True
        ).items()
        if m == "LINEAR"
    }
    spend = (
        served["spend"]
        .filter(pl.col("date").is_between(lo, end))
        .group_by("campaignId")
        .agg(pl.col("spendMicros", "clicks").sum())
    )
    spend = {k: (s, k2) for k, s, k2 in spend.iter_rows()}
    assert set(rows) == set(credit) | set(prev) | set(spend)
    for cid, row in rows.items():
        w, rev = credit.get(cid, (0.0, 0.0))
        assert row["conversions"] == pytest.approx(w, rel=1e-12, abs=1e-12), cid
        assert abs(row["revenue_micros"] - rev) <= 1, cid
        assert row["conversions_previous"] == pytest.approx(prev.get(cid, (0.0, 0.0))[0], rel=1e-12, abs=1e-12), cid
        if cid is None:
            assert (row["spend_micros"], row["clicks"], row["currency"], row["cpa_micros"]) == (None, None, None, None)
            continue
        assert (row["spend_micros"], row["clicks"]) == spend.get(cid, (0, 0)), cid
        assert row["currency"] == "USD" and row["name"]
        if w:
            assert row["cpa_micros"] == pytest.approx(row["spend_micros"] / w, abs=1)
        else:
            assert row["cpa_micros"] is None  # division by zero is null
    assert sum(row["conversions"] for row in rows.values()) > 0


def test_every_operation_needs_a_key_and_other_organizations_are_404(served) -> None:
    c, h = served["client"], served["h"]
    spec = c.get("/openapi.json").json()
    operations = [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops]
    assert len(operations) >= 12
    for method, path in operations:
        if path == "/v1/health":
            continue
        r = c.request(
            method,
            path.replace("{event_id}", "x").replace("{rule_id}", "x"),
            params={"start": "2026-01-01", "end": "2026-01-31"},
        )
        assert r.status_code == 401, (method, path, r.text)
    rule = c.post(
        "/v1/alert-rules", json={"name": "cap", "type": "SPEND_THRESHOLD", "config": {"threshold": 1}}, headers=h["ue"]
    )
    assert rule.status_code == 201, rule.text
    rule_id = rule.json()["id"]
    assert (
        c.post(
            "/v1/alert-rules",
            json={"name": "no", "type": "SPEND_THRESHOLD", "config": {"threshold": 1}},
            headers=h["uv"],
        ).status_code
        == 403
    )
    for method, path in (("GET", f"/v1/alert-rules/{rule_id}"), ("POST", f"/v1/alert-rules/{rule_id}/evaluate")):
        assert c.request(method, path, headers=h["uf"]).status_code == 404
        assert c.request(method, path, headers=h["ue"]).status_code == 200
    assert c.get("/v1/alert-rules", headers=h["uf"]).json() == []
    # The other organization's reports hold its own campaigns only.
    links = _links(served["engine"], ORG)
    start, end = _period(links)
    params = {"start": start.isoformat(), "end": end.isoformat(), "grain": "campaign"}
    mine = {row["campaign_id"] for row in c.get("/v1/credit", params=params, headers=h["ue"]).json()["rows"]}
    theirs = {row["campaign_id"] for row in c.get("/v1/credit", params=params, headers=h["uf"]).json()["rows"]}
    assert (
        mine
        and theirs
        and all(k.startswith(f"{ORG}_") for k in mine)
        and all(k.startswith(f"{OTHER}_") for k in theirs)
    )
    theirs = {row["campaign_id"] for row in c.get("/v1/metrics", params=params, headers=h["uf"]).json()["rows"]}
    assert theirs - {None} and all(k.startswith(f"{OTHER}_") for k in theirs - {None})


def test_optiq_serve_answers_like_the_app(served) -> None:
    with optiq_serve(served["url"]) as base:
        links = _links(served["engine"], ORG)
        start, end = _period(links)
        params = {
            "start": (end - timedelta(days=13)).isoformat(),
            "end": end.isoformat(),
            "grain": "ad",
            "model": "POSITION_BASED",
        }
        over_http = httpx.get(f"{base}/v1/metrics", params=params, headers=served["h"]["uv"], timeout=30)
        in_process = served["client"].get("/v1/metrics", params=params, headers=served["h"]["uv"])
        assert over_http.status_code == 200 and over_http.json() == in_process.json()
        assert over_http.json()["rows"]
        assert httpx.get(f"{base}/v1/metrics", params=params, timeout=10).status_code == 401
