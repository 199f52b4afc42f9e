"""Loading touchpoints and conversions from a real Optiq database (ADBC), scoped by organization."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

import optiq_engine as oq
from optiq_engine.io import db, postgres, seed
from tests.support.pg import fresh_database, object_name
from tests.support.pg_data import db_links, expected_links, retag

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def seeded(postgres_url: str) -> Iterator[tuple[str, dict[str, oq.synthetic.SyntheticData]]]:
    """Two organizations whose users share anon ids (and one timeline), in one database."""
    base = oq.synthetic.generate(n_users=1_500, seed=11)
    orgs = {"orgA": retag(base, "orgA"), "orgB": retag(oq.synthetic.generate(n_users=1_500, seed=12), "orgB")}
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        for data in orgs.values():
            seed.write_synthetic(url, data, page_views=True)
        yield url, orgs


def _links(result: oq.AttributionResult) -> pl.DataFrame:
    return result.links.with_columns(pl.col("model", "channel").cast(pl.String)).sort(
        "model", "conversion_id", "position"
    )


def test_loaded_frames_are_the_contract_and_equal_the_source(seeded) -> None:
    url, orgs = seeded
    window = postgres.Window(organization_id="orgA")
    tp, cv = postgres.read_touchpoints(url, window), postgres.read_conversions(url, window)
    src = orgs["orgA"]
    assert tp.schema["occurred_at"] == pl.Datetime("us", "UTC") and cv.schema["value_micros"] == pl.Int64
    cols = [
        "touchpoint_id",
        "anon_id",
        "occurred_at",
        "organization_id",
        "site_id",
        "utm_source",
        "utm_medium",
        "gclid",
    ]
    assert tp.select(cols).sort("touchpoint_id").equals(src.touchpoints.select(cols).sort("touchpoint_id"))
    cv_cols = ["conversion_id", "anon_id", "occurred_at", "value_micros", "name", "organization_id", "site_id"]
    assert cv.select(cv_cols).sort("conversion_id").equals(src.conversions.select(cv_cols).sort("conversion_id"))


def test_attribution_from_postgres_equals_in_memory(seeded) -> None:
    url, orgs = seeded
    window = postgres.Window(organization_id="orgB")
    from_db = oq.attribute(postgres.read_touchpoints(url, window), postgres.read_conversions(url, window))
    in_memory = oq.attribute(orgs["orgB"].touchpoints.drop("channel"), orgs["orgB"].conversions)
    assert _links(from_db).equals(_links(in_memory))


def test_one_organization_never_sees_the_other(seeded) -> None:
    url, orgs = seeded
    for org, other in (("orgA", "orgB"), ("orgB", "orgA")):
        window = postgres.Window(organization_id=org)
        tp, cv = postgres.read_touchpoints(url, window), postgres.read_conversions(url, window)
        assert set(tp["organization_id"].unique()) == {org} and set(cv["organization_id"].unique()) == {org}
        assert not tp["touchpoint_id"].str.starts_with(f"{other}_").any()
        shared = set(tp["anon_id"]) & set(orgs[other].touchpoints["anon_id"])
        assert shared, "the fixture must share anon ids between organizations"
        links = oq.attribute(tp, cv).links
        assert links["conversion_id"].str.starts_with(f"{org}_").all()
        assert links["touchpoint_id"].str.starts_with(f"{org}_").all()


def test_window_reads_lookback_context_and_site_filter(seeded) -> None:
    url, orgs = seeded
    src = orgs["orgA"]
    start = datetime(2026, 2, 1, tzinfo=UTC)
    end = datetime(2026, 3, 1, tzinfo=UTC)
    window = postgres.Window(organization_id="orgA", start=start, end=end, lookback=timedelta(days=7))
    tp = postgres.read_touchpoints(url, window)
    expected = src.touchpoints.filter(pl.col("occurred_at").is_between(start - timedelta(days=7), end, closed="left"))
    assert tp.height == expected.height > 0
    assert postgres.read_touchpoints(url, postgres.Window(organization_id="orgA", site_id="nope")).height == 0


def test_partitions_keep_users_whole_and_cover_everything(seeded) -> None:
    url, _ = seeded
    window = postgres.Window(organization_id="orgA")
    parts = list(postgres.iter_partitions(url, window, partitions=3))
    users = [set(tp["anon_id"]) | set(cv["anon_id"]) for tp, cv in parts]
    assert all(not (users[i] & users[j]) for i in range(3) for j in range(i + 1, 3))
    whole = oq.attribute(postgres.read_touchpoints(url, window), postgres.read_conversions(url, window))
    pieces = pl.concat([_links(oq.attribute(tp, cv)) for tp, cv in parts])
    assert pieces.sort("model", "conversion_id", "position").equals(_links(whole))


@pytest.mark.parametrize("site", [None, "site_orgA"])
def test_a_few_users_are_read_by_index_probes_as_the_scan_reads_them(seeded, monkeypatch, site) -> None:
    """An incremental run reads its users' rows by index probes (one per site and user) when they are few for
    the table; the rows are exactly the scan's: duplicate and unknown anon ids, the window's bounds, the
    organization (orgB has the same anon ids) and the site all hold."""
    url, orgs = seeded
    users = orgs["orgA"].conversions["anon_id"].unique().sort().head(40).to_list()
    window = postgres.Window(
        organization_id="orgA",
        site_id=site,
        start=datetime(2026, 2, 1, tzinfo=UTC),
        lookback=timedelta(days=7),
        anon_ids=(*users, *users[:5], "nobody"),
    )
    probed, fetched = [], []
    real_few, real_fetch = postgres.read._few, postgres.read._fetch
    monkeypatch.setattr(
        postgres.read, "_few", lambda cur, table, ids: probed.append(real_few(cur, table, ids)) or probed[-1]
    )
    monkeypatch.setattr(postgres.read, "_fetch", lambda *args: fetched.append(1) or real_fetch(*args))
    reads = [postgres.read_touchpoints, postgres.read_conversions, postgres.read_events]
    for read in (*reads, postgres.read_events_for_touchpoints):
        monkeypatch.setattr(postgres.read, "_PROBE_PAGES", 0)  # every scope is small: probes
        by_probes = read(url, window)
        monkeypatch.setattr(postgres.read, "_IDS_PER_CONNECTION", 1)  # and split over connections
        fetched.clear()
        by_parts = read(url, window)
        assert len(fetched) == postgres.read._PROBE_CONNECTIONS  # one read per part
        monkeypatch.setattr(postgres.read, "_IDS_PER_CONNECTION", 10**9)
        monkeypatch.setattr(postgres.read, "_PROBE_PAGES", 10**9)  # none is: the scan
        by_scan = read(url, window)
        assert probed[-3:] == [True, True, False]
        assert by_probes.height > 0 and set(by_probes["anon_id"]) <= set(users)
        assert by_probes["organization_id"].unique().to_list() == ["orgA"]
        assert by_probes.sort(by_probes.columns).equals(by_scan.sort(by_scan.columns))
        assert by_parts.sort(by_parts.columns).equals(by_scan.sort(by_scan.columns))
        everyone = read(url, replace(window, anon_ids=None))
        assert by_scan.sort(by_scan.columns).equals(
            everyone.filter(pl.col("anon_id").is_in(users)).sort(everyone.columns)
        )


@pytest.mark.parametrize("rows", [0, 1, 20_000])
def test_a_result_of_many_record_batches_becomes_one_frame_in_order(postgres_url: str, rows: int) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(postgres.adbc_url(postgres_url)) as conn, conn.cursor() as cur:
        cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": "4096"})  # many small batches
        cur.execute(
            f"SELECT g AS n, nullif(repeat('é', g % 7), '') AS s, to_timestamp(g) AS t "
            f"FROM generate_series(1, {rows}) g ORDER BY g"
        )
        frame = postgres.read._frame(cur)
    assert frame.schema == pl.Schema({"n": pl.Int32, "s": pl.String, "t": pl.Datetime("us", "UTC")})
    assert rows < 20_000 or frame.n_chunks() > 10  # the case this test is for: converted batch by batch
    n = pl.Series("n", range(1, rows + 1), pl.Int32)
    expected = pl.DataFrame({"n": n}).with_columns(
        pl.when(pl.col("n") % 7 > 0).then(pl.lit("é").repeat_by(pl.col("n") % 7).list.join("")).alias("s"),
        pl.from_epoch(pl.col("n").cast(pl.Int64), "s").dt.replace_time_zone("UTC").alias("t"),
    )
    assert frame.equals(expected)


@pytest.mark.parametrize("n", [0, 1, 2_499, 2_500, 5_000, 9_999, 10_000, 123_457])
def test_probe_reads_are_split_into_consecutive_parts_as_many_as_fit(n: int) -> None:
    ids = list(range(n))
    parts = postgres.read._split(ids)
    assert [i for part in parts for i in part] == ids
    assert 1 <= len(parts) <= postgres.read._PROBE_CONNECTIONS
    assert len(parts) == 1 or min(map(len, parts)) >= postgres.read._IDS_PER_CONNECTION
    # no connection is left unused while the ids fill one more part
    assert len(parts) == postgres.read._PROBE_CONNECTIONS or (len(parts) + 1) * postgres.read._IDS_PER_CONNECTION > n


def test_bad_window_arguments() -> None:
    with pytest.raises(oq.ConfigError, match="organization_id"):
        postgres.Window(organization_id="")
    with pytest.raises(oq.ConfigError, match="timezone-aware"):
        postgres.Window(organization_id="o", start=datetime(2026, 1, 1))
    with pytest.raises(oq.ConfigError, match="not a PostgreSQL URL"):
        postgres.adbc_url("mysql://x")


# --- writers ------------------------------------------------------------------------------------------
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402


@pytest.fixture()
def writable(postgres_url: str) -> Iterator[tuple[str, pl.DataFrame, pl.DataFrame]]:
    data = retag(oq.synthetic.generate(n_users=800, seed=21), "orgW")
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        seed.write_synthetic(url, data)
        window = postgres.Window(organization_id="orgW")
        yield url, postgres.read_touchpoints(url, window), postgres.read_conversions(url, window)


def _write(url: str, result: oq.AttributionResult, cv: pl.DataFrame) -> postgres.WriteCounts:
    return postgres.write_links(
        url, result.links, organization_id="orgW", conversion_ids=cv["conversion_id"], models=list(result.model_names)
    )


def test_write_is_idempotent_and_replaces_the_window(writable) -> None:
    url, tp, cv = writable
    first = oq.attribute(tp, cv)
    counts = _write(url, first, cv)
    assert counts.inserted == first.links.height and counts.deleted == 0
    assert db_links(url, "orgW").equals(expected_links(first))
    assert _write(url, first, cv).changed == 0  # a rerun changes nothing
    shorter = oq.attribute(tp, cv, lookback=timedelta(days=2))
    counts = _write(url, shorter, cv)
    assert counts.deleted == first.links.height - shorter.links.height > 0
    assert db_links(url, "orgW").equals(expected_links(shorter))


def test_other_models_and_conversions_are_left_alone(writable) -> None:
    url, tp, cv = writable
    both = oq.attribute(tp, cv, models=["LINEAR", "FIRST_TOUCH"])
    _write(url, both, cv)
    only_linear = oq.attribute(tp, cv, models=["LINEAR"], lookback=timedelta(days=1))
    some = cv.head(cv.height // 2)
    links = only_linear.links.filter(pl.col("conversion_id").is_in(some["conversion_id"].implode()))
    postgres.write_links(url, links, organization_id="orgW", conversion_ids=some["conversion_id"], models=["LINEAR"])
    stored = db_links(url, "orgW")
    assert stored.filter(pl.col("model") == "FIRST_TOUCH").equals(
        expected_links(both).filter(pl.col("model") == "FIRST_TOUCH")
    )
    untouched = expected_links(both).filter(
        (pl.col("model") == "LINEAR") & ~pl.col("conversion_id").is_in(some["conversion_id"].implode())
    )
    assert stored.filter(
        (pl.col("model") == "LINEAR") & ~pl.col("conversion_id").is_in(some["conversion_id"].implode())
    ).equals(untouched)


def test_a_foreign_conversion_in_scope_writes_nothing(writable, postgres_url: str) -> None:
    url, tp, cv = writable
    result = oq.attribute(tp, cv)
    with pytest.raises(oq.InputError, match="do not belong to organization"):
        postgres.write_links(
            url, result.links, organization_id="someone_else", conversion_ids=cv["conversion_id"], models=["LINEAR"]
        )
    assert db_links(url, "orgW").height == 0


def test_a_crash_during_the_merge_leaves_the_previous_results(writable) -> None:
    url, tp, cv = writable
    before = oq.attribute(tp, cv)
    _write(url, before, cv)
    script = textwrap.dedent(
        f"""
        import os, signal
        from datetime import timedelta
        import adbc_driver_postgresql.dbapi as adbc
        import optiq_engine as oq
        from optiq_engine.io import postgres
        adbc.Connection.commit = lambda self: os.kill(os.getpid(), signal.SIGKILL)  # die just before COMMIT
        window = postgres.Window(organization_id="orgW")
        tp, cv = postgres.read_touchpoints({url!r}, window), postgres.read_conversions({url!r}, window)
        result = oq.attribute(tp, cv, lookback=timedelta(days=1))
        postgres.write_links({url!r}, result.links, organization_id="orgW", conversion_ids=cv["conversion_id"],
                             models=list(result.model_names))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    assert db_links(url, "orgW").equals(expected_links(before))


