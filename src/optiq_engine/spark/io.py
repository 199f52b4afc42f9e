"""Parquet datasets in and out of Spark: hive-partitioned by date, results replaced all or nothing."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ..errors import SinkError, SourceError
from .attribution import SparkAttributionResult
from .journeys import SparkJourneyResult

__all__ = ["read_parquet", "write_result", "write_journeys"]


def read_parquet(spark: SparkSession, path: str | Path) -> DataFrame:
    """A Spark DataFrame over a Parquet file or dataset directory (hive partitions such as ``date=...``).

    Partition columns (``date``) come along as columns; :func:`attribute_spark` and :func:`journeys_spark`
    ignore columns outside the frame contract.

    Parameters
    ----------
    spark
        The Spark session.
    path
        A Parquet file or dataset directory, local or any Hadoop file system URL.

    Returns
    -------
    pyspark.sql.DataFrame

    Raises
    ------
    SourceError
        Spark cannot read it (missing, or not Parquet), as the local reader
        (:func:`optiq_engine.io.read_frame`) says of a path it cannot read.
    """
    try:
        return spark.read.parquet(str(path))
    except Exception as exc:  # AnalysisException: path missing or not Parquet
        if type(exc).__name__ != "AnalysisException":
            raise
        raise SourceError(f"cannot read Parquet from {str(path)!r}: {str(exc).splitlines()[0]}") from exc


def write_result(result: SparkAttributionResult, out_dir: str | Path) -> dict[str, int]:
    """Write ``links/``, ``unattributed/`` and ``credit/`` Parquet datasets under ``out_dir``; row counts.

    ``links`` is partitioned by the conversion's UTC date (``date=YYYY-MM-DD`` directories) when the
    result was computed with ``link_dates=True``; ``unattributed`` by the conversion's date; ``credit`` is
    one file. The records are computed once (persisted for the writes). Everything is written under a
    hidden staging directory and moved into place only when every write succeeded, so a failed run leaves
    the previous results intact.

    Parameters
    ----------
    result
        The result of :func:`attribute_spark` (persisted for the writes, then unpersisted).
    out_dir
        The output directory, local or any Hadoop file system URL; datasets of a previous result there are
        replaced.

    Returns
    -------
    dict of str to int
        Rows written per dataset (``links``, ``unattributed``, ``credit``).

    Raises
    ------
    SinkError
        A dataset cannot be moved into place.
    """
    result.persist()
    try:
        links = result.links
        unattributed = result.unattributed.withColumn("date", F.to_date("occurred_at"))
        datasets = {
            "links": (links, ["date"] if result.link_dates else []),
            "unattributed": (unattributed, ["date"]),
            "credit": (result.credit.coalesce(1), []),
        }
        return _write_all(result.records.sparkSession, out_dir, datasets)
    finally:
        result.unpersist()


def write_journeys(result: SparkJourneyResult, out_dir: str | Path) -> dict[str, int]:
    """Write ``journeys/`` (by ``started_at`` date) and ``journey_events/`` (by ``occurred_at`` date).

    As :func:`write_result`: staged, then moved into place when every write succeeded.

    Parameters
    ----------
    result
        The result of :func:`journeys_spark`.
    out_dir
        The output directory, local or any Hadoop file system URL.

    Returns
    -------
    dict of str to int
        Rows written per dataset (``journeys``, ``journey_events``).

    Raises
    ------
    SinkError
        A dataset cannot be moved into place.
    """
    result.persist()
    try:
        datasets = {
            "journeys": (result.journeys.withColumn("date", F.to_date("started_at")), ["date"]),
            "journey_events": (result.journey_events.withColumn("date", F.to_date("occurred_at")), ["date"]),
        }
        return _write_all(result.records.sparkSession, out_dir, datasets)
    finally:
        result.unpersist()


def _write_all(
    spark: SparkSession, out_dir: str | Path, datasets: dict[str, tuple[DataFrame, list[str]]]
) -> dict[str, int]:
    fs = _FileSystem(spark, str(out_dir))
    stage = f"{str(out_dir).rstrip('/')}/.staging-{uuid.uuid4().hex}"
    counts: dict[str, int] = {}
    try:
        for name, (frame, by) in datasets.items():
            # An empty dataset partitioned by date would be a directory without a Parquet file, which no reader
            # can take a schema from (Spark: UNABLE_TO_INFER_SCHEMA): write it as one empty file with its schema.
            empty = frame.isEmpty()
            writer = (frame.coalesce(1) if empty else frame).write.mode("overwrite")
            if by and not empty:
                writer = writer.partitionBy(*by)
            writer.parquet(f"{stage}/{name}")
            counts[name] = spark.read.schema(frame.schema).parquet(f"{stage}/{name}").count()  # Parquet footers only
        for name in datasets:
            target = f"{str(out_dir).rstrip('/')}/{name}"
            backup = f"{str(out_dir).rstrip('/')}/.old-{uuid.uuid4().hex}-{name}"
            had = fs.exists(target)
            if had:
                fs.rename(target, backup)
            try:
                fs.rename(f"{stage}/{name}", target)
            except SinkError:
                if had:  # the previous dataset back in place
                    fs.rename(backup, target)
                raise
            fs.delete(backup)
    finally:
        fs.delete(stage)
    return counts


class _FileSystem:
    """The Hadoop file system of a path (local, HDFS, object stores), through Spark's JVM."""

    def __init__(self, spark: SparkSession, path: str) -> None:
        self._jvm: Any = spark.sparkContext._jvm
        conf = spark.sparkContext._jsc.hadoopConfiguration()
        self._fs = self._path(path).getFileSystem(conf)

    def _path(self, path: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(path)

    def exists(self, path: str) -> bool:
        return bool(self._fs.exists(self._path(path)))

    def rename(self, src: str, dst: str) -> None:
        parent = self._path(dst).getParent()
        if parent is not None:
            self._fs.mkdirs(parent)
        if not self._fs.rename(self._path(src), self._path(dst)):
            raise SinkError(f"could not move {src} to {dst}")

    def delete(self, path: str) -> None:
        if self._fs.exists(self._path(path)):
            self._fs.delete(self._path(path), True)
