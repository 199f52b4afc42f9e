"""The batch job (optiq run) against a real Optiq database: full, rerun, incremental, lock, settings."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg
import pytest
from typer.testing import CliRunner

import optiq_engine as oq
from optiq_engine.batch import RunLocked, run_batch, settings_from_json
from optiq_engine.cli import app
from optiq_engine.io import db, postgres, seed
from tests.support.pg import fresh_database
from tests.support.pg_data import db_links, expected_links, psycopg_dsn, retag

pytestmark = pytest.mark.postgres
runner = CliRunner()


@pytest.fixture(scope="module")
def seeded(postgres_url: str) -> Iterator[tuple[str, oq.synthetic.SyntheticData]]:
    """The module's data, seeded once: each test works on a copy (``database``)."""
    data = retag(oq.synthetic.generate(n_users=600, seed=31), "orgR")
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        seed.write_synthetic(url, data, page_views=True)
        yield url, data


@pytest.fixture()
def database(postgres_url: str, seeded) -> Iterator[tuple[str, oq.synthetic.SyntheticData]]:
    url, data = seeded
    with fresh_database(postgres_url, copy_of=url) as copy:
        yield copy, data


def _db_journeys(url: str) -> int:
    with psycopg.connect(psycopg_dsn(url)) as conn:
        (n,) = conn.execute('SELECT count(*) FROM "Journey" WHERE "organizationId" = %s', ("orgR",)).fetchone()
        (bad,) = conn.execute(
            """SELECT count(*) FROM "Journey" j WHERE "eventCount" <> (SELECT count(*) FROM "JourneyEvent" je
               WHERE je."journeyId" = j.id)"""
        ).fetchone()
    assert bad == 0
    return n


def _in_memory(data: oq.synthetic.SyntheticData, **options) -> oq.AttributionResult:
    return oq.attribute(data.touchpoints.drop("channel"), data.conversions, **options)


def test_cli_full_run_writes_the_in_memory_links_and_a_rerun_changes_nothing(database) -> None:
    url, data = database
    result = runner.invoke(app, ["run", "--database-url", url, "--org", "orgR", "--full"])
    assert result.exit_code == 0, result.output
    assert db_links(url, "orgR").equals(expected_links(_in_memory(data)))
    again = run_batch(url, organization_id="orgR", full=True)
    assert (again.inserted, again.updated, again.deleted, again.journeys_changed) == (0, 0, 0, 0)
    assert again.journeys > 0 and _db_journeys(url) == again.journeys
    with psycopg.connect(psycopg_dsn(url)) as conn:
        runs = conn.execute('SELECT status, mode FROM "EngineRun" ORDER BY "startedAt"').fetchall()
    assert runs == [("SUCCEEDED", "FULL"), ("SUCCEEDED", "FULL")]


def test_incremental_run_recomputes_only_users_with_new_events(database) -> None:
    url, data = database
    first = run_batch(url, organization_id="orgR")
    assert first.mode == "FULL"
    unchanged = run_batch(url, organization_id="orgR")  # the change log (0008): nothing changed since the first run
    assert unchanged.mode == "INCREMENTAL" and unchanged.users == 0 and unchanged.changed == 0
    nothing = run_batch(url, organization_id="orgR", overlap=timedelta(0))
    assert nothing.mode == "INCREMENTAL" and nothing.users == 0 and nothing.inserted == 0
    # One user gets a new touchpoint just before one of their conversions.
    conv = data.conversions.sort("conversion_id").row(0, named=True)
    new_tp = {
        "id": "orgR_tp_new",
        "siteId": conv["site_id"],
        "anonId": conv["anon_id"],
        "occurredAt": conv["occurred_at"] - timedelta(minutes=1),
        "utmSource": "newsletter",
        "utmMedium": "email",
    }
    with psycopg.connect(psycopg_dsn(url)) as conn:
        conn.execute(
            'INSERT INTO "TouchPoint" (id, "siteId", "anonId", "occurredAt", "utmSource", "utmMedium") '
            "VALUES (%(id)s, %(siteId)s, %(anonId)s, %(occurredAt)s, %(utmSource)s, %(utmMedium)s)",
            new_tp,
        )
    second = run_batch(url, organization_id="orgR", overlap=timedelta(0))
    assert second.mode == "INCREMENTAL" and second.users == 1 and second.inserted > 0
    window = postgres.Window(organization_id="orgR")
    expected = oq.attribute(postgres.read_touchpoints(url, window), postgres.read_conversions(url, window))
    assert db_links(url, "orgR").equals(expected_links(expected))


