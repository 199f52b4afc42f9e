"""Incremental == full, by construction: after random inserts (back-dated too), updates of ``occurredAt`` and
``anonId`` and deletes of touchpoints, conversions and page views, an incremental ``optiq run`` leaves the
``AttributionLink``, ``Journey`` and ``JourneyEvent`` rows a full run from scratch writes, row for row.

Every example runs on the same database (one organization, a few dozen users); the change log
(``"EngineChange"``, migration 0008) is what lets the incremental run see rows whose ``createdAt`` says
nothing (back-dated imports, in-place updates, deletes).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import polars as pl
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

import optiq_engine as oq
from optiq_engine.batch import run_batch
from optiq_engine.io import db, seed
from tests.support.pg import fresh_database
from tests.support.pg_data import retag

pytestmark = pytest.mark.postgres

ORG, SITE = "orgP", "site_orgP"
#: Rows inserted with this createdAt: older than any run's watermark (a back-dated import).
BACK_DATED = "2001-01-01T00:00:00Z"
MODELS = ["FIRST_TOUCH", "LAST_TOUCH", "LINEAR", "POSITION_BASED", "TIME_DECAY"]


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def database(postgres_url: str) -> Iterator[str]:
    data = retag(oq.synthetic.generate(n_users=60, seed=23), ORG)
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        seed.write_synthetic(url, data, page_views=True)
        yield url


def _run(url: str, *, full: bool = False, extract: bool = False) -> None:
    run_batch(url, organization_id=ORG, full=full, models=MODELS, extract_touchpoints=extract)


_TABLES = {
    "AttributionLink": """SELECT l."conversionId", l."touchPointId", l.model::text, l.weight, l.position,
        l."touchPointCount" FROM "AttributionLink" l JOIN "TrackingEvent" e ON e.id = l."conversionId"
        WHERE e."siteId" = %(site)s ORDER BY 1, 2, 3""",
    "Journey": """SELECT id, "anonId", "sessionId", status::text, "startedAt", "convertedAt", "lastActivityAt",
        "conversionValue", "conversionName", "firstUtmSource", "firstUtmMedium", "firstUtmCampaign",
        "lastUtmSource", "lastUtmMedium", "lastUtmCampaign", "touchPointCount", "eventCount"
        FROM "Journey" WHERE "organizationId" = %(org)s ORDER BY id""",
    "JourneyEvent": """SELECT je.id, je."journeyId", je."trackingEventId", je."sequenceNumber", je."occurredAt"
        FROM "JourneyEvent" je JOIN "Journey" j ON j.id = je."journeyId" WHERE j."organizationId" = %(org)s
        ORDER BY je.id""",
}


#: The engine's own touchpoints (written by runs that extract them).
_ENGINE_TOUCHPOINTS = """SELECT id, "trackingEventId", "anonId", "sessionId", "occurredAt", "utmSource", "utmMedium",
    "utmCampaign", gclid, fbclid, ttclid FROM "TouchPoint" WHERE "siteId" = %(site)s AND id ~ '^tp_[0-9a-f]{32}$'
    ORDER BY id"""


def _tables(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(_dsn(url)) as conn:
        queries = {**_TABLES, "TouchPoint (engine)": _ENGINE_TOUCHPOINTS}
        return {name: conn.execute(sql, {"org": ORG, "site": SITE}).fetchall() for name, sql in queries.items()}


def _full_from_scratch(url: str, *, extract: bool = False) -> dict[str, list[tuple]]:
    """The tables a full run writes when nothing was written before (links, journeys and their events, and
    with ``extract`` the engine's touchpoints)."""
    with psycopg.connect(_dsn(url)) as conn:
        if extract:
            conn.execute("""DELETE FROM "TouchPoint" WHERE "siteId" = %s AND id ~ '^tp_[0-9a-f]{32}$'""", (SITE,))
        conn.execute(
            """DELETE FROM "AttributionLink" l USING "TrackingEvent" e WHERE e.id = l."conversionId"
               AND e."siteId" = %s""",
            (SITE,),
        )
        conn.execute('DELETE FROM "Journey" WHERE "organizationId" = %s', (ORG,))
    _run(url, full=True, extract=extract)
    return _tables(url)


# --- the changes -------------------------------------------------------------------------------------------
_PICK = {
    # The platform's touchpoints: the engine's own rows (tp_ + 32 hex digits) are written by runs only.
    "touchpoint": """SELECT id, "occurredAt" FROM "TouchPoint" WHERE "siteId" = %(site)s AND id !~ '^tp_[0-9a-f]{32}$'
                     ORDER BY id OFFSET %(k)s %% greatest((SELECT count(*) FROM "TouchPoint" WHERE "siteId" = %(site)s
                     AND id !~ '^tp_[0-9a-f]{32}$'), 1) LIMIT 1""",
    "conversion": """SELECT id, "occurredAt" FROM "TrackingEvent" WHERE "siteId" = %(site)s AND type = 'CONVERSION'
                     ORDER BY id OFFSET %(k)s %% greatest((SELECT count(*) FROM "TrackingEvent"
                     WHERE "siteId" = %(site)s AND type = 'CONVERSION'), 1) LIMIT 1""",
    "page_view": """SELECT id, "occurredAt" FROM "TrackingEvent" WHERE "siteId" = %(site)s AND type = 'PAGE_VIEW'
                    ORDER BY id OFFSET %(k)s %% greatest((SELECT count(*) FROM "TrackingEvent"
                    WHERE "siteId" = %(site)s AND type = 'PAGE_VIEW'), 1) LIMIT 1""",
}
_TABLE_OF = {"touchpoint": "TouchPoint", "conversion": "TrackingEvent", "page_view": "TrackingEvent"}
_USER = """SELECT "anonId" FROM "TrackingEvent" WHERE "siteId" = %(site)s GROUP BY 1 ORDER BY 1
           OFFSET %(k)s %% greatest((SELECT count(DISTINCT "anonId") FROM "TrackingEvent" WHERE "siteId" = %(site)s), 1)
           LIMIT 1"""

changes = st.lists(
    st.tuples(
        st.sampled_from(["insert", "insert", "update_time", "update_user", "delete"]),
        st.sampled_from(["touchpoint", "conversion", "page_view"]),
        st.integers(0, 10**6),  # which row
        st.integers(0, 10**6),  # which user
        st.integers(-5 * 24 * 60, 5 * 24 * 60),  # minutes from the picked row's time
        st.booleans(),  # a user never seen before
    ),
    min_size=1,
    max_size=6,
)


def _apply(conn: psycopg.Connection, change: tuple) -> None:
    action, kind, k_row, k_user, minutes, new_user = change
    row = conn.execute(_PICK[kind], {"site": SITE, "k": k_row}).fetchone()
    if row is None:
        return
    row_id, at = row
    user = f"anon_new_{k_user % 5}" if new_user else conn.execute(_USER, {"site": SITE, "k": k_user}).fetchone()[0]
    when = at + timedelta(minutes=minutes)
    table = _TABLE_OF[kind]
    if action == "insert":
        new_id = f"p_{uuid.uuid4().hex[:12]}"
        if kind == "touchpoint":
            conn.execute(
                """INSERT INTO "TouchPoint" (id, "siteId", "anonId", "occurredAt", "utmSource", "utmMedium", "createdAt")
                   VALUES (%s, %s, %s, %s, %s, 'cpc', %s)""",
                (new_id, SITE, user, when, ["google", "newsletter", "partner"][k_row % 3], BACK_DATED),
            )
        else:
            conn.execute(
                """INSERT INTO "TrackingEvent" (id, "siteId", "eventId", "anonId", type, "occurredAt", "valueMicros",
                   name, "utmSource", "createdAt") VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    new_id,
                    SITE,
                    new_id,
                    user,
                    "CONVERSION" if kind == "conversion" else "PAGE_VIEW",
                    when,
                    1_000_000 * (1 + k_row % 50) if kind == "conversion" else None,
                    "purchase" if kind == "conversion" else None,
                    "google" if k_row % 2 else None,
                    BACK_DATED,
                ),
            )
    elif action == "update_time":
        conn.execute(f'UPDATE "{table}" SET "occurredAt" = %s WHERE id = %s', (when, row_id))
    elif action == "update_user":
        conn.execute(f'UPDATE "{table}" SET "anonId" = %s WHERE id = %s', (user, row_id))
    else:
        conn.execute(f'DELETE FROM "{table}" WHERE id = %s', (row_id,))


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(batches=st.lists(changes, min_size=1, max_size=3))
@pytest.mark.parametrize("extract", [False, True], ids=["TouchPoint rows", "extracted touchpoints"])
def test_incremental_runs_equal_a_full_run_after_any_changes(
    database: str, extract: bool, batches: list[list[tuple]]
) -> None:
    url = database
    _run(url, full=True, extract=extract)  # every example starts from a full run
    for batch in batches:
        with psycopg.connect(_dsn(url)) as conn:
            for change in batch:
                _apply(conn, change)
        _run(url, extract=extract)
        incremental = _tables(url)
        _run(url, full=True, extract=extract)  # a full run over what the incremental run wrote changes nothing either
        over = _tables(url)
        full = _full_from_scratch(url, extract=extract)
        for name in full:
            assert incremental[name] == full[name], (name, batch, _difference(incremental[name], full[name]))
            assert over[name] == full[name], (name, batch, _difference(over[name], full[name]))


def _difference(incremental: list[tuple], full: list[tuple]) -> str:
    a, b = set(incremental), set(full)
    return f"only incremental: {sorted(a - b)[:3]}; only full: {sorted(b - a)[:3]}"


def test_the_change_log_names_back_dated_updated_and_deleted_rows(database: str) -> None:
    """What the triggers log: both versions of an update, deletes, not the engine's own touchpoints."""
    url = database
    _run(url, full=True)
    with psycopg.connect(_dsn(url)) as conn:
        (tp_id, user, at) = conn.execute(
            'SELECT id, "anonId", "occurredAt" FROM "TouchPoint" WHERE "siteId" = %s ORDER BY id LIMIT 1', (SITE,)
        ).fetchone()
        (start,) = conn.execute('SELECT coalesce(max(id), 0) FROM "EngineChange"').fetchone()
        conn.execute(
            'UPDATE "TouchPoint" SET "anonId" = %s, "occurredAt" = %s WHERE id = %s',
            ("anon_moved", at - timedelta(days=1), tp_id),
        )
        conn.execute('DELETE FROM "TouchPoint" WHERE id = %s', (tp_id,))
        conn.execute(
            """INSERT INTO "TouchPoint" (id, "siteId", "anonId", "occurredAt") VALUES
               (%s, %s, 'anon_engine', now()), ('p_backdated', %s, 'anon_old', '2020-01-01')""",
            ("tp_" + "0" * 32, SITE, SITE),
        )
        logged = conn.execute(
            """SELECT "organizationId", "anonId", "occurredAt", "table" FROM "EngineChange" WHERE id > %s ORDER BY id""",
            (start,),
        ).fetchall()
        conn.execute("""DELETE FROM "TouchPoint" WHERE id IN (%s, 'p_backdated')""", ("tp_" + "0" * 32,))
    users = pl.DataFrame(logged, schema=["org", "anon", "at", "table"], orient="row")
    assert set(users["org"]) == {ORG} and set(users["table"]) == {"TouchPoint"}
    assert sorted(users["anon"]) == sorted([user, "anon_moved", "anon_moved", "anon_old"])  # old+new, delete, insert
    assert "anon_engine" not in users["anon"]


def test_a_transaction_that_commits_after_a_run_started_is_read_by_the_next_run(database: str) -> None:
    """Ids and timestamps are taken before commit: the run's snapshot, not a max id or time, marks what it saw."""
    url = database
    _run(url, full=True)
    with psycopg.connect(_dsn(url)) as conn:
        (user, site_user_time) = conn.execute(
            """SELECT "anonId", max("occurredAt") FROM "TrackingEvent" WHERE "siteId" = %s AND type = 'CONVERSION'
               GROUP BY 1 ORDER BY 1 LIMIT 1""",
            (SITE,),
        ).fetchone()
    late = psycopg.connect(_dsn(url))
    try:
        late.execute(
            """INSERT INTO "TouchPoint" (id, "siteId", "anonId", "occurredAt", "utmSource", "createdAt")
               VALUES ('p_late', %s, %s, %s, 'late', %s)""",
            (SITE, user, site_user_time - timedelta(minutes=1), BACK_DATED),
        )
        during = run_batch(url, organization_id=ORG, models=MODELS, extract_touchpoints=False)  # not committed yet
        assert during.mode == "INCREMENTAL" and during.users == 0
        late.commit()
    finally:
        late.close()
    after = run_batch(url, organization_id=ORG, models=MODELS, extract_touchpoints=False)
    assert after.users == 1 and after.inserted > 0
    assert _tables(url) == _full_from_scratch(url)


def test_a_full_run_removes_the_journeys_of_a_user_without_events(database: str) -> None:
    url = database
    _run(url, full=True)
    with psycopg.connect(_dsn(url)) as conn:
        (user,) = conn.execute('SELECT "anonId" FROM "Journey" WHERE "organizationId" = %s LIMIT 1', (ORG,)).fetchone()
        conn.execute('DELETE FROM "TrackingEvent" WHERE "siteId" = %s AND "anonId" = %s', (SITE, user))
    _run(url, full=True)
    with psycopg.connect(_dsn(url)) as conn:
        assert conn.execute('SELECT count(*) FROM "Journey" WHERE "anonId" = %s', (user,)).fetchone() == (0,)
    assert _tables(url) == _full_from_scratch(url)
