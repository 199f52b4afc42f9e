"""Getting data in: optiq db load / load_events, optiq demo --database-url, optiq run on events without
touchpoints, and optiq attribute on CSV with one-line file errors."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import psycopg
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

import optiq_engine as oq
from optiq_engine.batch import run_batch
from optiq_engine.cli import app
from optiq_engine.errors import ConfigError, InputError, SinkError, SourceError
from optiq_engine.io import db
from optiq_engine.io.load import LoadSummary, load_events
from optiq_engine.io.parquet import ResultWriter, read_source
from optiq_engine.io.seed import synthetic_events
from tests.support.pg import fresh_database

runner = CliRunner()


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _rows(url: str, sql: str, *params: object) -> list[tuple]:
    with psycopg.connect(_dsn(url)) as conn:
        return conn.execute(sql, params).fetchall()


def _events() -> pl.DataFrame:
    """Four valid events of two users: a click-id visit, a UTM visit, a direct visit and a conversion."""
    t = [datetime(2024, 3, 1, 10, m, tzinfo=UTC) for m in (0, 5, 10, 20)]
    return pl.DataFrame(
        {
            "event_id": ["e1", "e2", "e3", "e4"],
            "anon_id": ["u1", "u2", "u1", "u1"],
            "occurred_at": t,
            "type": ["PAGE_VIEW", "PAGE_VIEW", "PAGE_VIEW", "CONVERSION"],
            "session_id": ["s1", "s2", "s1", "s1"],
            "utm_source": [None, "newsletter", None, None],
            "utm_medium": [None, "email", None, None],
            "gclid": ["G1", None, None, None],
            "url": ["https://shop.example/?gclid=G1", None, "https://shop.example/cart", None],
            "value_micros": [None, None, None, 49_990_000],
            "name": [None, None, None, "purchase"],
            "properties": ['{"plan": "pro"}', None, None, None],
        }
    )


@pytest.fixture()
def url(postgres_url: str) -> Iterator[str]:
    with fresh_database(postgres_url, upgraded=True) as fresh:
        db.upgrade(fresh)
        yield fresh


# --- load_events -------------------------------------------------------------------------------------
@pytest.mark.postgres
def test_a_load_creates_the_organization_and_site_and_a_rerun_inserts_nothing(url: str) -> None:
    first = load_events(_events(), url, organization_id="acme", site_id="acme-web", create=True)
    assert isinstance(first, LoadSummary)
    assert (first.rows, first.inserted, first.already_present, first.quarantined) == (4, 4, 0, 0)
    assert first.created_organization and first.created_site
    again = load_events(_events(), url, organization_id="acme", site_id="acme-web")
    assert (again.inserted, again.already_present) == (0, 4)
    assert not again.created_organization and not again.created_site
    assert _rows(url, 'SELECT count(*) FROM "TrackingEvent"') == [(4,)]
    assert _rows(url, 'SELECT "organizationId" FROM "TrackingSite" WHERE id = %s', "acme-web") == [("acme",)]
    stored = _rows(
        url,
        """SELECT "eventId", type::text, "anonId", "sessionId", "utmSource", gclid, url, "valueMicros", name,
                  properties, "occurredAt" FROM "TrackingEvent" ORDER BY "eventId" """,
    )
    assert stored[0][:8] == ("e1", "PAGE_VIEW", "u1", "s1", None, "G1", "https://shop.example/?gclid=G1", None)
    assert stored[0][9] == {"plan": "pro"}
    assert stored[3][7:9] == (49_990_000, "purchase")
    assert stored[3][10] == datetime(2024, 3, 1, 10, 20, tzinfo=UTC)


@pytest.mark.postgres
def test_new_events_go_in_and_stored_ones_are_left_as_they_are(url: str) -> None:
    load_events(_events().head(2), url, organization_id="acme", site_id="acme-web", create=True)
    changed = _events().with_columns(
        pl.when(pl.col("event_id") == "e1").then(pl.lit("u9")).otherwise("anon_id").alias("anon_id")
    )
    summary = load_events(changed, url, organization_id="acme", site_id="acme-web")
    assert (summary.inserted, summary.already_present) == (2, 2)
    assert _rows(url, """SELECT "anonId" FROM "TrackingEvent" WHERE "eventId" = 'e1'""") == [("u1",)]


@pytest.mark.postgres
def test_a_missing_organization_or_site_is_refused_without_create(url: str) -> None:
    with pytest.raises(ConfigError, match="no organization 'acme'.*create"):
        load_events(_events(), url, organization_id="acme", site_id="acme-web")
    load_events(_events().head(1), url, organization_id="acme", site_id="acme-web", create=True)
    with pytest.raises(ConfigError, match="no tracking site 'other-web'.*create"):
        load_events(_events(), url, organization_id="acme", site_id="other-web")
    assert _rows(url, 'SELECT count(*) FROM "TrackingEvent"') == [(1,)]


@pytest.mark.postgres
def test_a_site_of_another_organization_is_refused_and_nothing_is_written(url: str) -> None:
    load_events(_events(), url, organization_id="acme", site_id="acme-web", create=True)
    other = _events().with_columns(pl.lit("x").add(pl.col("event_id")).alias("event_id"))
    with pytest.raises(ConfigError, match="'acme-web' belongs to another organization, not 'intruder'"):
        load_events(other, url, organization_id="intruder", site_id="acme-web", create=True)
    assert _rows(url, 'SELECT count(*) FROM "TrackingEvent"') == [(4,)]
    assert _rows(url, """SELECT count(*) FROM "Organization" WHERE id = 'intruder'""") == [(0,)]  # rolled back


@pytest.mark.postgres
def test_rows_naming_another_site_or_organization_are_invalid(url: str) -> None:
    events = _events().with_columns(site_id=pl.Series(["acme-web", "other", None, "acme-web"]))
    summary = load_events(events, url, organization_id="acme", site_id="acme-web", create=True, on_invalid="quarantine")
    assert (summary.inserted, summary.quarantined) == (3, 1)
    assert dict(summary.reasons) == {"site_id is not 'acme-web'": 1}


def _bad_events() -> pl.DataFrame:
    bad = pl.DataFrame(
        {
            "event_id": ["e5", "e6", "e7", "e1", None],
            "anon_id": [None, "u3", "u3", "u1", "u4"],
            "occurred_at": [datetime(2024, 3, 2, tzinfo=UTC)] * 5,
            "type": ["PAGE_VIEW", "CLICK", "PAGE_VIEW", "PAGE_VIEW", "PAGE_VIEW"],
            "properties": [None, None, "{not json", None, None],
        }
    )
    return pl.concat([_events(), bad], how="diagonal_relaxed")


@pytest.mark.postgres
def test_invalid_rows_raise_with_counts_and_nothing_is_written(url: str) -> None:
    with pytest.raises(InputError, match=r"5 invalid event row\(s\).*nothing was loaded") as info:
        load_events(_bad_events(), url, organization_id="acme", site_id="acme-web", create=True)
    assert info.value.counts == {
        "duplicate event_id": 1,
        "null anon_id": 1,
        "null event_id": 1,
        "unknown type": 1,
        "unparseable properties": 1,
    }
    assert _rows(url, 'SELECT count(*) FROM "TrackingEvent"') == [(0,)]
    assert _rows(url, 'SELECT count(*) FROM "Organization"') == [(0,)]


@pytest.mark.postgres
def test_invalid_rows_are_quarantined_with_a_reason_and_counted(url: str) -> None:
    summary = load_events(
        _bad_events(), url, organization_id="acme", site_id="acme-web", create=True, on_invalid="quarantine"
    )
    assert (summary.rows, summary.inserted, summary.quarantined) == (9, 4, 5)
    assert sum(summary.reasons.values()) == summary.quarantined_rows.height == 5
    assert summary.quarantined_rows.get_column("reason").null_count() == 0
    assert _rows(url, 'SELECT count(*) FROM "TrackingEvent"') == [(4,)]


@pytest.mark.postgres
def test_a_load_inside_the_callers_transaction_rolls_back_with_it(url: str) -> None:
    with psycopg.connect(_dsn(url)) as conn:
        summary = load_events(_events(), conn, organization_id="acme", site_id="acme-web", create=True)
        assert summary.inserted == 4
        assert conn.execute('SELECT count(*) FROM "TrackingEvent"').fetchone() == (4,)
        assert not conn.closed
        conn.rollback()
    assert _rows(url, 'SELECT count(*) FROM "TrackingEvent"') == [(0,)]


@pytest.mark.postgres
def test_a_load_through_a_sqlalchemy_connection_commits_with_it(url: str) -> None:
    from sqlalchemy import create_engine, pool

    engine = create_engine(db.normalise_url(url), poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            assert load_events(_events(), conn, organization_id="acme", site_id="acme-web", create=True).inserted == 4
        with pytest.raises(RuntimeError), engine.begin() as conn:
            load_events(
                _events().with_columns(event_id=pl.lit("z") + pl.col("event_id")),
                conn,
                organization_id="acme",
                site_id="acme-web",
            )
            raise RuntimeError("the caller fails after the load")
    finally:
        engine.dispose()
    assert _rows(url, 'SELECT count(*) FROM "TrackingEvent"') == [(4,)]


@pytest.mark.postgres
def test_cli_load_reads_times_without_a_zone_in_the_given_one(url: str, tmp_path: Path) -> None:
    csv = tmp_path / "events.csv"
    csv.write_text("event_id,anon_id,occurred_at,type\ne1,u1,2024-03-01T10:00:00,PAGE_VIEW\n")
    args = ["db", "load", str(csv), "--database-url", url, "--org", "acme", "--site", "acme-web", "--create"]
    result = runner.invoke(app, [*args, "--timezone", "Europe/Paris"])
    assert result.exit_code == 0, result.output
    assert _rows(url, 'SELECT "occurredAt" FROM "TrackingEvent"') == [(datetime(2024, 3, 1, 9, tzinfo=UTC),)]


@pytest.mark.postgres
def test_a_role_bound_by_row_level_security_loads_its_organization_only(url: str) -> None:
    from tests.support.pg import object_name

    role = object_name("role", record="role")
    tables = '"Organization", "TrackingSite", "TrackingEvent"'
    with psycopg.connect(_dsn(url), autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        admin.execute(f"GRANT SELECT, INSERT ON {tables} TO {role}")
    try:
        as_role = make_url(url).set(username=role).render_as_string(hide_password=False)
        summary = load_events(_events(), as_role, organization_id="acme", site_id="acme-web", create=True)
        assert (summary.inserted, summary.created_organization, summary.created_site) == (4, True, True)
        load_events(_events(), url, organization_id="other", site_id="other-web", create=True)  # as the owner
        with pytest.raises(ConfigError, match="other-web"):  # invisible to the role, and not its to write
            load_events(_events(), as_role, organization_id="acme", site_id="other-web", create=True)
        assert _rows(url, """SELECT "siteId", count(*) FROM "TrackingEvent" GROUP BY 1 ORDER BY 1""") == [
            ("acme-web", 4),
            ("other-web", 4),
        ]
    finally:
        with psycopg.connect(_dsn(url), autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def test_bad_arguments_are_refused_before_any_connection() -> None:
    with pytest.raises(ConfigError, match="site_id must be a non-empty string"):
        load_events(_events(), "postgresql://nobody@127.0.0.1:1/none", organization_id="acme", site_id=" ")
    with pytest.raises(ConfigError, match="on_invalid"):
        load_events(
            _events(), "postgresql://nobody@127.0.0.1:1/none", organization_id="a", site_id="b", on_invalid="drop"
        )  # type: ignore[arg-type]


# --- optiq db load -----------------------------------------------------------------------------------
def _as_csv(events: pl.DataFrame, path: Path) -> Path:
    events.write_csv(path)
    return path


@pytest.mark.postgres
def test_cli_load_csv_and_parquet_store_the_same_events(url: str, tmp_path: Path) -> None:
    csv = _as_csv(_events(), tmp_path / "events.csv")
    _events().write_parquet(tmp_path / "events.parquet")
    args = ["db", "load", "--database-url", url, "--org", "acme"]
    result = runner.invoke(app, [*args, "--site", "csv-web", "--create", str(csv)])
    assert result.exit_code == 0, result.output
    assert "4 inserted, 0 already present" in result.output and "optiq run --org acme --full" in result.output
    result = runner.invoke(app, [*args, "--site", "pq-web", "--create", str(tmp_path / "events.parquet")])
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, [*args, "--site", "csv-web", str(csv)])
    assert again.exit_code == 0 and "0 inserted, 4 already present" in again.output
    columns = """"eventId", type, name, "occurredAt", "anonId", "sessionId", url, "utmSource", "utmMedium", gclid,
                 "valueMicros", properties"""
    by_site = [
        _rows(url, f'SELECT {columns} FROM "TrackingEvent" WHERE "siteId" = %s ORDER BY 1', s)
        for s in ("csv-web", "pq-web")
    ]
    assert by_site[0] == by_site[1] and len(by_site[0]) == 4


@pytest.mark.postgres
def test_cli_load_fails_on_invalid_rows_with_one_line_or_quarantines_them(url: str, tmp_path: Path) -> None:
    csv = _as_csv(_bad_events(), tmp_path / "events.csv")
    args = ["db", "load", str(csv), "--database-url", url, "--org", "acme", "--site", "acme-web", "--create"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2
    assert "5 invalid event row(s)" in refused.output and "--quarantine" in refused.output
    assert "Traceback" not in refused.output
    assert _rows(url, 'SELECT count(*) FROM "TrackingEvent"') == [(0,)]
    bad = tmp_path / "bad.csv"
    result = runner.invoke(app, [*args, "--quarantine", str(bad)])
    assert result.exit_code == 0, result.output
    assert "4 inserted" in result.output and "5 quarantined" in result.output
    written = pl.read_csv(bad, infer_schema=False)
    assert written.height == 5 and written.get_column("reason").null_count() == 0
    assert sorted(written.get_column("reason").to_list()) == sorted(
        ["duplicate event_id", "null anon_id", "null event_id", "unknown type", "unparseable properties"]
    )
    assert _rows(url, 'SELECT count(*) FROM "TrackingEvent"') == [(4,)]


@pytest.mark.postgres
def test_cli_load_refuses_a_site_of_another_organization(url: str, tmp_path: Path) -> None:
    load_events(_events(), url, organization_id="acme", site_id="acme-web", create=True)
    csv = _as_csv(_events(), tmp_path / "events.csv")
    result = runner.invoke(
        app, ["db", "load", str(csv), "--database-url", url, "--org", "other", "--site", "acme-web", "--create"]
    )
    assert result.exit_code == 2
    assert "belongs to another organization" in result.output and "Traceback" not in result.output


# --- optiq run on events without touchpoints ----------------------------------------------------------
@pytest.fixture()
def events_only(url: str) -> tuple[str, oq.synthetic.SyntheticData]:
    """An organization with tracking events (page views with UTM / click ids, conversions) and no TouchPoint row."""
    data = oq.synthetic.generate(n_users=300, seed=7)
    load_events(synthetic_events(data), url, organization_id="acme", site_id="acme-web", create=True)
    return url, data


@pytest.mark.postgres
def test_a_run_extracts_touchpoints_by_default_when_there_are_none(events_only) -> None:
    url, _ = events_only
    result = runner.invoke(app, ["run", "--database-url", url, "--org", "acme", "--full"])
    assert result.exit_code == 0, result.output
    assert "touchpoints extracted" in result.output and "docs/touchpoints.md" in result.output
    (links,) = _rows(url, 'SELECT count(*) FROM "AttributionLink"')[0]
    assert links > 0
    # The same links as an explicit extraction; later runs keep extracting (the last run did).
    explicit = run_batch(url, organization_id="acme", full=True, extract_touchpoints=True)
    assert (explicit.inserted, explicit.updated, explicit.deleted) == (0, 0, 0)
    later = run_batch(url, organization_id="acme", full=True)
    assert later.touchpoints_extracted and later.changed == 0


@pytest.mark.postgres
def test_a_run_told_not_to_extract_names_the_flag(events_only) -> None:
    url, _ = events_only
    result = runner.invoke(app, ["run", "--database-url", url, "--org", "acme", "--full", "--no-extract-touchpoints"])
    assert result.exit_code == 0, result.output
    assert "--extract-touchpoints" in result.output
    assert _rows(url, 'SELECT count(*) FROM "AttributionLink"') == [(0,)]


@pytest.mark.postgres
def test_default_extraction_with_partitions_is_one_line_naming_the_choice(events_only) -> None:
    url, _ = events_only
    result = runner.invoke(app, ["run", "--database-url", url, "--org", "acme", "--full", "--partitions", "2"])
    assert result.exit_code == 2
    assert "--no-extract-touchpoints" in result.output and "Traceback" not in result.output


@pytest.mark.postgres
def test_a_full_run_without_events_names_optiq_db_load(url: str) -> None:
    summary = load_events(_events().clear(), url, organization_id="empty", site_id="empty-web", create=True)
    assert (summary.rows, summary.inserted) == (0, 0)
    result = runner.invoke(app, ["run", "--database-url", url, "--org", "empty", "--full"])
    assert result.exit_code == 0, result.output
    assert "optiq db load" in result.output


@pytest.mark.postgres
def test_a_run_with_platform_touchpoints_reads_them(url: str) -> None:
    from optiq_engine.io import seed

    data = oq.synthetic.generate(n_users=200, seed=8)
    data = oq.synthetic.SyntheticData(
        touchpoints=data.touchpoints.with_columns(organization_id=pl.lit("plat"), site_id=pl.lit("plat-web")),
        conversions=data.conversions.with_columns(organization_id=pl.lit("plat"), site_id=pl.lit("plat-web")),
        truth=data.truth,
        seed=data.seed,
    )
    seed.write_synthetic(url, data, page_views=True)
    summary = run_batch(url, organization_id="plat", full=True)
    assert not summary.touchpoints_extracted and summary.touchpoints == data.touchpoints.height


# --- optiq demo --database-url ------------------------------------------------------------------------
@pytest.mark.postgres
def test_demo_seeds_an_organization_through_the_loader_and_runs_the_nightly_job(url: str) -> None:
    args = ["demo", "--database-url", url, "--users", "300", "--org", "demo"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "optiq keys create" in result.output and "/v1/metrics" in result.output and "optiq serve" in result.output
    (events,) = _rows(
        url,
        """SELECT count(*) FROM "TrackingEvent" e JOIN "TrackingSite" s ON s.id = e."siteId"
                              WHERE s."organizationId" = 'demo'""",
    )[0]
    data = oq.synthetic.generate(n_users=300, seed=0)
    assert events == data.touchpoints.height + data.conversions.height
    assert _rows(
        url, """SELECT role::text FROM "Membership" WHERE "userId" = 'demo' AND "organizationId" = 'demo'"""
    ) == [("OWNER",)]
    (links,) = _rows(url, 'SELECT count(*) FROM "AttributionLink"')[0]
    assert links > 0
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "0 new" in again.output and "(0 inserted)" in again.output
    key = runner.invoke(app, ["keys", "create", "--database-url", url, "--org", "demo", "--user", "demo"])
    assert key.exit_code == 0 and key.output.strip().startswith("optiq_")


# --- optiq attribute on CSV, file errors -------------------------------------------------------------
@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, oq.synthetic.SyntheticData]:
    d = tmp_path_factory.mktemp("in")
    data = oq.synthetic.generate(n_users=400, seed=5)
    for name, frame in (("tp", data.touchpoints), ("cv", data.conversions)):
        frame.write_parquet(d / f"{name}.parquet")
        frame.write_csv(d / f"{name}.csv")
        (d / f"{name}_dir").mkdir()
        frame.head(frame.height // 2).write_csv(d / f"{name}_dir" / "a.csv")
        frame.tail(frame.height - frame.height // 2).write_csv(d / f"{name}_dir" / "b.csv")
    return d, data


def _links(out: Path) -> pl.DataFrame:
    links = pl.read_parquet(out / "links.parquet").with_columns(pl.col("model", "channel").cast(pl.String))
    return links.sort("model", "conversion_id", "position")


def _attribute(tp: Path, cv: Path, out: Path, *more: str):
    return runner.invoke(
        app, ["attribute", "--touchpoints", str(tp), "--conversions", str(cv), "--out", str(out), *more]
    )


def test_attribute_reads_csv_files_and_folders_like_parquet(inputs, tmp_path: Path) -> None:
    d, _ = inputs
    for name, (tp, cv) in {
        "parquet": ("tp.parquet", "cv.parquet"),
        "csv": ("tp.csv", "cv.csv"),
        "dirs": ("tp_dir", "cv_dir"),
    }.items():
        result = _attribute(d / tp, d / cv, tmp_path / name)
        assert result.exit_code == 0, result.output
    assert _links(tmp_path / "csv").equals(_links(tmp_path / "parquet"))
    assert _links(tmp_path / "dirs").equals(_links(tmp_path / "parquet"))
    partitioned = _attribute(d / "tp.csv", d / "cv.csv", tmp_path / "parts", "--partitions", "2")
    assert partitioned.exit_code == 0, partitioned.output


def test_csv_ids_stay_text_and_integer_micros_stay_integers(tmp_path: Path) -> None:
    path = tmp_path / "cv.csv"
    path.write_text("conversion_id,anon_id,occurred_at,value_micros\n007,0042,2024-01-01T00:00:00Z,1500000\n")
    frame = read_source(path)
    assert frame.row(0) == ("007", "0042", "2024-01-01T00:00:00Z", 1_500_000)
    assert frame.schema["value_micros"] == pl.Int64


def _damaged_parquet(good: Path, path: Path) -> Path:
    """``good`` with its data pages overwritten (footer intact: the schema reads, the data does not)."""
    raw = bytearray(good.read_bytes())
    (footer,) = struct.unpack("<i", bytes(raw[-8:-4]))
    raw[8 : len(raw) - footer - 8 - 100] = b"\x55" * (len(raw) - footer - 8 - 100 - 8)
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("damaged", "cannot read"),
        ("truncated", "cannot read Parquet"),
        ("missing", "no such file or directory"),
        ("unknown format", "neither Parquet nor CSV"),
        ("mixed folder", "both .parquet and .csv"),
        ("empty folder", "no .parquet or .csv files"),
    ],
)
def test_attribute_input_file_errors_are_one_line(inputs, tmp_path: Path, case: str, message: str) -> None:
    d, _ = inputs
    tp = {
        "damaged": lambda: _damaged_parquet(d / "tp.parquet", tmp_path / "tp.parquet"),
        "truncated": lambda: (
            (tmp_path / "tp.parquet").write_bytes((d / "tp.parquet").read_bytes()[:3000]) and tmp_path / "tp.parquet"
        ),
        "missing": lambda: tmp_path / "nope.parquet",
        "unknown format": lambda: (tmp_path / "tp.txt").write_text("hello") and tmp_path / "tp.txt",
        "mixed folder": lambda: _mixed(d, tmp_path / "mixed"),
        "empty folder": lambda: (tmp_path / "empty").mkdir() or tmp_path / "empty",
    }[case]()
    result = _attribute(tp, d / "cv.parquet", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3, result.output  # one line, folded at 80 columns


def _mixed(d: Path, folder: Path) -> Path:
    folder.mkdir()
    (folder / "a.parquet").write_bytes((d / "tp.parquet").read_bytes())
    (folder / "b.csv").write_bytes((d / "tp.csv").read_bytes())
    return folder


def test_read_source_raises_source_error_for_a_damaged_file(inputs, tmp_path: Path) -> None:
    d, _ = inputs
    with pytest.raises(SourceError, match="damaged or truncated"):
        read_source(_damaged_parquet(d / "tp.parquet", tmp_path / "x.parquet"))


def test_attribute_out_naming_a_file_is_one_line_and_leaves_it(inputs, tmp_path: Path) -> None:
    d, _ = inputs
    target = tmp_path / "results"
    target.write_text("keep me")
    result = _attribute(d / "tp.parquet", d / "cv.parquet", target)
    assert result.exit_code == 2
    assert "is an existing file: name a folder" in result.output and "Traceback" not in result.output
    assert target.read_text() == "keep me"


def test_attribute_unwritable_out_is_one_line_and_previous_results_stay(inputs, tmp_path: Path, monkeypatch) -> None:
    d, _ = inputs
    out = tmp_path / "out"
    assert _attribute(d / "tp.parquet", d / "cv.parquet", out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def read_only(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    result = _attribute(d / "tp.parquet", d / "cv.parquet", out)
    assert result.exit_code == 2
    assert "cannot write to output folder" in result.output and "Permission denied" in result.output
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes to read-only folders")
def test_attribute_read_only_out_folder_is_one_line(inputs, tmp_path: Path) -> None:
    d, _ = inputs
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        result = _attribute(d / "tp.parquet", d / "cv.parquet", out)
    finally:
        out.chmod(0o755)
    assert result.exit_code == 2 and "cannot write to output folder" in result.output


def test_a_failed_write_keeps_the_previous_results(tmp_path: Path) -> None:
    data = oq.synthetic.generate(n_users=100, seed=2)
    result = oq.attribute(data.touchpoints, data.conversions, models=["LINEAR"])
    with ResultWriter(tmp_path) as writer:
        writer.write(result)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(SinkError), ResultWriter(tmp_path / "links.parquet"):
        pass
    with pytest.raises(RuntimeError), ResultWriter(tmp_path) as writer:
        writer.write(result)
        raise RuntimeError("the run failed")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert json.dumps(sorted(before)) == json.dumps(["credit.parquet", "links.parquet", "unattributed.parquet"])