def test_events_take_click_ids_and_utm_from_properties(postgres_url: str) -> None:
    data = retag(oq.synthetic.generate(n_users=50, seed=41), "orgE")
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        seed.write_synthetic(url, data, page_views=True)
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as conn:
            conn.execute(
                """INSERT INTO "TrackingEvent" (id, "siteId", "eventId", type, "occurredAt", "anonId", properties)
                   VALUES ('evp', 'site_orgE', 'evp', 'PAGE_VIEW', '2026-02-01T00:00:00Z', 'u_x',
                           '{"gclid": "G1", "utm_source": "google", "utmMedium": "cpc"}')"""
            )
        events = postgres.read_events(url, postgres.Window(organization_id="orgE"))
    assert events.height == data.touchpoints.height + data.conversions.height + 1
    row = events.filter(pl.col("event_id") == "evp").row(0, named=True)
    assert (row["gclid"], row["utm_source"], row["utm_medium"], row["type"]) == ("G1", "google", "cpc", "PAGE_VIEW")
    assert set(events["type"].unique()) == {"PAGE_VIEW", "CONVERSION"}


def _write_journeys_read_ahead(url: str, journeys: pl.DataFrame, journey_events: pl.DataFrame, **scope):
    """``write_journeys`` as an incremental run does it: the stored rows read first, on another connection."""
    stored = postgres.read_stored_journeys(url, journeys, **scope)
    with postgres.transaction(url) as cur:
        return postgres.merge_journeys(cur, journeys, journey_events, stored=stored, **scope)


