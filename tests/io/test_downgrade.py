"""Downgrades that would lose data are refused unless forced (optiq db downgrade ... --force)."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from optiq_engine.cli import app
from optiq_engine.errors import OptiqError
from optiq_engine.io import db, schema
from tests.support.pg import fresh_database

pytestmark = pytest.mark.postgres
runner = CliRunner()


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _with_data(url: str) -> None:
    """An organization with one tracking event and one finished run (a watermark)."""
    with psycopg.connect(_dsn(url)) as conn:
        conn.execute("""INSERT INTO "Organization" (id, name, slug) VALUES ('org_d', 'D', 'd')""")
        conn.execute(
            """INSERT INTO "TrackingSite" (id, "organizationId", name, domain, "publicKey")
               VALUES ('site_d', 'org_d', 'web', 'd.example', 'pk_d')"""
        )
        conn.execute(
            """INSERT INTO "TrackingEvent" (id, "siteId", "eventId", "anonId", type, "occurredAt")
               VALUES ('ev_d', 'site_d', 'e1', 'anon', 'PAGE_VIEW', now())"""
        )
        conn.execute(
            """INSERT INTO "EngineRun" (id, "organizationId", mode, status, watermark)
               VALUES ('run_d', 'org_d', 'FULL', 'SUCCEEDED', now())"""
        )


def test_downgrade_base_without_force_on_a_database_with_data_exits_2_and_keeps_every_table(postgres_url: str) -> None:
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        _with_data(url)
        before = _tables(url)
        result = runner.invoke(app, ["db", "downgrade", "base", "--database-url", url])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ")
        message = lines[0]
        for shown in ('"TrackingEvent" (1 row)', '"EngineRun" (1 row)', '"Organization" (1 row)', "--force"):
            assert shown in message
        assert "TouchPoint" not in message  # empty tables are not listed
        assert _tables(url) == before and db.current(url) == db.head()


@pytest.mark.parametrize(
    ("target", "table"), [("0003", "EngineCreditState"), ("0002", "ApiKey"), ("0001", "EngineRun")]
)
def test_downgrades_that_drop_engine_tables_with_rows_are_refused(postgres_url: str, target: str, table: str) -> None:
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        _with_data(url)
        with psycopg.connect(_dsn(url)) as conn:
            conn.execute("""INSERT INTO "User" (id, email) VALUES ('u_d', 'd@example.com')""")
            conn.execute(
                """INSERT INTO "ApiKey" (id, "organizationId", "userId", name, "keyHash") VALUES ('k', 'org_d', 'u_d', 'k', 'h')"""
            )
            conn.execute("""INSERT INTO "EngineCreditState" ("organizationId") VALUES ('org_d')""")
        before = _tables(url)
        with pytest.raises(db.DataLossError, match=f'"{table}" \\(1 row\\)') as raised:
            db.downgrade(url, target)
        assert isinstance(raised.value, OptiqError) and "--force" in str(raised.value)
        assert raised.value.drops[f'"{table}"'] == 1
        assert _tables(url) == before and db.current(url) == db.head()
        assert db.downgrade(url, target, force=True)[f'"{table}"'] == 1
        assert db.current(url) == target and table not in _tables(url)


def test_downgrade_with_force_drops_everything(postgres_url: str) -> None:
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        _with_data(url)
        result = runner.invoke(app, ["db", "downgrade", "base", "--force", "--database-url", url])
        assert result.exit_code == 0, result.output
        assert "dropped" in result.output and '"TrackingEvent" (1 rows)' in result.output
        assert db.current(url) is None and not db.has_optiq_tables(url)


def test_an_empty_database_downgrades_without_force(postgres_url: str) -> None:
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        assert db.downgrade(url, "0002") == {}
        assert db.current(url) == "0002"
        result = runner.invoke(app, ["db", "downgrade", "base", "--database-url", url])
        assert result.exit_code == 0, result.output
        assert db.current(url) is None and not db.has_optiq_tables(url)


def test_base_never_drops_a_platform_made_databases_tables_without_force(postgres_url: str) -> None:
    with fresh_database(postgres_url) as url:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            schema.metadata.create_all(engine)  # as the platform's Prisma migrations would, no rows
            with engine.begin() as conn:
                conn.execute(sa.text('CREATE TABLE "_prisma_migrations" (id text PRIMARY KEY)'))
        finally:
            engine.dispose()
        db.stamp(url)
        db.upgrade(url)
        before = _tables(url)
        with pytest.raises(db.DataLossError, match="platform's own tables") as raised:
            db.downgrade(url, "base")
        assert raised.value.drops == {}
        assert _tables(url) == before
        db.downgrade(url, "0001")  # the engine's own (empty) tables may go
        assert db.current(url) == "0001"
        db.downgrade(url, "base", force=True)
        assert not db.has_optiq_tables(url)
