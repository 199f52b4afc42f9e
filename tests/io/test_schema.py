"""The Postgres schema and its migrations, checked against the seed document on a real server.

Expected tables, unique constraints, indexes and enum values are transcribed from
``seed/optiq-schema.md`` here, not imported from ``optiq_engine.io.schema``. Every test works in a
database of its own (created and dropped here) so the session's ``postgres_url`` database stays empty.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone

import pytest

sa = pytest.importorskip("sqlalchemy")
psycopg = pytest.importorskip("psycopg")
pytest.importorskip("alembic")

from sqlalchemy.dialects.postgresql import JSONB  # noqa: E402

from optiq_engine.errors import ConfigError, SchemaError  # noqa: E402
from optiq_engine.io import db, schema  # noqa: E402
from tests.support.pg import fresh_database  # noqa: E402

# --- the document, transcribed ----------------------------------------------------------------------
DOC_TABLES = {
    "User",
    "Account",
    "Session",
    "Organization",
    "Membership",
    "Subscription",
    "Platform",
    "AdAccount",
    "Campaign",
    "Ad",
    "GoogleAdsCredential",
    "MetaAdsCredential",
    "TikTokAdsCredential",
    "DailyAdAccountMetric",
    "DailyCampaignMetric",
    "DailyAdMetric",
    "TrackingSite",
    "TrackingEvent",
    "TouchPoint",
    "AttributionLink",
    "Journey",
    "JourneyEvent",
    "AlertRule",
    "AlertEvent",
    "IngestionJob",
    "InAppNotification",
    "OrganizationSettings",
}

#: "Unique Constraint:" lines, plus fields the document calls unique.
DOC_UNIQUE = [
    ("User", ["email"]),
    ("Session", ["sessionToken"]),
    ("Organization", ["slug"]),
    ("Membership", ["userId", "organizationId"]),
    ("AdAccount", ["organizationId", "platformId", "externalId"]),
    ("DailyAdAccountMetric", ["organizationId", "adAccountId", "date"]),
    ("TrackingSite", ["organizationId", "domain"]),
    ("TrackingEvent", ["siteId", "eventId"]),
    ("AttributionLink", ["conversionId", "touchPointId", "model"]),
    ("JourneyEvent", ["journeyId", "trackingEventId"]),
]

#: "Indexes:" lists and the "Indexing Strategy" section.
DOC_INDEXES = [
    ("TrackingEvent", ["siteId", "occurredAt"]),
    ("TrackingEvent", ["siteId", "type", "occurredAt"]),
    ("TrackingEvent", ["siteId", "anonId", "occurredAt"]),
    ("TrackingEvent", ["siteId", "utmSource", "occurredAt"]),
    ("TouchPoint", ["siteId", "anonId", "occurredAt"]),
    ("TouchPoint", ["siteId", "gclid"]),
    ("TouchPoint", ["siteId", "fbclid"]),
    ("TouchPoint", ["siteId", "ttclid"]),
    ("Journey", ["organizationId", "status", "lastActivityAt"]),
    ("Journey", ["organizationId", "anonId"]),
    ("Journey", ["organizationId", "convertedAt"]),
    ("AlertRule", ["organizationId", "status"]),
    ("AlertRule", ["status", "lastEvaluatedAt"]),
    ("AlertEvent", ["organizationId", "status", "triggeredAt"]),
    ("AlertEvent", ["organizationId", "severity", "triggeredAt"]),
    ("AlertEvent", ["alertRuleId", "triggeredAt"]),
    ("IngestionJob", ["status", "runAt"]),
    ("IngestionJob", ["organizationId", "platform", "jobType"]),
    ("DailyAdAccountMetric", ["organizationId", "date"]),
    ("DailyCampaignMetric", ["organizationId", "date"]),
    ("DailyAdMetric", ["organizationId", "date"]),
    ("DailyCampaignMetric", ["campaignId", "date"]),
    ("DailyAdMetric", ["adId", "date"]),
]

#: Enum values the document lists (AttributionModel: every model the engine offers).
DOC_ENUMS = {
    "MembershipRole": ("OWNER", "ADMIN", "MEMBER", "VIEWER"),
    "SubscriptionPlan": ("FREE", "STARTER", "PROFESSIONAL", "ENTERPRISE"),
    "SubscriptionStatus": ("ACTIVE", "TRIALING", "PAST_DUE", "CANCELED", "PAUSED"),
    "PlatformCode": ("GOOGLE_ADS", "META", "TIKTOK"),
    "AdAccountStatus": ("ACTIVE", "PAUSED", "ARCHIVED", "DELETED"),
    "EventType": ("PAGE_VIEW", "CONVERSION", "CUSTOM"),
    "AttributionModel": (
        "FIRST_TOUCH",
        "LAST_TOUCH",
        "LAST_NON_DIRECT",
        "LINEAR",
        "POSITION_BASED",
        "TIME_DECAY",
        "MARKOV",
        "SHAPLEY",
        "DATA_DRIVEN",
    ),
    "JourneyStatus": ("IN_PROGRESS", "CONVERTED", "ABANDONED"),
    "AlertType": ("SPEND_THRESHOLD", "CONVERSION_DROP", "CPA_SPIKE", "ROAS_DROP", "CLICK_ANOMALY", "CUSTOM"),
    "AlertSeverity": ("INFO", "WARNING", "CRITICAL"),
    "AlertRuleStatus": ("ACTIVE", "PAUSED", "ARCHIVED"),
    "AlertEventStatus": ("TRIGGERED", "ACKNOWLEDGED", "RESOLVED", "DISMISSED"),
    "IngestionJobType": ("DAILY_SYNC", "BACKFILL", "MANUAL"),
    "IngestionJobStatus": ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"),
}

#: (table, column) -> enum type.
DOC_ENUM_COLUMNS = {
    ("Membership", "role"): "MembershipRole",
    ("Subscription", "plan"): "SubscriptionPlan",
    ("Subscription", "status"): "SubscriptionStatus",
    ("Platform", "code"): "PlatformCode",
    ("AdAccount", "status"): "AdAccountStatus",
    ("TrackingEvent", "type"): "EventType",
    ("AttributionLink", "model"): "AttributionModel",
    ("Journey", "status"): "JourneyStatus",
    ("AlertRule", "type"): "AlertType",
    ("AlertRule", "severity"): "AlertSeverity",
    ("AlertRule", "status"): "AlertRuleStatus",
    ("AlertEvent", "status"): "AlertEventStatus",
    ("AlertEvent", "severity"): "AlertSeverity",
    ("IngestionJob", "jobType"): "IngestionJobType",
    ("IngestionJob", "status"): "IngestionJobStatus",
}

#: Foreign keys of the attribution and journey tables: (table, column) -> (target table, ON DELETE).
ATTRIBUTION_FKS = {
    ("TrackingEvent", "siteId"): ("TrackingSite", "CASCADE"),
    ("TouchPoint", "siteId"): ("TrackingSite", "CASCADE"),
    ("TouchPoint", "trackingEventId"): ("TrackingEvent", "SET NULL"),
    ("TouchPoint", "campaignId"): ("Campaign", "SET NULL"),
    ("TouchPoint", "adId"): ("Ad", "SET NULL"),
    ("AttributionLink", "conversionId"): ("TrackingEvent", "CASCADE"),
    ("AttributionLink", "touchPointId"): ("TouchPoint", "CASCADE"),
    ("Journey", "organizationId"): ("Organization", "CASCADE"),
    ("JourneyEvent", "journeyId"): ("Journey", "CASCADE"),
    ("JourneyEvent", "trackingEventId"): ("TrackingEvent", "CASCADE"),
    ("TrackingSite", "organizationId"): ("Organization", "CASCADE"),
}

MONEY_COLUMNS = [
    ("DailyAdAccountMetric", "spendMicros"),
    ("DailyAdAccountMetric", "revenueMicros"),
    ("DailyCampaignMetric", "spendMicros"),
    ("DailyAdMetric", "revenueMicros"),
    ("TrackingEvent", "valueMicros"),
    ("Journey", "conversionValue"),
    ("Subscription", "monthlySpendLimit"),
]
JSON_COLUMNS = [
    ("TrackingEvent", "properties"),
    ("AlertRule", "config"),
    ("AlertEvent", "context"),
    ("IngestionJob", "payload"),
    ("InAppNotification", "metadata"),
    ("OrganizationSettings", "alertSettings"),
    ("OrganizationSettings", "attributionSettings"),
    ("OrganizationSettings", "trackingSettings"),
]


#: The engine's own tables (not in the document): the batch run log (0002) and the API keys (0003).
ENGINE_TABLES = {"EngineRun", "ApiKey", "EngineCreditDaily", "EngineCreditState", "EngineSpendDaily"}


# --- databases --------------------------------------------------------------------------------------
@contextmanager
def engine_of(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def upgraded(postgres_url: str) -> Iterator[str]:
    """A database upgraded to head, shared by the read-only tests of this module."""
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        yield url


@pytest.fixture(scope="module")
def inspector(upgraded: str) -> Iterator[sa.Inspector]:
    with engine_of(upgraded) as engine:
        yield sa.inspect(engine)


def snapshot(url: str) -> dict[str, object]:
    """Tables, columns, indexes, foreign keys and enum types of a database, for before/after checks."""
    with engine_of(url) as engine:
        insp = sa.inspect(engine)
        tables = sorted(insp.get_table_names())
        return {
            "tables": tables,
            "columns": {t: [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)] for t in tables},
            "indexes": {t: sorted((i["name"], tuple(i["column_names"])) for i in insp.get_indexes(t)) for t in tables},
            "fks": {t: sorted(str(fk) for fk in insp.get_foreign_keys(t)) for t in tables},
            "enums": sorted((e["name"], tuple(e["labels"])) for e in insp.get_enums()),
        }


# --- URL handling (no server needed) ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p%40ss@db.example:5433/optiq", "postgresql+psycopg://u:p%40ss@db.example:5433/optiq"),
        ("postgres://u@localhost/optiq", "postgresql+psycopg://u@localhost/optiq"),
        ("postgresql+psycopg://u@localhost/optiq", "postgresql+psycopg://u@localhost/optiq"),
    ],
)
def test_normalise_url_uses_psycopg3(given: str, expected: str) -> None:
    assert db.normalise_url(given) == expected


@pytest.mark.parametrize("given", ["sqlite:///optiq.db", "not a url"])
def test_normalise_url_rejects_other_databases(given: str) -> None:
    with pytest.raises(ConfigError, match="postgresql://"):
        db.normalise_url(given)


def test_offline_migration_sql_creates_and_drops_everything() -> None:
    from alembic import command

    config = db._config("postgresql://postgres@localhost/optiq")
    config.output_buffer = up = io.StringIO()
    command.upgrade(config, "head", sql=True)
    config.output_buffer = down = io.StringIO()
    command.downgrade(config, f"{db.head()}:base", sql=True)
    for table in DOC_TABLES:
        assert f'CREATE TABLE "{table}"' in up.getvalue()
        assert f'DROP TABLE "{table}"' in down.getvalue()
    for name in DOC_ENUMS:
        assert f'CREATE TYPE "{name}"' in up.getvalue()
        assert f'DROP TYPE "{name}"' in down.getvalue()


def test_module_constants_match_the_document() -> None:
    assert set(schema.TABLE_NAMES) == DOC_TABLES | ENGINE_TABLES == set(schema.metadata.tables)
    assert set(schema.ENGINE_TABLES) == ENGINE_TABLES  # the engine's own tables, beyond the document
    assert schema.ENUM_TYPES == DOC_ENUMS
    assert (
        DOC_ENUMS["AttributionModel"],
        DOC_ENUMS["EventType"],
        DOC_ENUMS["JourneyStatus"],
    ) == (schema.ATTRIBUTION_MODELS, schema.EVENT_TYPES, schema.JOURNEY_STATUSES)
    assert schema.touch_point is schema.metadata.tables["TouchPoint"]
    assert schema.attribution_link is schema.metadata.tables["AttributionLink"]
    assert schema.organization_settings is schema.metadata.tables["OrganizationSettings"]


# --- the upgraded database, reflected ---------------------------------------------------------------
@pytest.mark.postgres
def test_upgrade_creates_every_table(upgraded: str, inspector: sa.Inspector) -> None:
    # "EngineChange": the change log incremental runs read (0008), kept by triggers, not in the schema module.
    assert set(inspector.get_table_names()) == DOC_TABLES | ENGINE_TABLES | {"EngineChange", "alembic_version"}
    assert db.current(upgraded) == db.head() == "0008"
    assert db.has_optiq_tables(upgraded)


@pytest.mark.postgres
def test_migrated_database_matches_schema_module(upgraded: str) -> None:
    assert db.compare(upgraded) == []


@pytest.mark.postgres
@pytest.mark.parametrize("table", sorted(DOC_TABLES))
def test_primary_key_is_text_id(inspector: sa.Inspector, table: str) -> None:
    pk = inspector.get_pk_constraint(table)
    assert (pk["name"], pk["constrained_columns"]) == (f"{table}_pkey", ["id"])
    id_column = next(c for c in inspector.get_columns(table) if c["name"] == "id")
    assert isinstance(id_column["type"], sa.Text)
    assert not id_column["nullable"]


@pytest.mark.postgres
@pytest.mark.parametrize(("table", "columns"), DOC_UNIQUE, ids=lambda v: v if isinstance(v, str) else "-".join(v))
def test_document_unique_constraints(inspector: sa.Inspector, table: str, columns: list[str]) -> None:
    name = f"{table}_{'_'.join(columns)}_key"
    indexes = {i["name"]: i for i in inspector.get_indexes(table)}
    assert name in indexes, f"{name} missing; {table} has {sorted(indexes)}"
    assert indexes[name]["column_names"] == columns
    assert indexes[name]["unique"]


@pytest.mark.postgres
@pytest.mark.parametrize(("table", "columns"), DOC_INDEXES, ids=lambda v: v if isinstance(v, str) else "-".join(v))
def test_document_indexes(inspector: sa.Inspector, table: str, columns: list[str]) -> None:
    name = f"{table}_{'_'.join(columns)}_idx"
    indexes = {i["name"]: i for i in inspector.get_indexes(table)}
    assert name in indexes, f"{name} missing; {table} has {sorted(indexes)}"
    assert indexes[name]["column_names"] == columns
    assert not indexes[name]["unique"]


@pytest.mark.postgres
def test_every_index_and_foreign_key_is_named_the_prisma_way(inspector: sa.Inspector) -> None:
    for table in DOC_TABLES:
        for index in inspector.get_indexes(table):
            suffix = "key" if index["unique"] else "idx"
            assert index["name"] == f"{table}_{'_'.join(index['column_names'])}_{suffix}"
        for fk in inspector.get_foreign_keys(table):
            (column,) = fk["constrained_columns"]
            assert fk["name"] == f"{table}_{column}_fkey"
            assert fk["referred_columns"] == ["id"]
        assert inspector.get_unique_constraints(table) == []  # Prisma makes unique indexes, not constraints


@pytest.mark.postgres
def test_enum_types_and_values(inspector: sa.Inspector) -> None:
    enums = {e["name"]: tuple(e["labels"]) for e in inspector.get_enums()}
    assert enums == DOC_ENUMS


@pytest.mark.postgres
def test_enum_columns(inspector: sa.Inspector) -> None:
    for (table, column), enum_name in DOC_ENUM_COLUMNS.items():
        reflected = {c["name"]: c for c in inspector.get_columns(table)}[column]
        assert reflected["type"].name == enum_name, (table, column)
        assert tuple(reflected["type"].enums) == DOC_ENUMS[enum_name]


@pytest.mark.postgres
def test_attribution_foreign_keys(inspector: sa.Inspector) -> None:
    for (table, column), (target, ondelete) in ATTRIBUTION_FKS.items():
        fks = {fk["constrained_columns"][0]: fk for fk in inspector.get_foreign_keys(table)}
        assert column in fks, f"{table}.{column} has no foreign key"
        fk = fks[column]
        assert (fk["name"], fk["referred_table"], fk["referred_columns"]) == (f"{table}_{column}_fkey", target, ["id"])
        assert fk["options"].get("ondelete") == ondelete, (table, column)


@pytest.mark.postgres
def test_tenant_tables_go_with_their_organization(inspector: sa.Inspector) -> None:
    for table in DOC_TABLES - {"User", "Account", "Session", "Organization", "Platform"}:
        fks = {fk["constrained_columns"][0]: fk for fk in inspector.get_foreign_keys(table)}
        parents = [fk for fk in fks.values() if fk["options"].get("ondelete") == "CASCADE"]
        assert parents, f"{table} is deleted with nothing"
        if "organizationId" in fks:
            assert fks["organizationId"]["referred_table"] == "Organization"
            assert fks["organizationId"]["options"]["ondelete"] == "CASCADE"


@pytest.mark.postgres
def test_column_types(upgraded: str, inspector: sa.Inspector) -> None:
    for table, column in MONEY_COLUMNS:
        assert isinstance({c["name"]: c for c in inspector.get_columns(table)}[column]["type"], sa.BigInteger)
    for table, column in JSON_COLUMNS:
        reflected = {c["name"]: c for c in inspector.get_columns(table)}[column]
        assert isinstance(reflected["type"], JSONB), (table, column)
    for table in DOC_TABLES:
        names = [c["name"] for c in inspector.get_columns(table)]
        assert {"createdAt", "updatedAt"} <= set(names), table
        assert all("_" not in n for n in names if table != "Account"), table  # camelCase (NextAuth's Account aside)
    with engine_of(upgraded) as engine, engine.connect() as conn:
        stamps = conn.execute(
            sa.text(
                "SELECT table_name, column_name, data_type, datetime_precision FROM information_schema.columns "
                "WHERE table_schema = 'public' AND data_type LIKE 'timestamp%'"
            )
        ).all()
        dates = conn.execute(
            sa.text("SELECT table_name, column_name FROM information_schema.columns WHERE data_type = 'date'")
        ).all()
    assert len(stamps) > 2 * len(DOC_TABLES)
    assert {(t, c) for t, c, kind, precision in stamps if (kind, precision) != ("timestamp with time zone", 6)} == set()
    assert {("TouchPoint", "occurredAt"), ("TrackingEvent", "occurredAt"), ("Journey", "convertedAt")} <= {
        (t, c) for t, c, _, _ in stamps
    }
    assert {(t, c) for t, c in dates if t in DOC_TABLES} == {
        ("DailyAdAccountMetric", "date"),
        ("DailyCampaignMetric", "date"),
        ("DailyAdMetric", "date"),
        ("Campaign", "startDate"),
        ("Campaign", "endDate"),
    }


@pytest.mark.postgres
def test_engine_tables_and_the_open_alert_index(inspector: sa.Inspector) -> None:
    columns = {c["name"]: (str(c["type"]), c["nullable"]) for c in inspector.get_columns("ApiKey")}
    assert columns == {
        "id": ("TEXT", False),
        "organizationId": ("TEXT", False),
        "userId": ("TEXT", False),
        "name": ("TEXT", False),
        "keyHash": ("TEXT", False),
        "revokedAt": ("TIMESTAMP", True),
        "createdAt": ("TIMESTAMP", False),
        "updatedAt": ("TIMESTAMP", False),
    }
    assert inspector.get_pk_constraint("ApiKey")["name"] == "ApiKey_pkey"
    fks = {
        fk["constrained_columns"][0]: (fk["name"], fk["referred_table"], fk["options"].get("ondelete"))
        for fk in inspector.get_foreign_keys("ApiKey")
    }
    assert fks == {
        "organizationId": ("ApiKey_organizationId_fkey", "Organization", "CASCADE"),
        "userId": ("ApiKey_userId_fkey", "User", "CASCADE"),
    }
    indexes = {i["name"]: (i["column_names"], i["unique"]) for i in inspector.get_indexes("ApiKey")}
    assert indexes == {
        "ApiKey_organizationId_idx": (["organizationId"], False),
        "ApiKey_userId_idx": (["userId"], False),
    }
    (open_index,) = [i for i in inspector.get_indexes("AlertEvent") if i["name"] == "AlertEvent_alertRuleId_key"]
    assert open_index["unique"] and open_index["column_names"] == ["alertRuleId"]
    where = open_index["dialect_options"]["postgresql_where"]
    assert "TRIGGERED" in where and "ACKNOWLEDGED" in where and "RESOLVED" not in where


@pytest.mark.postgres
def test_a_rule_has_at_most_one_open_event(upgraded: str) -> None:
    def event(conn: sa.Connection, n: int, status: str) -> None:
        conn.execute(
            schema.alert_event.insert().values(
                id=f"ae_{n}",
                organizationId="org_open",
                alertRuleId="ar_open",
                status=status,
                severity="WARNING",
                title="t",
                message="m",
            )
        )

    with engine_of(upgraded) as engine:
        try:
            with engine.begin() as conn:
                _tenant(conn, "open")
                conn.execute(
                    schema.alert_rule.insert().values(id="ar_open", organizationId="org_open", name="r", type="CUSTOM")
                )
                for n, status in enumerate(["RESOLVED", "DISMISSED", "RESOLVED", "TRIGGERED"]):
                    event(conn, n, status)  # closed events are unlimited; one open one
            for status in ("TRIGGERED", "ACKNOWLEDGED"):
                with pytest.raises(sa.exc.IntegrityError, match="AlertEvent_alertRuleId_key"), engine.begin() as conn:
                    event(conn, 10, status)
            with engine.begin() as conn:
                conn.execute(sa.text("""UPDATE "AlertEvent" SET status = 'ACKNOWLEDGED' WHERE id = 'ae_3'"""))
                conn.execute(sa.text("""UPDATE "AlertEvent" SET status = 'RESOLVED' WHERE id = 'ae_3'"""))
                event(conn, 11, "TRIGGERED")  # the previous one was closed: a new one may open
        finally:
            with engine.begin() as conn:
                conn.execute(schema.organization.delete().where(schema.organization.c.id == "org_open"))


# --- values -----------------------------------------------------------------------------------------
def _tenant(conn: sa.Connection, suffix: str) -> dict[str, str]:
    """An organization with a tracking site; returns their ids."""
    ids = {"org": f"org_{suffix}", "site": f"site_{suffix}"}
    conn.execute(schema.organization.insert().values(id=ids["org"], name="Acme", slug=f"acme-{suffix}"))
    conn.execute(
        schema.tracking_site.insert().values(
            id=ids["site"], organizationId=ids["org"], name="Acme", domain="acme.example", publicKey=f"pk_{suffix}"
        )
    )
    return ids


@pytest.mark.postgres
def test_values_round_trip_through_touchpoint_and_attribution_link(upgraded: str) -> None:
    big = 2**63 - 1
    occurred = datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC)
    paris = datetime(2024, 3, 1, 1, 0, 0, 1, tzinfo=timezone(timedelta(hours=1)))  # 00:00:00.000001 UTC
    text_value = "Ünïcødé ✓ 日本語 🙂 ' \" \\ %s"
    touch = {
        "id": "tp_ü_1",
        "siteId": "site_rt",
        "anonId": text_value,
        "sessionId": None,
        "occurredAt": occurred,
        "gclid": "Cj0KCQ–ÿ",
        "fbclid": None,
        "ttclid": None,
        "utmSource": "google",
        "utmMedium": None,
        "utmCampaign": "été_2024",
        "platformCode": "GOOGLE_ADS",
        "campaignId": None,
        "adId": None,
        "trackingEventId": None,
    }
    with engine_of(upgraded) as engine:
        try:
            with engine.begin() as conn:
                _tenant(conn, "rt")
                conn.execute(
                    schema.tracking_event.insert().values(
                        id="ev_1",
                        siteId="site_rt",
                        eventId="e-1",
                        type="CONVERSION",
                        name="purchase ✓",
                        occurredAt=paris,
                        anonId=text_value,
                        valueMicros=big,
                        properties={"items": ["ü", 1, None]},
                    )
                )
                conn.execute(schema.touch_point.insert().values(**touch))
                conn.execute(
                    schema.attribution_link.insert().values(
                        id="al_1",
                        conversionId="ev_1",
                        touchPointId="tp_ü_1",
                        model="DATA_DRIVEN",
                        weight=1 / 3,
                        position=1,
                        touchPointCount=2**31 - 1,
                    )
                )
            with engine.connect() as conn:
                row = conn.execute(sa.select(schema.touch_point).where(schema.touch_point.c.id == "tp_ü_1")).one()
                link = conn.execute(sa.select(schema.attribution_link)).one()
                event = conn.execute(sa.select(schema.tracking_event)).one()
            got = row._asdict()
            assert {k: got[k] for k in touch} == touch
            assert got["occurredAt"].microsecond == 999_999
            assert got["createdAt"].tzinfo is not None
            assert link.weight == 1 / 3 and math.isclose(link.weight * 3, 1.0)
            assert (link.model, link.position, link.touchPointCount) == ("DATA_DRIVEN", 1, 2**31 - 1)
            assert event.valueMicros == big
            assert event.occurredAt == paris and event.occurredAt.astimezone(UTC).microsecond == 1
            assert event.properties == {"items": ["ü", 1, None]}
            assert event.name == "purchase ✓"
            with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:  # out of bigint range: refused
                conn.execute(
                    schema.tracking_event.update()
                    .where(schema.tracking_event.c.id == "ev_1")
                    .values(valueMicros=big + 1)
                )
            with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:  # not an AttributionModel value
                conn.execute(sa.text("UPDATE \"AttributionLink\" SET model = 'U_SHAPED'"))
        finally:
            with engine.begin() as conn:
                conn.execute(schema.organization.delete().where(schema.organization.c.id == "org_rt"))


@pytest.mark.postgres
def test_deletes_cascade_to_links_and_tenant_data(upgraded: str) -> None:
    with engine_of(upgraded) as engine:
        with engine.begin() as conn:
            ids = _tenant(conn, "cascade")
            t0 = datetime(2024, 1, 1, tzinfo=UTC)
            for i in range(3):
                conn.execute(
                    schema.tracking_event.insert().values(
                        id=f"ev_c{i}",
                        siteId=ids["site"],
                        eventId=f"e{i}",
                        type="CONVERSION" if i else "PAGE_VIEW",
                        occurredAt=t0 + timedelta(hours=i),
                        anonId="a",
                    )
                )
                conn.execute(
                    schema.touch_point.insert().values(
                        id=f"tp_c{i}",
                        siteId=ids["site"],
                        anonId="a",
                        occurredAt=t0 + timedelta(hours=i),
                        trackingEventId=f"ev_c{i}",
                    )
                )
            for i, (conversion, touch) in enumerate([("ev_c1", "tp_c0"), ("ev_c2", "tp_c1"), ("ev_c2", "tp_c2")]):
                conn.execute(
                    schema.attribution_link.insert().values(
                        id=f"al_c{i}",
                        conversionId=conversion,
                        touchPointId=touch,
                        model="LINEAR",
                        weight=1.0,
                        position=1,
                        touchPointCount=1,
                    )
                )
            conn.execute(
                schema.journey.insert().values(
                    id="j_c", organizationId=ids["org"], anonId="a", startedAt=t0, lastActivityAt=t0
                )
            )
            conn.execute(
                schema.journey_event.insert().values(
                    id="je_c", journeyId="j_c", trackingEventId="ev_c0", sequenceNumber=1, occurredAt=t0
                )
            )

        def count(conn: sa.Connection, table: sa.Table) -> int:
            return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()

        with engine.begin() as conn:
            conn.execute(schema.touch_point.delete().where(schema.touch_point.c.id == "tp_c0"))
            assert count(conn, schema.attribution_link) == 2  # the touchpoint's link went with it
            conn.execute(schema.tracking_event.delete().where(schema.tracking_event.c.id == "ev_c2"))
            assert count(conn, schema.attribution_link) == 0  # the conversion's links went with it
            kept = sa.select(schema.touch_point.c.trackingEventId).where(schema.touch_point.c.id == "tp_c2")
            assert conn.execute(kept).scalar_one() is None  # the touchpoint stays, its event reference is cleared
            conn.execute(schema.journey.delete())
            assert count(conn, schema.journey_event) == 0
            assert count(conn, schema.tracking_event) == 2  # a journey does not own its events
            conn.execute(schema.organization.delete().where(schema.organization.c.id == ids["org"]))
            for table in schema.metadata.sorted_tables:
                assert count(conn, table) == 0, table.name


# --- migrations -------------------------------------------------------------------------------------
@pytest.mark.postgres
def test_upgrade_downgrade_upgrade_round_trip(postgres_url: str) -> None:
    with fresh_database(postgres_url) as url:
        assert db.current(url) is None and not db.has_optiq_tables(url)
        db.upgrade(url)
        first = snapshot(url)
        db.upgrade(url)  # at head already: nothing to do
        assert snapshot(url) == first
        db.downgrade(url, "base")
        assert db.current(url) is None
        assert not db.has_optiq_tables(url)
        left = snapshot(url)
        assert left["tables"] == ["alembic_version"] and left["enums"] == []
        db.upgrade(url, "head")
        assert db.current(url) == db.head()
        assert snapshot(url) == first
        assert db.compare(url) == []


@pytest.mark.postgres
def test_migration_0003_down_and_up_and_over_a_service_made_api_key_table(postgres_url: str) -> None:
    with fresh_database(postgres_url) as url, engine_of(url) as engine:
        db.upgrade(url)
        at_head = snapshot(url)
        db.downgrade(url, "0002")
        assert db.current(url) == "0002"
        down = snapshot(url)
        assert "ApiKey" not in down["tables"]
        assert "AlertEvent_alertRuleId_key" not in {name for name, _ in down["indexes"]["AlertEvent"]}
        # What the service created on its own before 0003 (CREATE TABLE IF NOT EXISTS), with a key in it.
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    """CREATE TABLE "ApiKey" (id text PRIMARY KEY,
                "organizationId" text NOT NULL REFERENCES "Organization"(id) ON DELETE CASCADE ON UPDATE CASCADE,
                "userId" text NOT NULL REFERENCES "User"(id) ON DELETE CASCADE ON UPDATE CASCADE,
                name text NOT NULL, "keyHash" text NOT NULL, "revokedAt" timestamp(6) with time zone,
                "createdAt" timestamp(6) with time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
                "updatedAt" timestamp(6) with time zone NOT NULL DEFAULT CURRENT_TIMESTAMP)"""
                )
            )
            conn.execute(sa.text('CREATE INDEX "ApiKey_organizationId_idx" ON "ApiKey" ("organizationId")'))
            _tenant(conn, "keys")
            conn.execute(schema.user.insert().values(id="u_keys", email="k@example.com"))
            conn.execute(
                sa.text("""INSERT INTO "ApiKey" VALUES ('k1', 'org_keys', 'u_keys', 'api', 'h', NULL, now(), now())""")
            )
        db.upgrade(url)
        assert db.current(url) == db.head() and db.compare(url) == []
        assert snapshot(url) == at_head
        with engine.connect() as conn:
            assert conn.execute(sa.text('SELECT id FROM "ApiKey"')).scalars().all() == ["k1"]


@pytest.mark.postgres
def test_platform_database_is_detected_refused_and_stamped(postgres_url: str) -> None:
    with fresh_database(postgres_url) as url, engine_of(url) as engine:
        schema.metadata.create_all(engine)  # as the platform's Prisma migrations would
        with engine.begin() as conn:
            conn.execute(sa.text('CREATE TABLE "_prisma_migrations" (id text PRIMARY KEY)'))
            conn.execute(schema.organization.insert().values(id="org_p", name="Platform org", slug="platform"))
        before = snapshot(url)
        assert db.has_optiq_tables(url)
        assert db.current(url) is None

        with pytest.raises(SchemaError, match="optiq db stamp") as raised:
            db.upgrade(url)
        assert "Prisma" in str(raised.value) and "Nothing was created or dropped" in str(raised.value)
        assert isinstance(raised.value, ValueError)
        assert snapshot(url) == before  # untouched: no alembic_version, no table or type added or dropped
        with engine.connect() as conn:
            assert conn.execute(sa.select(schema.organization.c.slug)).scalars().all() == ["platform"]

        assert db.compare(url) == []
        db.stamp(url)
        assert db.current(url) == db.head()
        db.upgrade(url)  # now a no-op
        after = snapshot(url)
        assert after["tables"] == sorted([*before["tables"], "alembic_version"])
        for part in ("columns", "indexes", "fks"):
            after[part].pop("alembic_version")
        assert {**after, "tables": before["tables"]} == before  # stamping added the version table only
        with engine.connect() as conn:
            assert conn.execute(sa.select(schema.organization.c.slug)).scalars().all() == ["platform"]


@pytest.mark.postgres
def test_a_platform_database_without_the_engines_tables_is_stamped_at_0001_and_upgraded(
    postgres_url: str, caplog
) -> None:
    with fresh_database(postgres_url) as url, engine_of(url) as engine:
        platform_tables = [t for t in schema.metadata.sorted_tables if t.name not in schema.ENGINE_TABLES]
        schema.metadata.create_all(engine, tables=platform_tables)  # what Prisma makes: no engine tables
        with engine.begin() as conn:
            conn.execute(sa.text('DROP INDEX "AlertEvent_alertRuleId_key"'))  # nor the engine's index (0003)
            _tenant(conn, "p")
            conn.execute(
                sa.text(
                    """INSERT INTO "Platform" (id, code, name) VALUES ('plt_p', 'GOOGLE_ADS', 'Google Ads');
                INSERT INTO "AdAccount" (id, "organizationId", "platformId", "externalId") VALUES ('acc_p', 'org_p', 'plt_p', 'x');
                INSERT INTO "DailyAdAccountMetric" (id, "organizationId", "adAccountId", date, clicks, "spendMicros", "updatedAt")
                VALUES ('m1', 'org_p', 'acc_p', '2024-05-01', 7, 5000000, now())"""
                )
            )
        with caplog.at_level(logging.WARNING):
            assert db.stamp(url) == "0001"
        assert not [
            r for r in caplog.records if r.levelno >= logging.WARNING
        ]  # the engine's tables are expected missing
        db.upgrade(url)
        assert db.current(url) == db.head() and db.compare(url) == []
        with engine.begin() as conn:  # the spend summary was filled from the rows there, and follows new ones
            conn.execute(
                sa.text(
                    """INSERT INTO "DailyAdAccountMetric" (id, "organizationId", "adAccountId", date, clicks, "spendMicros", "updatedAt")
                VALUES ('m2', 'org_p', 'acc_p', '2024-05-02', 1, 1000000, now())"""
                )
            )
            rows = conn.execute(
                sa.text('SELECT span, day, clicks, "spendMicros" FROM "EngineSpendDaily" ORDER BY span, day')
            ).all()
        assert [(r[0], str(r[1]), r[2], int(r[3])) for r in rows] == [
            (1, "2024-05-01", 7, 5000000),
            (1, "2024-05-02", 1, 1000000),
            (2, "2024-05-01", 8, 6000000),
            (4, "2024-05-01", 8, 6000000),
            (8, "2024-04-27", 8, 6000000),
            (16, "2024-04-27", 8, 6000000),
            (32, "2024-04-27", 8, 6000000),
            (64, "2024-04-27", 8, 6000000),
        ]


@pytest.mark.postgres
def test_stamp_refuses_a_database_without_optiq_tables(postgres_url: str) -> None:
    with fresh_database(postgres_url) as url:
        with pytest.raises(SchemaError, match="optiq db upgrade"):
            db.stamp(url)
        assert db.current(url) is None
        assert not db.has_optiq_tables(url)


@pytest.mark.postgres
def test_compare_reports_what_differs(postgres_url: str) -> None:
    with fresh_database(postgres_url) as url, engine_of(url) as engine:
        schema.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(sa.text('ALTER TABLE "TouchPoint" ALTER COLUMN "occurredAt" TYPE timestamp(3) with time zone'))
            conn.execute(sa.text('DROP INDEX "TouchPoint_siteId_gclid_idx"'))
            conn.execute(sa.text("ALTER TYPE \"PlatformCode\" ADD VALUE 'META_ADS'"))
        differences = "\n".join(db.compare(url))
        assert '"TouchPoint"."occurredAt"' in differences and "timestamp(3)" in differences
        assert "TouchPoint_siteId_gclid_idx" in differences
        assert "META_ADS" in differences
        assert len(db.compare(url)) == 3