@pytest.mark.parametrize(
    "probe, ahead", [(False, False), (True, False), (True, True)], ids=["planner's joins", "index probes", "read ahead"]
)
def test_journeys_written_equal_the_frames_and_rewrites_change_nothing(
    postgres_url: str, monkeypatch, probe, ahead
) -> None:
    from optiq_engine.journeys import build_journeys

    if probe:  # every scope counts as small: read back, update and delete by index probes
        monkeypatch.setattr(postgres.read, "_PROBE_PAGES", 0)
    if ahead:  # read on other connections, each table's read split over several
        monkeypatch.setattr(postgres, "write_journeys", _write_journeys_read_ahead)
        monkeypatch.setattr(postgres.read, "_IDS_PER_CONNECTION", 1)

    data = retag(oq.synthetic.generate(n_users=300, seed=51), "orgJ")
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        seed.write_synthetic(url, data, page_views=True)
        events = postgres.read_events(url, postgres.Window(organization_id="orgJ"))
        built = build_journeys(events)
        users = events.get_column("anon_id")
        journeys, journey_events = postgres.write_journeys(
            url, built.journeys, built.journey_events, organization_id="orgJ", anon_ids=users
        )
        assert (journeys.inserted, journey_events.inserted) == (built.journeys.height, built.journey_events.height)
        again = postgres.write_journeys(
            url, built.journeys, built.journey_events, organization_id="orgJ", anon_ids=users
        )
        assert again[0].changed == again[1].changed == 0
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as conn:
            stored = conn.execute(
                'SELECT id, status::text, "eventCount", "touchPointCount", "conversionValue" FROM "Journey" ORDER BY id'
            ).fetchall()
        expected = (
            built.journeys.sort("journey_id")
            .select("journey_id", "status", "event_count", "touchpoint_count", "conversion_value_micros")
            .rows()
        )
        assert stored == expected
        # One user's history loses its last event: their journeys are rebuilt, the others untouched.
        last = events.sort("occurred_at").row(-1, named=True)
        fewer = build_journeys(events.filter(pl.col("event_id") != last["event_id"]))
        mine = pl.Series([last["anon_id"]])
        counts, event_counts = postgres.write_journeys(
            url,
            fewer.journeys.filter(pl.col("anon_id") == last["anon_id"]),
            fewer.journey_events.join(
                fewer.journeys.filter(pl.col("anon_id") == last["anon_id"]).select("journey_id"), on="journey_id"
            ),
            organization_id="orgJ",
            anon_ids=mine,
        )
        assert event_counts.deleted == 1 or counts.deleted >= 1
        # Another user's events are all gone: their journeys are deleted, and their events with them.
        gone = built.journeys.filter(pl.col("anon_id") != last["anon_id"]).get_column("anon_id")[0]
        theirs = built.journeys.filter(pl.col("anon_id") == gone)
        counts, event_counts = postgres.write_journeys(
            url,
            built.journeys.clear(),
            built.journey_events.clear(),
            organization_id="orgJ",
            anon_ids=pl.Series([gone]),
        )
        assert (counts.deleted, counts.inserted, counts.updated, event_counts.changed) == (theirs.height, 0, 0, 0)
        with psycopg.connect(dsn) as conn:
            (left,) = conn.execute(
                'SELECT count(*) FROM "JourneyEvent" WHERE "journeyId" = ANY(%s)', [theirs["journey_id"].to_list()]
            ).fetchone()
        assert left == 0