def test_an_incremental_run_after_a_settings_change_recomputes_every_user(database) -> None:
    """A new user changed attributionSettings.lookbackDays; the nightly incremental run found no changed user
    and kept every link computed with the old lookback ("users recomputed 0"). It now runs in full."""
    url, data = database
    assert run_batch(url, organization_id="orgR").mode == "FULL"
    assert run_batch(url, organization_id="orgR").mode == "INCREMENTAL"  # same settings: nothing to redo
    with psycopg.connect(psycopg_dsn(url)) as conn:
        conn.execute(
            """INSERT INTO "OrganizationSettings" (id, "organizationId", "attributionSettings")
               VALUES ('st_change', 'orgR', '{"lookbackDays": 2}')"""
        )
    changed = run_batch(url, organization_id="orgR")
    assert changed.mode == "FULL" and changed.changed > 0
    assert db_links(url, "orgR").equals(expected_links(_in_memory(data, lookback=timedelta(days=2))))
    assert run_batch(url, organization_id="orgR").mode == "INCREMENTAL"
    assert run_batch(url, organization_id="orgR", models=["LINEAR"]).mode == "FULL"  # other models: in full too


def test_an_incremental_run_recomputes_a_users_conversions_from_their_earliest_new_row(database) -> None:
    """A new row can change only the links of the user's conversions at or after it (lookback windows look
    back): earlier conversions are left out of the run's scope, and the links still equal a full recompute."""
    url, data = database
    run_batch(url, organization_id="orgR")
    several = data.conversions.group_by("anon_id").len().filter(pl.col("len") >= 3).sort("anon_id")
    user = several["anon_id"][0]
    times = data.conversions.filter(pl.col("anon_id") == user).sort("occurred_at")["occurred_at"]
    at = times[1]  # a touchpoint at the second conversion's instant: the first is out of scope
    site = data.conversions.filter(pl.col("anon_id") == user)["site_id"][0]
    with psycopg.connect(psycopg_dsn(url)) as conn:
        conn.execute(
            'INSERT INTO "TouchPoint" (id, "siteId", "anonId", "occurredAt", "utmSource") VALUES (%s, %s, %s, %s, %s)',
            ("orgR_tp_late", site, user, at, "partner"),
        )
    run = run_batch(url, organization_id="orgR", overlap=timedelta(0))
    assert run.mode == "INCREMENTAL" and run.users == 1
    assert run.conversions == (times >= at).sum() == times.len() - 1
    assert run.inserted > 0
    window = postgres.Window(organization_id="orgR")
    expected = oq.attribute(postgres.read_touchpoints(url, window), postgres.read_conversions(url, window))
    assert db_links(url, "orgR").equals(expected_links(expected))


def test_settings_come_from_the_organization_and_flags_override(database) -> None:
    url, data = database
    with psycopg.connect(psycopg_dsn(url)) as conn:
        conn.execute(
            """INSERT INTO "OrganizationSettings" (id, "organizationId", "attributionSettings")
               VALUES ('st1', 'orgR', '{"lookbackDays": 7, "models": ["LINEAR", "LAST_TOUCH"]}')"""
        )
    run_batch(url, organization_id="orgR", full=True)
    expected = _in_memory(data, models=["LINEAR", "LAST_TOUCH"], lookback=timedelta(days=7))
    assert db_links(url, "orgR").equals(expected_links(expected))
    run_batch(url, organization_id="orgR", full=True, models=["FIRST_TOUCH"], lookback=timedelta(days=3))
    stored = db_links(url, "orgR")
    first = expected_links(_in_memory(data, models=["FIRST_TOUCH"], lookback=timedelta(days=3)))
    assert stored.filter(pl.col("model") == "FIRST_TOUCH").equals(first)


