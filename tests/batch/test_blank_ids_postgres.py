"""An empty ``anonId`` in the database is invalid input (docs/contract.md §1.3), not one shared visitor.

Before, 19 conversions with ``anonId = ''`` got 1,182 links to touchpoints of unrelated visitors and the run
exited 0. Now the run refuses them with one line, or quarantines them (counted) with ``--quarantine``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

import optiq_engine as oq
from optiq_engine.cli import app
from optiq_engine.io import db, seed
from tests.support.pg import fresh_database
from tests.support.pg_data import retag

pytestmark = pytest.mark.postgres
runner = CliRunner()


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture()
def blank_ids(postgres_url: str) -> Iterator[str]:
    data = retag(oq.synthetic.generate(n_users=200, seed=5), "orgB")
    site = data.touchpoints["site_id"][0]
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        seed.write_synthetic(url, data)
        with psycopg.connect(_dsn(url)) as conn:
            for i, anon in enumerate(["", "  ", ""]):
                conn.execute(
                    'INSERT INTO "TouchPoint" (id, "siteId", "anonId", "occurredAt", "utmSource", "utmMedium") '
                    "VALUES (%s, %s, %s, %s, 'newsletter', 'email')",
                    (f"blank_tp_{i}", site, anon, datetime(2026, 1, 10 + i, tzinfo=UTC)),
                )
            conn.execute(
                'INSERT INTO "TrackingEvent" (id, "siteId", "eventId", type, "occurredAt", "anonId", "valueMicros") '
                "VALUES ('blank_cv', %s, 'blank_cv', 'CONVERSION', %s, '', 5000000)",
                (site, datetime(2026, 1, 20, tzinfo=UTC)),
            )
        yield url


def _links_of_blank_rows(url: str) -> int:
    with psycopg.connect(_dsn(url)) as conn:
        (n,) = conn.execute(
            """SELECT count(*) FROM "AttributionLink"
               WHERE "touchPointId" LIKE 'blank_tp_%%' OR "conversionId" LIKE '%%blank_cv%%'"""
        ).fetchone()
    return n


def test_a_run_over_empty_anon_ids_fails_with_one_line_and_writes_nothing(blank_ids: str) -> None:
    result = runner.invoke(app, ["run", "--database-url", blank_ids, "--org", "orgB", "--full"])
    assert result.exit_code == 2, result.output
    assert "empty anon_id" in result.output and "Traceback" not in result.output
    assert _links_of_blank_rows(blank_ids) == 0


def test_quarantine_sets_the_blank_rows_aside_with_counts(blank_ids: str) -> None:
    result = runner.invoke(app, ["run", "--database-url", blank_ids, "--org", "orgB", "--full", "--quarantine"])
    assert result.exit_code == 0, result.output
    assert "quarantined" in result.output
    assert _links_of_blank_rows(blank_ids) == 0