# --- foreign keys: set-based check (roles that may set session_replication_role) or Postgres' triggers ----


@contextmanager
def _app_role(url: str, *, granted_replication_role: bool = False) -> Iterator[str]:
    """``url`` as a login role without superuser (SET on session_replication_role only if granted).

    The engine's writer bypasses row-level security (migration 0007): Postgres refuses ``COPY FROM`` into a
    table with row-level security to a role subject to it, so a non-owner writer needs ``BYPASSRLS``.
    """
    role = object_name("app", record="role")
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER BYPASSRLS")
        conn.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.execute(f'GRANT TEMP ON DATABASE "{make_url(url).database}" TO {role}')
        if granted_replication_role:
            conn.execute(f"GRANT SET ON PARAMETER session_replication_role TO {role}")
    try:
        yield make_url(url).set(username=role).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("role", ["superuser", "app role", "app role granted SET"])
def test_the_write_transaction_compresses_its_wal_when_the_role_may(writable, role) -> None:
    """Page images are most of a merge's WAL: the writer asks for lz4 when the server logs them raw and the
    role may set ``wal_compression``; any other role writes as the server says."""
    url, _, _ = writable
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        server, lz4 = conn.execute(
            "SELECT setting, 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'wal_compression'"
        ).fetchone()
    may = role != "app role"
    with _app_role(url) if role != "superuser" else nullcontext(url) as write_url:
        if role == "app role granted SET":
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"GRANT SET ON PARAMETER wal_compression TO {make_url(write_url).username}")
        with postgres.transaction(write_url) as cur:
            cur.execute("SELECT current_setting('wal_compression')")
            assert cur.fetchone()[0] == ("lz4" if may and lz4 and server == "off" else server)


