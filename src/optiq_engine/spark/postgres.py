"""Postgres through Spark's JDBC source, and the Spark stage of the nightly job (``optiq run --engine spark``).

Reads run the very queries of :mod:`optiq_engine.io.postgres` (:func:`~optiq_engine.io.postgres.read_sql`)
as a ``dbtable`` subquery, split into ``partitions`` JDBC reads by a server-side hash of ``anon_id``
(:func:`~optiq_engine.io.postgres.hash_partition`, the predicate of ``iter_partitions``), so one user's rows
are never read by two tasks. The write-back is not here: :func:`attribute_postgres` collects the links and
journeys to the driver as Arrow, and :func:`optiq_engine.batch.run_batch` merges them with the same
staged-merge writers, in the same single transaction, as the single-machine job.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import polars as pl
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ..batch.compute import Computed
from ..config import AttributionConfig
from ..errors import ConfigError
from ..io import postgres
from .attribution import attribute_spark
from .journeys import journeys_spark

__all__ = ["jdbc_jar", "jdbc_options", "read_postgres", "attribute_postgres", "postgres_session"]

#: Where the PostgreSQL JDBC driver is looked for, in order (``OPTIQ_POSTGRES_JDBC_JAR`` first): Debian's
#: ``libpostgresql-jdbc-java``, then a local Maven repository.
JAR_CANDIDATES = (
    "/usr/share/java/postgresql.jar",
    str(Path.home() / ".m2/repository/org/postgresql/postgresql/*/postgresql-*.jar"),
)


def jdbc_jar() -> str:
    """Path of the PostgreSQL JDBC driver jar (``OPTIQ_POSTGRES_JDBC_JAR``, Debian's package, ``~/.m2``).

    Raises :class:`ConfigError` when there is none: install ``libpostgresql-jdbc-java`` (Debian) or set
    ``OPTIQ_POSTGRES_JDBC_JAR``. (``spark.jars.packages`` would fetch it from Maven, which needs network.)

    Returns
    -------
    str
        The jar's path (the newest version in ``~/.m2`` by name order).

    Raises
    ------
    ConfigError
        ``OPTIQ_POSTGRES_JDBC_JAR`` names no file, or no jar is found.
    """
    explicit = os.environ.get("OPTIQ_POSTGRES_JDBC_JAR")
    if explicit:
        if not Path(explicit).is_file():
            raise ConfigError(f"OPTIQ_POSTGRES_JDBC_JAR={explicit!r} is not a file")
        return explicit
    for pattern in JAR_CANDIDATES:
        found = sorted(glob.glob(pattern))
        if found:
            return found[-1]
    raise ConfigError(
        "no PostgreSQL JDBC driver jar: apt-get install libpostgresql-jdbc-java, or set OPTIQ_POSTGRES_JDBC_JAR"
    )


def postgres_session(master: str | None = "local[*]", **kwargs: Any) -> SparkSession:
    """:func:`~optiq_engine.spark.spark_session`, which must find the JDBC driver jar (:func:`jdbc_jar`).

    The jar must be on the classpath when the session's JVM starts: a session started earlier in this
    process without it is reused as is (and its JDBC reads fail with ``ClassNotFoundException``).

    Parameters
    ----------
    master
        Spark master URL (default ``local[*]``; None: left to ``spark-submit``).
    **kwargs
        Other arguments of :func:`~optiq_engine.spark.spark_session`.

    Returns
    -------
    pyspark.sql.SparkSession

    Raises
    ------
    ConfigError
        No JDBC driver jar.
    """
    from .session import spark_session

    jdbc_jar()  # raises a ConfigError that says what to install
    return spark_session(master, **kwargs)


def jdbc_options(url: str) -> tuple[str, dict[str, str]]:
    """A JDBC URL and connection properties from a PostgreSQL URL (``postgresql[+driver]://user:pw@host/db``).

    Parameters
    ----------
    url
        A PostgreSQL URL; user and password are percent-decoded, the query string is passed on.

    Returns
    -------
    jdbc_url : str
        ``jdbc:postgresql://host:port/db``; a part the URL leaves out is libpq's default, as for the local
        engine (``PGHOST``, else ``localhost``: JDBC has no Unix socket; ``PGPORT``, else 5432;
        ``PGDATABASE``, else the user's name); an IPv6 host bracketed.
    properties : dict of str to str
        ``driver``, ``user`` (``PGUSER`` or the OS user when the URL has none) and ``password`` (or
        ``PGPASSWORD``) when there is one.

    Raises
    ------
    ConfigError
        ``url`` is not a PostgreSQL URL.
    """
    parts = urlsplit(postgres.adbc_url(url))
    default = _libpq_defaults()
    host = parts.hostname or default["host"] or "localhost"
    host = "localhost" if host.startswith("/") else f"[{host}]" if ":" in host else host  # JDBC: no Unix socket
    user = unquote(parts.username) if parts.username else default["user"] or "postgres"
    dbname = unquote(parts.path.lstrip("/")) or default["dbname"] or user
    jdbc = f"jdbc:postgresql://{host}:{parts.port or default['port'] or 5432}/{dbname}"
    if parts.query:
        jdbc += f"?{parts.query}"
    props = {"driver": "org.postgresql.Driver", "user": user}
    password = unquote(parts.password) if parts.password is not None else default["password"]
    if password is not None:
        props["password"] = password
    return jdbc, props


def _libpq_defaults() -> dict[str, str | None]:
    """What libpq (psycopg, ADBC) takes for a part the URL leaves out: ``PGHOST``, ``PGPORT``, ``PGUSER`` (else
    the OS user), ``PGDATABASE``, ``PGPASSWORD``; so that Spark reads the database the local engine reads."""
    from psycopg import pq

    options = {o.keyword.decode(): o.val.decode() if o.val else None for o in pq.Conninfo.get_defaults()}
    return {k: options.get(k) for k in ("host", "port", "user", "dbname", "password")}


def read_postgres(
    spark: SparkSession, url: str, what: str, window: postgres.Window, *, partitions: int = 1
) -> DataFrame:
    """``touchpoints``, ``conversions`` or ``events`` of ``window`` as a Spark DataFrame, via JDBC.

    The query is :func:`optiq_engine.io.postgres.read_sql` (the one ``read_touchpoints`` & co. run), wrapped as
    a ``dbtable`` subquery and read by ``partitions`` tasks, task ``i`` taking the users whose
    ``hashtextextended(anon_id, 0)`` (non-negative) is ``i`` modulo ``partitions``: one user is never split.

    Parameters
    ----------
    spark
        The Spark session (with the JDBC driver: :func:`postgres_session`).
    url
        A PostgreSQL URL.
    what
        ``"touchpoints"``, ``"conversions"`` or ``"events"``.
    window
        The rows to read.
    partitions
        JDBC read tasks (>= 1, default 1).

    Returns
    -------
    pyspark.sql.DataFrame
        Lazy; read when an action runs.

    Raises
    ------
    ConfigError
        ``partitions < 1``, an unknown ``what``, or a URL that is not a PostgreSQL one.
    """
    if partitions < 1:
        raise ConfigError(f"partitions must be at least 1, got {partitions}")
    jdbc, props = jdbc_options(url)
    table = f"({postgres.read_sql(what, window)}) AS optiq_{what}"
    predicates = [postgres.hash_partition("anon_id", i, partitions) for i in range(partitions)]
    return spark.read.option("fetchsize", "10000").jdbc(jdbc, table, predicates=predicates, properties=props)


def _collect(frame: DataFrame) -> pl.DataFrame:
    return pl.from_arrow(frame.toArrow())  # type: ignore[return-value]


def attribute_postgres(
    spark: SparkSession,
    url: str,
    window: postgres.Window,
    *,
    models: Sequence[str] | None,
    config: AttributionConfig,
    as_of: datetime,
    partitions: int | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> Computed:
    """Load, attribute and build journeys on Spark; collect the results to the driver as Arrow.

    The same stage as the single-machine job: links of the conversions at or after ``window.start`` (all
    when open), the journeys of every user with events (whole history, judged ``as_of``). ``partitions``
    is both the JDBC read split and the shuffle's partition count (``None``: ``spark.sql.shuffle.partitions``).

    Parameters
    ----------
    spark
        The Spark session (with the JDBC driver).
    url
        A PostgreSQL URL.
    window
        The scope to read; events are read over the users' whole history.
    models
        Model names (None: the heuristics).
    config
        The run's options.
    as_of
        The instant journey statuses are judged at (the run's watermark).
    partitions
        See above (default None).
    on_stage
        Called with each stage's name as it starts (default None).

    Returns
    -------
    Computed

    Raises
    ------
    ConfigError, ModelError, SchemaError, InputError
        As :func:`~optiq_engine.spark.attribute_spark` and :func:`~optiq_engine.spark.journeys_spark`.
    """
    stage = on_stage or (lambda _: None)
    n = partitions or int(spark.conf.get("spark.sql.shuffle.partitions") or 1)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    stage(f"reading touchpoints and conversions through JDBC ({n} partitions)")
    tp = read_postgres(spark, url, "touchpoints", window, partitions=n).persist()
    cv = read_postgres(spark, url, "conversions", window, partitions=n).persist()
    in_scope = cv if window.start is None else cv.where(F.col("occurred_at") >= F.lit(window.start))
    touchpoints, scope = tp.count(), _collect(in_scope.select("conversion_id")).get_column("conversion_id")
    timings["spark read"] = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        stage("attributing on Spark")
        result = attribute_spark(tp, cv, models=models, config=config, partitions=n).persist()
        try:
            keep = scope.implode()
            links = _collect(result.links).filter(pl.col("conversion_id").is_in(keep))
            unattributed = _collect(result.unattributed.select("conversion_id", "model")).filter(
                pl.col("conversion_id").is_in(keep)
            )
        finally:
            result.unpersist()
        timings["spark attribute"] = time.perf_counter() - t0
    finally:
        tp.unpersist()
        cv.unpersist()
    t0 = time.perf_counter()
    stage("building journeys on Spark")
    events = read_postgres(spark, url, "events", replace(window, start=None, end=None), partitions=n)
    built = journeys_spark(events, session_timeout=config.session_timeout, as_of=as_of, partitions=n).persist()
    try:
        journeys, journey_events = _collect(built.journeys), _collect(built.journey_events)
    finally:
        built.unpersist()
    event_users = _collect(events.select("anon_id").distinct()).get_column("anon_id")
    timings["spark journeys"] = time.perf_counter() - t0
    baseline = unattributed.drop_nulls("model").group_by("model", maintain_order=True).len()
    return Computed(
        links=links,
        conversion_ids=scope,
        model_names=list(result.model_names),
        n_touchpoints=touchpoints,
        n_conversions=scope.len(),
        unattributed=unattributed.filter(pl.col("model").is_null()).height,
        journeys=journeys,
        journey_events=journey_events,
        event_users=event_users,
        timings=timings,
        baseline_conversions=dict(baseline.iter_rows()),
    )