def test_since_recomputes_only_later_conversions(database) -> None:
    url, data = database
    since = datetime(2026, 3, 1, tzinfo=UTC)
    summary = run_batch(url, organization_id="orgR", full=True, since=since)
    stored = db_links(url, "orgR")
    later = data.conversions.filter(pl.col("occurred_at") >= since)
    assert summary.conversions == later.height
    assert set(stored["conversion_id"]) <= set(later["conversion_id"])
    expected = expected_links(_in_memory(data)).filter(pl.col("conversion_id").is_in(later["conversion_id"].implode()))
    assert stored.equals(expected)


def test_a_concurrent_run_is_refused_with_exit_code_3(database) -> None:
    url, _ = database
    with psycopg.connect(psycopg_dsn(url), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtextextended('optiq-engine-run:orgR', 0))")
        with pytest.raises(RunLocked):
            run_batch(url, organization_id="orgR")
        result = runner.invoke(app, ["run", "--database-url", url, "--org", "orgR"])
        assert result.exit_code == 3 and "in progress" in result.output
        done = threading.Event()
        thread = threading.Thread(target=lambda: (run_batch(url, organization_id="orgR", wait=True), done.set()))
        thread.start()
        assert not done.wait(1.0)  # waits for the lock
        holder.execute("SELECT pg_advisory_unlock(hashtextextended('optiq-engine-run:orgR', 0))")
        thread.join(120)
        assert done.is_set()


def test_errors_exit_with_code_2_and_a_failed_run_is_recorded(database) -> None:
    url, _ = database
    unknown = runner.invoke(app, ["run", "--database-url", url, "--org", "nobody"])
    assert unknown.exit_code == 2 and "no organization" in unknown.output
    bad_model = runner.invoke(app, ["run", "--database-url", url, "--org", "orgR", "--models", "BOGUS"])
    assert bad_model.exit_code == 2 and "BOGUS" in bad_model.output
    with psycopg.connect(psycopg_dsn(url)) as conn:  # refused before it started: no run recorded, none left RUNNING
        (runs,) = conn.execute('SELECT count(*) FROM "EngineRun"').fetchone()
    assert runs == 0
    unreachable = runner.invoke(app, ["run", "--database-url", "postgresql://postgres@127.0.0.1:1/x", "--org", "o"])
    assert unreachable.exit_code == 2 and "database" in unreachable.output


def test_since_without_full_is_refused() -> None:
    with pytest.raises(oq.ConfigError, match="full runs only"):
        run_batch("postgresql://unused", organization_id="o", since=datetime(2026, 1, 1, tzinfo=UTC))


def test_settings_from_json_validates() -> None:
    options, models = settings_from_json({"lookbackDays": 14, "models": ["LINEAR"], "other": 1})
    assert options == {"lookback": timedelta(days=14)} and models == ["LINEAR"]
    with pytest.raises(oq.ConfigError, match="lookbackDays"):
        settings_from_json({"lookbackDays": "soon"})


@pytest.mark.parametrize(
    ("settings", "needed"),
    [
        ({"resetAfterConversion": "false"}, "true or false"),  # was bool("false"): true
        ({"directChannels": "email"}, "a list of strings"),  # was tuple("email"): e, m, a, i, l
        ({"lookbackDays": True}, "a number"),  # was a 1-day lookback
        ({"halfLifeDays": "7"}, "a number"),
        ({"maxTouchpoints": 1.7}, "a whole number"),
        ({"models": "LINEAR"}, "a list of strings"),
    ],
)
def test_settings_of_the_wrong_json_type_are_refused(settings, needed) -> None:
    """A new user's attributionSettings ran on a value other than the one written, without a word."""
    with pytest.raises(oq.ConfigError, match=f"attributionSettings.{next(iter(settings))}: .*{needed}"):
        settings_from_json(settings)