@pytest.mark.parametrize(
    ("as_app_role", "probe"),
    [(False, False), (False, True), (True, False)],
    ids=["superuser", "superuser, index probes", "app role"],
)
def test_links_referencing_a_missing_touchpoint_are_refused_and_nothing_is_written(
    writable, monkeypatch, as_app_role, probe
) -> None:
    url, tp, cv = writable
    monkeypatch.setattr(postgres.read, "_PROBE_PAGES", 0 if probe else 10**9)
    first = oq.attribute(tp, cv)
    _write(url, first, cv)
    changed = oq.attribute(tp, cv, lookback=timedelta(days=2))
    bad = changed.links.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit("tp_missing"))
        .otherwise("touchpoint_id")
        .alias("touchpoint_id")
    )
    with _app_role(url) if as_app_role else nullcontext(url) as write_url, pytest.raises(Exception) as refused:
        postgres.write_links(
            write_url,
            bad,
            organization_id="orgW",
            conversion_ids=cv["conversion_id"],
            models=list(changed.model_names),
        )
    if as_app_role:  # Postgres' own per-row check
        assert "foreign key" in str(refused.value) and "touchPointId" in str(refused.value)
    else:  # the set-based check, before anything is inserted
        assert isinstance(refused.value, oq.InputError)
        assert '1 "touchPointId" value(s) of the AttributionLink rows reference no "TouchPoint" row' in str(
            refused.value
        )
        assert "'tp_missing'" in str(refused.value)
    assert db_links(url, "orgW").equals(expected_links(first))  # the previous results, untouched


