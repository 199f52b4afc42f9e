"""journeys_spark(): build_journeys() over a Spark DataFrame of events, with identical results."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..errors import ConfigError
from ..journeys import build_journeys
from ._arrow import (
    EVENT_COLUMNS,
    RECORD,
    arrow_schema,
    contract_columns,
    key_columns,
    partition,
    read_partition,
    spark_type,
    task_threads,
    to_batches,
)

__all__ = ["journeys_spark", "SparkJourneyResult"]

JOURNEYS, JOURNEY_EVENTS, SESSIONS = 0, 1, 2


@dataclass(frozen=True, eq=False)
class SparkJourneyResult:
    """What :func:`journeys_spark` returns: lazy Spark DataFrames in the schemas of :class:`JourneyResult`.

    Made by :func:`journeys_spark`.

    Parameters
    ----------
    records
        Described under Attributes.
    journey_columns
        The columns of :attr:`journeys`, in order.
    as_of
        Described under Attributes.

    Attributes
    ----------
    records
        Every partition's output in one frame (told apart by a record column); the frames below are views.
    as_of
        The time statuses were judged at (the latest event time of the whole input unless given).
    """

    records: DataFrame
    journey_columns: tuple[str, ...]
    as_of: datetime | None

    @property
    def journeys(self) -> DataFrame:
        """One row per journey (docs/journeys.md)."""
        return self.records.where(F.col(RECORD) == JOURNEYS).select(*self.journey_columns)

    @property
    def journey_events(self) -> DataFrame:
        """``journey_id``, ``event_id``, ``sequence_number`` (1..n), ``occurred_at``."""
        return self.records.where(F.col(RECORD) == JOURNEY_EVENTS).select(
            "journey_id", "event_id", "sequence_number", "occurred_at"
        )

    @property
    def sessions(self) -> DataFrame:
        """``event_id``, ``session_id`` of every event."""
        return self.records.where(F.col(RECORD) == SESSIONS).select("event_id", "session_id")

    def persist(self, storage_level: StorageLevel = StorageLevel.MEMORY_AND_DISK) -> SparkJourneyResult:
        """Keep the computed records (so that the three frames are computed once).

        Parameters
        ----------
        storage_level
            Spark's storage level (default ``MEMORY_AND_DISK``).

        Returns
        -------
        SparkJourneyResult
            ``self``.
        """
        self.records.persist(storage_level)
        return self

    def unpersist(self) -> SparkJourneyResult:
        self.records.unpersist()
        return self


def journeys_spark(
    events: DataFrame,
    *,
    session_timeout: timedelta = timedelta(minutes=30),
    abandon_after: timedelta = timedelta(days=30),
    as_of: datetime | None = None,
    partitions: int | None = None,
) -> SparkJourneyResult:
    """Split tracking events into sessions and journeys on Spark, as :func:`optiq_engine.build_journeys`.

    Parameters
    ----------
    events
        Spark DataFrame of events (docs/contract.md §1; other columns are ignored).
    session_timeout, abandon_after
        As in :func:`optiq_engine.build_journeys`.
    as_of
        When to judge statuses; default: the latest ``occurred_at`` of the whole input (one aggregate,
        computed before the journeys), so that every partition judges at the same instant.
    partitions
        Partitions of the shuffle by group key (``None``: ``spark.sql.shuffle.partitions``); the results do
        not depend on it.

    Returns
    -------
    SparkJourneyResult
        Lazy ``journeys``, ``journey_events``, ``sessions`` DataFrames.

    Raises
    ------
    ConfigError
        ``events`` is not a Spark DataFrame, ``session_timeout`` / ``abandon_after`` is not a valid
        timedelta, or ``partitions`` is not a positive integer.
    ColumnNotFoundError
        A required column (``event_id``, ``anon_id``, ``occurred_at``, ``type``) is missing.

    Notes
    -----
    Events are hash-partitioned on the group key (``organization_id``, ``site_id`` when present,
    ``anon_id``), so each group is whole in one partition; ``mapInArrow`` runs ``build_journeys`` on each
    partition's Arrow data. Journey and session ids are stable hashes of the group key and the first event
    id, so they do not depend on the partitioning. Invalid rows raise (quarantine is not supported here).

    Examples
    --------
    >>> from optiq_engine.spark import journeys_spark  # doctest: +SKIP
    >>> journeys_spark(spark.read.parquet("events")).journeys.write.parquet("journeys")  # doctest: +SKIP
    """
    cols = contract_columns(events, EVENT_COLUMNS, ("event_id", "anon_id", "occurred_at", "type"), what="events")
    for name, value in (("session_timeout", session_timeout), ("abandon_after", abandon_after)):
        if not isinstance(value, timedelta):
            raise ConfigError(f"{name} must be a datetime.timedelta, got {value!r}")
    selected = events.select(*cols)
    if as_of is None:
        latest = selected.agg(F.max(F.unix_micros(F.col("occurred_at"))).alias("us")).first()
        as_of = (
            None
            if latest is None or latest["us"] is None
            else datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=latest["us"])
        )
    frame = partition(selected, key_columns(cols), partitions)
    in_schema = arrow_schema(frame.schema)
    empty = build_journeys(in_schema.empty_table(), as_of=as_of or datetime(1970, 1, 1, tzinfo=UTC))
    fields: dict[str, T.DataType] = {RECORD: T.ByteType()}
    for part in (empty.journeys, empty.journey_events, empty.sessions):
        for name, dtype in part.schema.items():
            fields.setdefault(name, spark_type(dtype))
    out_schema = T.StructType([T.StructField(n, t, True) for n, t in fields.items()])
    run = partial(
        _journeys_partition,
        in_schema=in_schema,
        out_schema=arrow_schema(out_schema),
        options={"session_timeout": session_timeout, "abandon_after": abandon_after, "as_of": as_of},
    )
    return SparkJourneyResult(
        records=frame.mapInArrow(run, out_schema), journey_columns=tuple(empty.journeys.columns), as_of=as_of
    )


def _journeys_partition(
    batches: Iterable[pa.RecordBatch], *, in_schema: pa.Schema, out_schema: pa.Schema, options: dict[str, Any]
) -> Iterator[pa.RecordBatch]:
    """On an executor: build_journeys() on one partition."""
    task_threads()
    table = read_partition(batches, in_schema)
    if table.num_rows == 0:
        return
    result = build_journeys(table, **options)
    yield from to_batches(result.journeys, JOURNEYS, out_schema)
    yield from to_batches(result.journey_events, JOURNEY_EVENTS, out_schema)
    yield from to_batches(result.sessions, SESSIONS, out_schema)