def test_an_unknown_settings_key_suggests_the_known_one(caplog) -> None:
    with caplog.at_level("WARNING"):
        assert settings_from_json({"lookbackDay": 3}) == ({}, None)
    assert "did you mean 'lookbackDays'" in caplog.text


def test_bad_source_rows_fail_the_run_or_are_quarantined_and_counted(database) -> None:
    url, _ = database
    with psycopg.connect(psycopg_dsn(url)) as conn:
        conn.execute(
            """INSERT INTO "TrackingEvent" (id, "siteId", "eventId", type, "occurredAt", "anonId", "valueMicros")
               VALUES ('bad1', 'site_orgR', 'bad1', 'CONVERSION', '2026-02-01T00:00:00Z', 'u_bad', -5)"""
        )
    failed = runner.invoke(app, ["run", "--database-url", url, "--org", "orgR", "--full"])
    assert failed.exit_code == 2 and "negative value_micros" in failed.output
    assert db_links(url, "orgR").height == 0  # nothing written by the failed run
    with psycopg.connect(psycopg_dsn(url)) as conn:
        (status,) = conn.execute('SELECT status FROM "EngineRun" ORDER BY "startedAt" DESC LIMIT 1').fetchone()
    assert status == "FAILED"  # and the run is recorded as failed
    ok = runner.invoke(app, ["run", "--database-url", url, "--org", "orgR", "--full", "--quarantine"])
    assert ok.exit_code == 0, ok.output
    assert "quarantined conversions" in ok.output
    summary = run_batch(url, organization_id="orgR", full=True, on_invalid="quarantine")
    assert summary.quarantined["conversions"] == 1 and summary.quarantined["events"] == 1


def test_data_driven_models_run_full_and_equal_the_in_memory_fit(database) -> None:
    url, data = database
    models = ["MARKOV", "SHAPLEY", "DATA_DRIVEN", "LINEAR"]
    first = run_batch(url, organization_id="orgR", models=models)
    assert first.mode == "FULL"
    in_memory = _in_memory(data, models=models)
    assert db_links(url, "orgR").equals(expected_links(in_memory))
    # baseline conversions (no links for that model, docs/data_driven.md §5) are counted per model
    left = in_memory.unattributed
    assert first.unattributed == left.filter(pl.col("model").is_null()).height
    assert first.baseline_conversions == {
        n: f.baseline_conversions for n, f in in_memory.fitted.items() if f.baseline_conversions
    }
    again = run_batch(url, organization_id="orgR", models=models)  # never incremental: the fit sees everyone
    assert again.mode == "FULL" and again.changed == 0
    with pytest.raises(oq.ConfigError, match="partitions=1"):
        run_batch(url, organization_id="orgR", models=["MARKOV"], partitions=2)


def test_a_run_reads_and_writes_through_one_pool_of_connections(database, monkeypatch) -> None:
    """The job owns one pool of ADBC connections and passes it down: every read, the stored rows a merge
    compares with and the writing transaction borrow from it; none opens a connection of its own. At most
    as many are opened as are in use at once (a slice's two reads), however many reads and writes the run
    makes; all are closed when it ends."""
    import adbc_driver_postgresql.dbapi as adbc

    url, _ = database
    opened, closed, borrowed = [], [], []
    real_connect, real_borrow = adbc.connect, postgres.Connections.connection

    def connect(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        opened.append(conn)
        real_close = conn.close
        conn.close = lambda: closed.append(conn) or real_close()
        return conn

    def borrow(self):
        borrowed.append(1)
        return real_borrow(self)

    monkeypatch.setattr(adbc, "connect", connect)
    monkeypatch.setattr(postgres.Connections, "connection", borrow)
    full = run_batch(url, organization_id="orgR", full=True)
    assert full.links > 0 and full.journeys > 0
    # reads: touchpoints and conversions at once, then events; the transaction: one more borrow
    assert len(borrowed) >= 4 and 1 <= len(opened) <= 2
    assert len(closed) == len(opened)