def test_links_of_a_conversion_outside_the_scope_are_refused(writable) -> None:
    url, tp, cv = writable
    result = oq.attribute(tp, cv)
    some = cv.head(3)["conversion_id"]
    with pytest.raises(oq.InputError, match="outside conversion_ids"):
        postgres.write_links(url, result.links, organization_id="orgW", conversion_ids=some, models=["LINEAR"])
    assert db_links(url, "orgW").height == 0


def test_a_role_without_superuser_writes_through_the_triggers_the_same_rows(writable) -> None:
    url, tp, cv = writable
    first, shorter = oq.attribute(tp, cv), oq.attribute(tp, cv, lookback=timedelta(days=2))
    with _app_role(url) as app_url:
        assert _write(app_url, first, cv).inserted == first.links.height
        assert _write(app_url, first, cv).changed == 0
        counts = _write(app_url, shorter, cv)
    assert counts.deleted == first.links.height - shorter.links.height > 0
    assert db_links(url, "orgW").equals(expected_links(shorter))


def test_changed_values_are_updated_in_place(writable) -> None:
    url, tp, cv = writable
    first = oq.attribute(tp, cv, models=["LINEAR"])
    _write(url, first, cv)
    halved = first.links.with_columns(pl.col("weight") / 2)
    counts = postgres.write_links(
        url, halved, organization_id="orgW", conversion_ids=cv["conversion_id"], models=["LINEAR"]
    )
    assert (counts.inserted, counts.updated, counts.deleted) == (0, first.links.height, 0)
    stored = db_links(url, "orgW")
    assert stored.get_column("weight").sum() == pytest.approx(first.links.get_column("weight").sum() / 2)


