"""Postgres through Spark's JDBC source and ``optiq run --engine spark`` against a real database.

Needs PostgreSQL (the ``postgres_url`` fixture: OPTIQ_REQUIRE_POSTGRES rules), pyspark with Java 17 and the
PostgreSQL JDBC driver jar (Debian's libpostgresql-jdbc-java, or OPTIQ_POSTGRES_JDBC_JAR): without them
the tests skip, unless OPTIQ_REQUIRE_SPARK=1 (CI), which fails them.
"""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import psycopg
import pytest
from typer.testing import CliRunner

import optiq_engine as oq
from optiq_engine.batch import run_batch
from optiq_engine.cli import app
from optiq_engine.io import db, postgres, seed
from tests.support.pg import fresh_database
from tests.support.pg_data import db_links, expected_links, psycopg_dsn, retag
from tests.support.spark import local_session

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]
ORG = "orgS"
runner = CliRunner()


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    yield from local_session(jdbc=True)


@pytest.fixture(scope="module")
def database(postgres_url: str, spark: object) -> Iterator[tuple[str, oq.synthetic.SyntheticData]]:
    data = retag(oq.synthetic.generate(n_users=300, seed=47), ORG)
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        seed.write_synthetic(url, data, page_views=True)
        yield url, data


def _journey_rows(url: str) -> list[tuple]:
    with psycopg.connect(psycopg_dsn(url)) as conn:
        return conn.execute(
            """SELECT j.*, (SELECT array_agg(je."trackingEventId" || ':' || je."sequenceNumber" ORDER BY je."sequenceNumber")
               FROM "JourneyEvent" je WHERE je."journeyId" = j.id) FROM (
                 SELECT id, "anonId", "sessionId", status::text, "startedAt", "convertedAt", "lastActivityAt",
                        "conversionValue", "touchPointCount", "eventCount" FROM "Journey" WHERE "organizationId" = %s
               ) j ORDER BY j.id""",
            (ORG,),
        ).fetchall()


def test_jdbc_reads_equal_the_adbc_reads_and_never_split_a_user(spark, database) -> None:
    from pyspark.sql import functions as F

    from optiq_engine.spark.postgres import read_postgres

    url, _ = database
    window = postgres.Window(organization_id=ORG)
    for what, reader, key in (
        ("touchpoints", postgres.read_touchpoints, "touchpoint_id"),
        ("conversions", postgres.read_conversions, "conversion_id"),
    ):
        frame = read_postgres(spark, url, what, window, partitions=3)
        assert frame.rdd.getNumPartitions() == 3
        got = pl.from_arrow(frame.toArrow()).sort(key)
        expected = reader(url, window).sort(key)
        assert got.columns == expected.columns
        assert got.select(key, "anon_id", "occurred_at").equals(expected.select(key, "anon_id", "occurred_at"))
        tagged = pl.from_arrow(frame.select("anon_id", F.spark_partition_id().alias("part")).toArrow())
        assert tagged.group_by("anon_id").agg(pl.col("part").n_unique()).get_column("part").max() == 1
        assert tagged.get_column("part").n_unique() == 3


def test_run_engine_spark_writes_the_rows_of_the_local_run_and_reruns_change_nothing(spark, database) -> None:
    url, data = database
    result = runner.invoke(
        app,
        [
            "run",
            "--database-url",
            url,
            "--org",
            ORG,
            "--full",
            "--engine",
            "spark",
            "--master",
            "local[2]",
            "--partitions",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    expected = expected_links(oq.attribute(data.touchpoints.drop("channel"), data.conversions))
    assert db_links(url, ORG).equals(expected)
    journeys = _journey_rows(url)
    assert journeys and _db_journeys_count(url) == len(journeys)
    # The single-machine run over the same database finds nothing to change: same links, journeys, events.
    local = run_batch(url, organization_id=ORG, full=True)
    assert (local.inserted, local.updated, local.deleted, local.journeys_changed) == (0, 0, 0, 0)
    # A second Spark run changes nothing either, and the summaries agree.
    from optiq_engine.spark.job import compute_on_spark

    again = run_batch(url, organization_id=ORG, full=True, engine="spark", partitions=2, compute=compute_on_spark)
    assert (again.inserted, again.updated, again.deleted, again.journeys_changed) == (0, 0, 0, 0)
    assert (again.touchpoints, again.conversions, again.links, again.unattributed, again.journeys) == (
        local.touchpoints,
        local.conversions,
        local.links,
        local.unattributed,
        local.journeys,
    )
    assert db_links(url, ORG).equals(expected) and _journey_rows(url) == journeys
    with psycopg.connect(psycopg_dsn(url)) as conn:
        runs = conn.execute('SELECT status, mode FROM "EngineRun" ORDER BY "startedAt"').fetchall()
    assert runs == [("SUCCEEDED", "FULL")] * 3


def _db_journeys_count(url: str) -> int:
    with psycopg.connect(psycopg_dsn(url)) as conn:
        (n,) = conn.execute('SELECT count(*) FROM "Journey" WHERE "organizationId" = %s', (ORG,)).fetchone()
    return n


def test_jdbc_options_from_a_postgres_url() -> None:
    pytest.importorskip("pyspark")
    from optiq_engine.spark.postgres import jdbc_options

    url, props = jdbc_options("postgresql+psycopg://app:p%40ss@db.example:6543/optiq?sslmode=require")
    assert url == "jdbc:postgresql://db.example:6543/optiq?sslmode=require"
    assert props == {"driver": "org.postgresql.Driver", "user": "app", "password": "p@ss"}
    assert jdbc_options("postgresql://postgres@127.0.0.1/x")[0] == "jdbc:postgresql://127.0.0.1:5432/x"


def test_jdbc_options_take_libpq_defaults_for_what_the_url_leaves_out(monkeypatch) -> None:
    """Spark read user postgres and database postgres where the local engine (libpq) read PGUSER's PGDATABASE."""
    pytest.importorskip("pyspark")
    from optiq_engine.spark.postgres import jdbc_options

    for name, value in {"PGUSER": "alice", "PGDATABASE": "shop", "PGPORT": "6000", "PGPASSWORD": "s3"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PGHOST", raising=False)
    url, props = jdbc_options("postgresql:///")
    assert url == "jdbc:postgresql://localhost:6000/shop"
    assert props == {"driver": "org.postgresql.Driver", "user": "alice", "password": "s3"}
    monkeypatch.delenv("PGDATABASE")
    assert jdbc_options("postgresql://127.0.0.1")[0] == "jdbc:postgresql://127.0.0.1:6000/alice"  # libpq: dbname = user
    url, props = jdbc_options("postgresql://bob:pw@db:5433/x")  # what the URL says wins
    assert (url, props["user"], props["password"]) == ("jdbc:postgresql://db:5433/x", "bob", "pw")


def test_engine_spark_refuses_touchpoint_extraction() -> None:
    from optiq_engine.errors import ConfigError

    with pytest.raises(ConfigError, match="engine"):
        run_batch("postgresql://nowhere/x", organization_id=ORG, engine="spark", extract_touchpoints=True)
    with pytest.raises(ConfigError, match="engine"):
        run_batch("postgresql://nowhere/x", organization_id=ORG, engine="dask")
