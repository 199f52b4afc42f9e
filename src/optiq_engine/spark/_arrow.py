"""Between Spark DataFrames and the engine's Arrow/polars frames: columns, co-partitioning, schemas."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from ..errors import ConfigError, SchemaError

__all__ = [
    "TOUCHPOINT_COLUMNS",
    "CONVERSION_COLUMNS",
    "EVENT_COLUMNS",
    "SIDE",
    "RECORD",
    "contract_columns",
    "key_columns",
    "co_partition",
    "partition",
    "read_partition",
    "spark_type",
    "to_batches",
]

#: Columns of the frame contract (SPEC §1) that are handed to the engine; others are left out.
TOUCHPOINT_COLUMNS = (
    "touchpoint_id", "anon_id", "occurred_at", "organization_id", "site_id", "session_id", "channel",
    "utm_source", "utm_medium", "utm_campaign", "gclid", "fbclid", "ttclid", "platform_code", "campaign_id",
    "ad_id",
)  # fmt: skip
CONVERSION_COLUMNS = ("conversion_id", "anon_id", "occurred_at", "value_micros", "name", "organization_id", "site_id")
EVENT_COLUMNS = (
    "event_id", "anon_id", "occurred_at", "type", "organization_id", "site_id", "session_id", "utm_source",
    "utm_medium", "utm_campaign", "gclid", "fbclid", "ttclid", "value_micros", "name",
)  # fmt: skip
_KEYS = ("organization_id", "site_id")
#: Which input a row of the co-partitioned union came from (0: touchpoints, 1: conversions).
SIDE = "_optiq_side"
#: Which output a row of the engine's output union is (links, unattributed, credit; journeys, ...).
RECORD = "_optiq_record"


def contract_columns(frame: DataFrame, wanted: Sequence[str], required: Sequence[str], *, what: str) -> list[str]:
    """The contract columns of ``frame`` in contract order; a missing required one is a SchemaError."""
    if not isinstance(frame, DataFrame):
        raise ConfigError(f"{what} must be a pyspark.sql.DataFrame, got {type(frame).__name__}")
    present = set(frame.columns)
    missing = [c for c in required if c not in present]
    if missing:
        hints = {c: difflib.get_close_matches(c, frame.columns, n=3) for c in missing}
        hint = "; ".join(f"{c!r}: did you mean {h}?" for c, h in hints.items() if h)
        raise SchemaError(
            f"{what} has no column(s) {missing}; columns are {frame.columns}" + (f" ({hint})" if hint else "")
        )
    return [c for c in wanted if c in present]


def key_columns(*column_sets: Sequence[str]) -> list[str]:
    """The group key: the organization/site columns that every frame has, then ``anon_id``."""
    return [c for c in _KEYS if all(c in cols for cols in column_sets)] + ["anon_id"]


def partition(frame: DataFrame, keys: Sequence[str], partitions: int | None) -> DataFrame:
    """``frame`` hash-partitioned on ``keys``: every group in one partition (``None``: shuffle partitions)."""
    cols: list[Column] = [F.col(k) for k in keys]
    if partitions is None:
        return frame.repartition(*cols)
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise ConfigError(f"partitions must be a positive integer or None, got {partitions!r}")
    return frame.repartition(partitions, *cols)


def co_partition(
    touchpoints: DataFrame, conversions: DataFrame, tp_cols: Sequence[str], cv_cols: Sequence[str], keys: Sequence[str],
    partitions: int | None,
) -> DataFrame:  # fmt: skip
    """Touchpoints and conversions in one frame (tagged by :data:`SIDE`), hash-partitioned on the group key.

    One shuffle moves both: a group's touchpoints and conversions hash to the same partition.
    """
    tp = touchpoints.select(*tp_cols).withColumn(SIDE, F.lit(0).cast(T.ByteType()))
    cv = conversions.select(*cv_cols).withColumn(SIDE, F.lit(1).cast(T.ByteType()))
    return partition(tp.unionByName(cv, allowMissingColumns=True), keys, partitions)


def arrow_schema(schema: T.StructType) -> pa.Schema:
    """The Arrow schema of Spark batches (timestamps are UTC instants)."""
    return to_arrow_schema(schema, timezone="UTC")


def read_partition(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> pa.Table:
    """One partition's Arrow batches as a table (empty with ``schema`` when the partition is empty)."""
    return pa.Table.from_batches(list(batches), schema=schema)


def split_sides(table: pa.Table, tp_cols: Sequence[str], cv_cols: Sequence[str]) -> tuple[pa.Table, pa.Table]:
    """Touchpoints and conversions of a co-partitioned partition."""
    is_tp = pc.equal(table.column(SIDE), 0)
    return table.filter(is_tp).select(list(tp_cols)), table.filter(pc.invert(is_tp)).select(list(cv_cols))


def spark_type(dtype: pl.DataType) -> T.DataType:
    """The Spark type of a polars result column (enums and categoricals become strings)."""
    if dtype == pl.String or isinstance(dtype, (pl.Enum, pl.Categorical)):
        return T.StringType()
    table: dict[type, T.DataType] = {
        pl.Int8: T.ByteType(), pl.Int16: T.ShortType(), pl.Int32: T.IntegerType(), pl.Int64: T.LongType(),
        pl.Float32: T.FloatType(), pl.Float64: T.DoubleType(), pl.Boolean: T.BooleanType(), pl.Date: T.DateType(),
    }  # fmt: skip
    if isinstance(dtype, pl.Datetime):
        return T.TimestampType()
    for cls, out in table.items():
        if dtype == cls:
            return out
    raise SchemaError(f"no Spark type for result dtype {dtype}")  # pragma: no cover - results use the above


def to_batches(frame: pl.DataFrame, record: int, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """``frame`` as batches of the output union ``schema``: its columns, nulls elsewhere, ``RECORD`` set."""
    have = set(frame.columns)
    cols = []
    for field in schema:
        if field.name == RECORD:
            cols.append(pl.lit(record, dtype=pl.Int8).alias(RECORD))
        elif field.name in have:
            dtype = frame.schema[field.name]
            cols.append(
                pl.col(field.name).cast(pl.String)
                if isinstance(dtype, (pl.Enum, pl.Categorical))
                else pl.col(field.name)
            )
        else:
            cols.append(pl.lit(None).alias(field.name))
    table = frame.select(cols).to_arrow()
    yield from table.cast(schema).to_batches()