def test_another_insert_trigger_keeps_the_per_row_path_and_fires(writable) -> None:
    url, tp, cv = writable
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with postgres.transaction(url) as cur:
        assert postgres.merge._set_based_foreign_keys(cur, "AttributionLink") == [
            ("conversionId", '"TrackingEvent"', "id"),
            ("touchPointId", '"TouchPoint"', "id"),
        ]
    with psycopg.connect(dsn) as conn:  # a platform-side trigger: a replica-role insert would skip it
        conn.execute("CREATE TABLE seen (n bigint NOT NULL)")
        conn.execute(
            "CREATE FUNCTION count_links() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN INSERT INTO seen SELECT count(*) FROM inserted; RETURN NULL; END$$"
        )
        conn.execute(
            'CREATE TRIGGER count_links AFTER INSERT ON "AttributionLink" REFERENCING NEW TABLE AS inserted '
            "FOR EACH STATEMENT EXECUTE FUNCTION count_links()"
        )
    with postgres.transaction(url) as cur:
        assert postgres.merge._set_based_foreign_keys(cur, "AttributionLink") is None
    result = oq.attribute(tp, cv)
    assert _write(url, result, cv).inserted == result.links.height
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT sum(n) FROM seen").fetchone() == (result.links.height,)


def test_a_role_granted_set_on_session_replication_role_checks_set_based(writable) -> None:
    url, tp, cv = writable
    result = oq.attribute(tp, cv)
    with _app_role(url, granted_replication_role=True) as granted_url, _app_role(url) as plain_url:
        with postgres.transaction(granted_url) as cur:
            assert postgres.merge._set_based_foreign_keys(cur, "AttributionLink") is not None
        with postgres.transaction(plain_url) as cur:
            assert postgres.merge._set_based_foreign_keys(cur, "AttributionLink") is None
        assert _write(granted_url, result, cv).inserted == result.links.height
        assert _write(granted_url, result, cv).changed == 0
    assert db_links(url, "orgW").equals(expected_links(result))


