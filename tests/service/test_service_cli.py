"""The service commands: optiq alerts create-rule / evaluate / acknowledge, optiq keys create."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, pool, text
from typer.testing import CliRunner

from optiq_engine.cli import app
from optiq_engine.io import db
from tests.support.pg import fresh_database
from tests.support.service_alert_data import NOW, day, seed_org

pytestmark = pytest.mark.postgres
runner = CliRunner()


@pytest.fixture(scope="module")
def url(postgres_url: str) -> Iterator[str]:
    with fresh_database(postgres_url, upgraded=True) as database:
        db.upgrade(database)
        engine = create_engine(db.normalise_url(database), poolclass=pool.NullPool)
        with engine.begin() as conn:
            seed_org(conn, "cli", metrics={day(0): (10, 1, 5_000_000)})
        engine.dispose()
        yield database


def test_create_evaluate_acknowledge_and_keys(url: str) -> None:
    base = ["--database-url", url, "--org", "cli"]
    bad = runner.invoke(
        app,
        [
            "alerts",
            "create-rule",
            *base,
            "--name",
            "cap",
            "--type",
            "SPEND_THRESHOLD",
            "--config",
            '{"threshold": 0, "perod": "daily"}',
        ],
    )
    assert bad.exit_code == 2 and "config.threshold" in bad.output and "did you mean 'period'" in bad.output
    made = runner.invoke(
        app,
        [
            "alerts",
            "create-rule",
            *base,
            "--name",
            "cap",
            "--type",
            "SPEND_THRESHOLD",
            "--config",
            '{"threshold": 1000000}',
        ],
    )
    assert made.exit_code == 0, made.output
    done = runner.invoke(app, ["alerts", "evaluate", "--database-url", url, "--org", "cli", "--now", NOW.isoformat()])
    assert done.exit_code == 0 and "opened" in done.output and "1 rule(s) evaluated" in done.output
    again = runner.invoke(app, ["alerts", "evaluate", "--database-url", url, "--now", NOW.isoformat()])
    assert "0 rule(s) evaluated" in again.output
    engine = create_engine(db.normalise_url(url), poolclass=pool.NullPool)
    with engine.connect() as conn:
        event_id = conn.execute(text('SELECT id FROM "AlertEvent" WHERE "organizationId" = \'cli\'')).scalar_one()
    engine.dispose()
    denied = runner.invoke(app, ["alerts", "acknowledge", *base, event_id, "--by", "viewer_cli"])
    assert denied.exit_code == 2 and "VIEWER" in denied.output
    ack = runner.invoke(app, ["alerts", "acknowledge", *base, event_id, "--by", "admin_cli"])
    assert ack.exit_code == 0 and "ACKNOWLEDGED" in ack.output
    twice = runner.invoke(app, ["alerts", "acknowledge", *base, event_id, "--by", "admin_cli"])
    assert twice.exit_code == 2 and "cannot acknowledge" in twice.output
    listed = runner.invoke(app, ["alerts", "list", *base])
    assert event_id[:10] in listed.output
    key = runner.invoke(app, ["keys", "create", *base, "--user", "admin_cli"])
    assert key.exit_code == 0 and key.output.strip().startswith("optiq_")
    assert runner.invoke(app, ["keys", "create", *base, "--user", "nobody"]).exit_code == 2