@pytest.mark.parametrize("probe", [False, True], ids=["joins", "index probes"])
def test_the_set_based_check_locks_the_referenced_rows_until_commit(writable, monkeypatch, probe) -> None:
    """What Postgres' per-row trigger guarantees: a row that a new link references cannot be deleted by
    another transaction before the writer commits (its DELETE waits), while rows the writer's own
    transaction inserted (the journeys its journey events reference) are found without a lock. The same
    whether the referenced rows are found by the planner's joins or by index probes (few references)."""
    url, tp, cv = writable
    monkeypatch.setattr(postgres.read, "_PROBE_PAGES", 0 if probe else 10**9)
    result = oq.attribute(tp, cv, models=["LINEAR"])
    touchpoint = result.links["touchpoint_id"][0]
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    events = postgres.read_events(url, postgres.Window(organization_id="orgW"))
    journeys = oq.build_journeys(events)
    with postgres.transaction(url) as cur:
        postgres.merge_links(
            cur, result.links, organization_id="orgW", conversion_ids=cv["conversion_id"], models=["LINEAR"]
        )
        postgres.merge_journeys(
            cur, journeys.journeys, journeys.journey_events, organization_id="orgW", anon_ids=events["anon_id"]
        )
        cur.execute(f'SELECT count(*) FROM "Journey" WHERE xmin::text = {postgres.merge._MY_XID}')
        assert cur.fetchone()[0] == journeys.journeys.height  # written by this transaction: never locked
        cur.execute(f'SELECT count(*) FROM "Journey" WHERE xmax::text = {postgres.merge._MY_XID}')
        assert cur.fetchone()[0] == 0  # ... and not locked (a lock writes the locker's xid into xmax)
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("SET lock_timeout = '300ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute('DELETE FROM "TouchPoint" WHERE id = %s', (touchpoint,))
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute('DELETE FROM "TrackingEvent" WHERE id = %s', (journeys.journey_events["event_id"][0],))
    with psycopg.connect(dsn, autocommit=True) as other:  # committed: the links hold, the delete cascades
        other.execute('DELETE FROM "TouchPoint" WHERE id = %s', (touchpoint,))
    assert touchpoint not in db_links(url, "orgW")["touchpoint_id"].to_list()


@pytest.mark.parametrize("collision", ["within a side", "across the sides"])
def test_a_key_hash_collision_falls_back_to_the_exact_diff(writable, monkeypatch, collision) -> None:
    """The merge pairs stored and new rows on a 64-bit hash of the key; when two different keys share one it
    diffs on the string keys instead, and writes exactly what it would have written."""
    url, tp, cv = writable
    first = oq.attribute(tp, cv)
    _write(url, first, cv)
    shorter = oq.attribute(tp, cv, lookback=timedelta(days=2))
    if collision == "within a side":  # every key of a side shares one hash
        monkeypatch.setattr(postgres.merge, "_key_hash", lambda keys: pl.Series([0] * keys.height, dtype=pl.UInt64))
    else:  # unique within each side, but row i of one side pairs with row i of the other, whatever its key
        monkeypatch.setattr(
            postgres.merge, "_key_hash", lambda keys: pl.int_range(keys.height, eager=True).cast(pl.UInt64)
        )
    counts = _write(url, shorter, cv)
    assert counts.deleted == first.links.height - shorter.links.height > 0
    assert counts.inserted == 0 and counts.updated > 0  # LINEAR etc. weights change with fewer touchpoints
    assert db_links(url, "orgW").equals(expected_links(shorter))
    assert _write(url, shorter, cv).changed == 0


def test_a_probe_read_back_equals_the_join_and_restores_the_planner_settings(writable, monkeypatch) -> None:
    """The read-back by index probes (bitmap scans off for that statement) returns the join's rows, and the
    transaction's later statements plan as before."""
    url, tp, cv = writable
    _write(url, oq.attribute(tp, cv), cv)
    models = [list(oq.attribute(tp.head(10), cv.head(3)).model_names)]
    read = {}
    for probe, pages in (("probes", 0), ("join", 10**9)):
        monkeypatch.setattr(postgres.read, "_PROBE_PAGES", pages)
        with postgres.transaction(url) as cur:
            rows = postgres.write._LINKS.read_scope(cur, cv["conversion_id"], models)
            cur.execute("SELECT current_setting('enable_bitmapscan')")
            assert cur.fetchone()[0] == "on"
        read[probe] = rows.sort(rows.columns)
    assert read["probes"].height == len(db_links(url, "orgW")) > 0
    assert read["probes"].equals(read["join"])


def test_small_scopes_are_read_updated_and_deleted_by_index_probes(writable, monkeypatch) -> None:
    """A merge whose scope is small for the table finds its rows by index probes (the read-back as a lateral
    subquery; DELETE and UPDATE by primary key with hash and merge joins off for that statement only) and
    writes exactly what the planner's joins write."""
    url, tp, cv = writable
    first = oq.attribute(tp, cv)
    _write(url, first, cv)
    few, settings = [], []
    real_few, real_probes = postgres.merge._few, postgres.merge._primary_key_probes

    def spy_few(cur, table, ids):
        few.append((table, real_few(cur, table, ids)))
        return few[-1][1]

    def joins(cur):
        cur.execute("SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin')")
        settings.append(cur.fetchone())

    @contextmanager
    def spy_probes(cur, table, ids):
        with real_probes(cur, table, ids) as probing:
            joins(cur)
            yield probing
        joins(cur)

    monkeypatch.setattr(postgres.merge, "_few", spy_few)
    for module in (postgres.merge, postgres.write):  # the merge's own probes and the links' organization check
        monkeypatch.setattr(module, "_primary_key_probes", spy_probes)
    monkeypatch.setattr(postgres.read, "_PROBE_PAGES", 0)  # every scope is small
    shorter = oq.attribute(tp, cv, lookback=timedelta(days=2))
    counts = _write(url, shorter, cv)
    assert counts.deleted == first.links.height - shorter.links.height > 0 and counts.updated > 0
    assert db_links(url, "orgW").equals(expected_links(shorter))
    # the conversions' organization checked, read back, delete, update
    assert few == [("TrackingEvent", True)] + [("AttributionLink", True)] * 3
    assert settings == [("off", "off"), ("on", "on")] * 3  # check, delete, update; each then reset
    monkeypatch.setattr(postgres.read, "_PROBE_PAGES", 10**9)  # no scope is small: the planner's joins
    few.clear()
    settings.clear()
    assert _write(url, shorter, cv).changed == 0
    assert few == [("TrackingEvent", False), ("AttributionLink", False)]
    assert settings == [("on", "on")] * 2  # the check, by the planner's joins
