"""Between Spark DataFrames and the engine's Arrow/polars frames: columns, co-partitioning, schemas."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import partial

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from ..channels import CLICK_ID_COLUMNS, ChannelRules, derive_channels
from ..errors import ColumnNotFoundError, ConfigError, SchemaError

__all__ = [
    "TOUCHPOINT_COLUMNS",
    "CONVERSION_COLUMNS",
    "EVENT_COLUMNS",
    "SIDE",
    "RECORD",
    "contract_columns",
    "key_columns",
    "narrow_sides",
    "split_narrow",
    "task_threads",
    "partition",
    "read_partition",
    "spark_type",
    "to_batches",
]

_CONVERTING = "__optiq_converting"

#: Columns of the frame contract (docs/contract.md §1) that are handed to the engine; others are left out.
TOUCHPOINT_COLUMNS = (
    "touchpoint_id",
    "anon_id",
    "occurred_at",
    "organization_id",
    "site_id",
    "session_id",
    "channel",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "gclid",
    "fbclid",
    "ttclid",
    "platform_code",
    "campaign_id",
    "ad_id",
)
CONVERSION_COLUMNS = ("conversion_id", "anon_id", "occurred_at", "value_micros", "name", "organization_id", "site_id")
EVENT_COLUMNS = (
    "event_id",
    "anon_id",
    "occurred_at",
    "type",
    "organization_id",
    "site_id",
    "session_id",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "gclid",
    "fbclid",
    "ttclid",
    "value_micros",
    "name",
)
_KEYS = ("organization_id", "site_id")
#: Which input a row of the co-partitioned union came from (0: touchpoints, 1: conversions).
SIDE = "_optiq_side"
#: Which output a row of the engine's output union is (links, unattributed, credit; journeys, ...).
RECORD = "_optiq_record"
#: The id (touchpoint or conversion) and the label (channel or conversion name) of a narrow shuffled row.
ID, LABEL = "_optiq_id", "_optiq_label"
#: Touchpoint columns the channel rules read (channels.derive_channels).
CHANNEL_INPUTS = ("utm_source", "utm_medium", *CLICK_ID_COLUMNS)
_STRINGLIKE = (T.StringType, T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.NullType)


def contract_columns(frame: DataFrame, wanted: Sequence[str], required: Sequence[str], *, what: str) -> list[str]:
    """The contract columns of ``frame`` in contract order; a missing required one is a SchemaError.

    Parameters
    ----------
    frame
        A Spark DataFrame.
    wanted
        The contract's columns, in order (:data:`TOUCHPOINT_COLUMNS`, :data:`CONVERSION_COLUMNS`, ...).
    required
        Those that must be present.
    what
        The frame's name, plural, for messages.

    Returns
    -------
    list of str
        The columns of ``wanted`` that ``frame`` has, in the order of ``wanted``.

    Raises
    ------
    ConfigError
        ``frame`` is not a Spark DataFrame.
    ColumnNotFoundError
        A required column is missing (the closest names suggested).
    """
    if not isinstance(frame, DataFrame):
        raise ConfigError(f"{what} must be a pyspark.sql.DataFrame, got {type(frame).__name__}")
    present = set(frame.columns)
    missing = [c for c in required if c not in present]
    if missing:
        raise ColumnNotFoundError.of(missing, frame.columns, what=what)
    return [c for c in wanted if c in present]


def key_columns(*column_sets: Sequence[str]) -> list[str]:
    """The group key: the organization/site columns that every frame has, then ``anon_id``.

    Parameters
    ----------
    *column_sets
        The columns of each frame.

    Returns
    -------
    list of str
        ``organization_id`` and ``site_id`` when every frame has them, then ``"anon_id"``.
    """
    return [c for c in _KEYS if all(c in cols for cols in column_sets)] + ["anon_id"]


def partition(frame: DataFrame, keys: Sequence[str], partitions: int | None) -> DataFrame:
    """``frame`` hash-partitioned on ``keys``: every group in one partition (``None``: shuffle partitions).

    Parameters
    ----------
    frame
        A Spark DataFrame with the ``keys`` columns.
    keys
        The group key columns.
    partitions
        The partition count (a positive integer), or None: ``spark.sql.shuffle.partitions``.

    Returns
    -------
    pyspark.sql.DataFrame
        Lazily repartitioned.

    Raises
    ------
    ConfigError
        ``partitions`` is neither None nor a positive integer.
    """
    cols: list[Column] = [F.col(k) for k in keys]
    if partitions is None:
        return frame.repartition(*cols)
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise ConfigError(f"partitions must be a positive integer or None, got {partitions!r}")
    return frame.repartition(partitions, *cols)


def check_string_columns(frame: DataFrame, columns: Sequence[str], *, what: str) -> None:
    """The check of ``frames._as_string``, on the driver: ``columns`` hold strings (or integers).

    The narrow shuffle of :func:`narrow_sides` leaves out the contract columns heuristic models do not
    read; checking their Spark types here keeps the SchemaError an executor would have raised.

    Parameters
    ----------
    frame
        A Spark DataFrame.
    columns
        The columns to check (absent ones are skipped).
    what
        The frame's name, plural, for messages.

    Raises
    ------
    SchemaError
        A column of another Spark type than string, byte, short, integer, long or null.
    """
    types = {f.name: f.dataType for f in frame.schema.fields}
    for col in columns:
        if col in types and not isinstance(types[col], _STRINGLIKE):
            raise SchemaError(f"{what} column {col!r} must hold strings (or integers), got {types[col].simpleString()}")


def _with_channels(
    touchpoints: DataFrame, tp_cols: Sequence[str], narrow: list[str], rules: ChannelRules | None
) -> DataFrame:
    """``narrow`` touchpoint columns and a ``channel`` that is never null (the channel rules fill the gaps).

    Rows whose ``channel`` is given pass through Spark, stripped of surrounding whitespace (as
    :func:`~optiq_engine.channels.clean_channel_labels`); the others (every row when the column is absent;
    null or blank labels) get it from :func:`derive_channels` in a ``mapInArrow`` before the shuffle: a
    row-wise rule, so the channel is the one the engine would derive. The two branches are two scans of
    the source.
    """
    inputs = [c for c in CHANNEL_INPUTS if c in tp_cols]
    out_schema = T.StructType([*(touchpoints.schema[c] for c in narrow), T.StructField("channel", T.StringType())])
    derive = partial(_derive_channels, narrow=tuple(narrow), rules=rules, schema=arrow_schema(out_schema))
    if "channel" not in tp_cols:
        return touchpoints.select(*narrow, *inputs).mapInArrow(derive, out_schema)
    channel = touchpoints.schema["channel"].dataType
    if not isinstance(channel, T.StringType):
        raise ConfigError(f"touchpoints column 'channel' must hold strings, got {channel.simpleString()}")
    # as clean_channel_labels: stripped of (Unicode) whitespace, a blank label derived like a null
    label = F.regexp_replace(F.col("channel"), r"(?U)^\s+|\s+$", "")
    given = touchpoints.where(label != "").select(*narrow, label.alias("channel"))
    missing = touchpoints.where(F.col("channel").isNull() | (label == "")).select(*narrow, *inputs)
    return given.unionByName(missing.mapInArrow(derive, out_schema))


def _derive_channels(
    batches: Iterable[pa.RecordBatch], *, narrow: tuple[str, ...], rules: ChannelRules | None, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """On an executor, before the shuffle: each batch's channel from its UTM and click-id columns."""
    for batch in batches:
        if batch.num_rows == 0:
            continue
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        channel = derive_channels(frame, rules).to_arrow()
        columns = [batch.column(c) for c in narrow]
        yield pa.RecordBatch.from_arrays([*columns, channel], names=[*narrow, "channel"]).cast(schema)


def converting_touchpoints(touchpoints: DataFrame, conversions: DataFrame, keys: Sequence[str]) -> DataFrame:
    """The touchpoints of the groups that have a conversion, and every row validation could refuse.

    A group without a conversion gives no heuristic link, so its touchpoints need not cross the shuffle
    (46 % of them in the simulator). They are found with a left join on the group key against the
    conversions' distinct keys, broadcast to every task (one row per converting group). Rows whose key
    column or ``touchpoint_id`` may be blank (null, empty, starting with a space or not ASCII: a superset,
    as the engine's own prefilter, ``frames._may_start_blank``), or whose ``occurred_at`` is null, out of
    range or a string, are kept whatever their group, so that they still reach validation and raise: a bad
    row is never dropped silently.

    Parameters
    ----------
    touchpoints, conversions
        The input Spark DataFrames.
    keys
        The group key (:func:`key_columns`).

    Returns
    -------
    pyspark.sql.DataFrame
        ``touchpoints`` filtered, lazily, with the same columns.
    """
    from ..frames import MAX_TIMESTAMP, MIN_TIMESTAMP

    def blank(name: str) -> Column:  # may be blank: null, below "!" (empty, a leading ASCII space) or not ASCII
        text = F.col(name).cast(T.StringType())
        return text.isNull() | (text < F.lit("!")) | (F.length(text) != F.octet_length(text))

    suspect = blank("touchpoint_id") | F.col("occurred_at").isNull()
    if isinstance(touchpoints.schema["occurred_at"].dataType, (T.TimestampType, T.TimestampNTZType)):
        time = F.col("occurred_at").cast(T.TimestampType())
        suspect = suspect | (time < F.lit(MIN_TIMESTAMP)) | (time >= F.lit(MAX_TIMESTAMP))
    else:  # strings (or epochs) are parsed by the engine: every row reaches it
        suspect = F.lit(True)
    for k in keys:
        suspect = suspect | blank(k)
    converting = conversions.select(*keys).distinct().withColumn(_CONVERTING, F.lit(True))
    joined = touchpoints.join(F.broadcast(converting), on=list(keys), how="left")
    return joined.where(F.col(_CONVERTING).isNotNull() | suspect).drop(_CONVERTING)


def narrow_sides(
    touchpoints: DataFrame,
    conversions: DataFrame,
    tp_cols: Sequence[str],
    cv_cols: Sequence[str],
    keys: Sequence[str],
    *,
    rules: ChannelRules | None = None,
) -> DataFrame:
    """Touchpoints and conversions in one narrow frame, tagged by :data:`SIDE`, ready to co-partition.

    Only what the models read rides through the shuffle: the id (:data:`ID`, cast to string: touchpoint
    or conversion id), ``anon_id``, ``occurred_at``, the key columns, the label (:data:`LABEL`: the
    touchpoint's channel, derived before the shuffle where it is missing, or the conversion's ``name``), the
    conversion's ``value_micros`` and its organization/site columns. The other contract columns are
    checked on the driver (:func:`check_string_columns`) and left out. :func:`split_narrow` takes a
    partition apart again into the engine's touchpoint and conversion columns.

    Parameters
    ----------
    touchpoints, conversions
        The input Spark DataFrames.
    tp_cols, cv_cols
        Their contract columns (:func:`contract_columns`).
    keys
        The group key (:func:`key_columns`).
    rules
        The channel rules for touchpoints without a ``channel`` (default None: the engine's).

    Returns
    -------
    pyspark.sql.DataFrame
        The union, lazily (not yet partitioned: :func:`partition`).

    Raises
    ------
    SchemaError
        A contract column of a type that cannot hold strings (:func:`check_string_columns`).
    ConfigError
        A ``channel`` column that is not a string column.
    """
    check_string_columns(touchpoints, [c for c in tp_cols if c not in ("occurred_at", "channel")], what="touchpoints")
    check_string_columns(
        conversions, [c for c in cv_cols if c not in ("occurred_at", "value_micros")], what="conversions"
    )
    tp_keys = [c for c in _KEYS if c in keys]
    tp = _with_channels(touchpoints, tp_cols, ["touchpoint_id", "anon_id", "occurred_at", *tp_keys], rules)
    tp = tp.select(
        F.lit(0).cast(T.ByteType()).alias(SIDE),
        F.col("touchpoint_id").cast(T.StringType()).alias(ID),
        "anon_id",
        "occurred_at",
        *tp_keys,
        F.col("channel").alias(LABEL),
    )
    cv_extra = [c for c in cv_cols if c in ("value_micros", *_KEYS)]
    label = F.col("name").cast(T.StringType()) if "name" in cv_cols else F.lit(None).cast(T.StringType())
    cv = conversions.select(
        F.lit(1).cast(T.ByteType()).alias(SIDE),
        F.col("conversion_id").cast(T.StringType()).alias(ID),
        "anon_id",
        "occurred_at",
        *cv_extra,
        label.alias(LABEL),
    )
    return tp.unionByName(cv, allowMissingColumns=True)


def split_narrow(table: pa.Table, keys: Sequence[str], cv_cols: Sequence[str]) -> tuple[pa.Table, pa.Table]:
    """The engine's touchpoints and conversions of a partition of :func:`narrow_sides`' frame.

    Touchpoints: ``touchpoint_id``, ``anon_id``, ``occurred_at``, the key columns, ``channel``.
    Conversions: ``conversion_id``, ``anon_id``, ``occurred_at`` and those of ``value_micros``,
    ``organization_id``, ``site_id``, ``name`` that ``cv_cols`` has.

    Parameters
    ----------
    table
        One partition of the narrow frame (:func:`read_partition`).
    keys
        The group key.
    cv_cols
        The conversions' contract columns.

    Returns
    -------
    touchpoints, conversions : pyarrow.Table
    """
    is_tp = pc.equal(table.column(SIDE), 0)
    shared = ["anon_id", "occurred_at", *(c for c in _KEYS if c in keys)]
    tp = table.filter(is_tp).select([ID, *shared, LABEL]).rename_columns(["touchpoint_id", *shared, "channel"])
    cv = table.filter(pc.invert(is_tp))
    cv_out = ["anon_id", "occurred_at", *(c for c in ("value_micros", *_KEYS) if c in cv_cols)]
    cv_table = cv.select([ID, *cv_out]).rename_columns(["conversion_id", *cv_out])
    if "name" in cv_cols:
        cv_table = cv_table.append_column("name", cv.column(LABEL))
    return tp, cv_table


def task_threads() -> None:
    """Numba kernels of this task run on the task's cores (``spark.task.cpus``, 1 by default).

    An executor runs as many tasks at once as it has cores; kernels that also spread over every core of
    the machine would oversubscribe it, and a parallel loop waits for its slowest thread. The results do
    not depend on the thread count. (Polars' pool is sized when it starts: :func:`spark_session` sets
    ``POLARS_MAX_THREADS`` for the Python workers.)
    """
    import numba
    from pyspark import TaskContext

    context = TaskContext.get()
    cpus = context.cpus() if context is not None else 0
    if cpus:
        numba.set_num_threads(max(1, min(cpus, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]


def arrow_schema(schema: T.StructType) -> pa.Schema:
    """The Arrow schema of Spark batches (timestamps are UTC instants)."""
    return to_arrow_schema(schema, timezone="UTC")


def read_partition(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> pa.Table:
    """One partition's Arrow batches as a table (empty with ``schema`` when the partition is empty).

    Parameters
    ----------
    batches
        The batches ``mapInArrow`` hands a task.
    schema
        Their Arrow schema (:func:`arrow_schema` of the partitioned frame's).

    Returns
    -------
    pyarrow.Table
    """
    return pa.Table.from_batches(list(batches), schema=schema)


def spark_type(dtype: pl.DataType) -> T.DataType:
    """The Spark type of a polars result column (enums and categoricals become strings).

    Parameters
    ----------
    dtype
        A polars dtype of a result frame.

    Returns
    -------
    pyspark.sql.types.DataType
        String, the integer and float types, boolean, date, or timestamp (for any polars Datetime).

    Raises
    ------
    SchemaError
        A dtype without a Spark counterpart here (results never have one).
    """
    if dtype == pl.String or isinstance(dtype, (pl.Enum, pl.Categorical)):
        return T.StringType()
    table: dict[type, T.DataType] = {
        pl.Int8: T.ByteType(),
        pl.Int16: T.ShortType(),
        pl.Int32: T.IntegerType(),
        pl.Int64: T.LongType(),
        pl.Float32: T.FloatType(),
        pl.Float64: T.DoubleType(),
        pl.Boolean: T.BooleanType(),
        pl.Date: T.DateType(),
    }
    if isinstance(dtype, pl.Datetime):
        return T.TimestampType()
    for cls, out in table.items():
        if dtype == cls:
            return out
    raise SchemaError(f"no Spark type for result dtype {dtype}")  # pragma: no cover - results use the above


def to_batches(frame: pl.DataFrame, record: int, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """``frame`` as batches of the output union ``schema``: its columns, nulls elsewhere, ``RECORD`` set.

    Parameters
    ----------
    frame
        One of the engine's output frames (links, unattributed, credit, journeys, ...).
    record
        Which output it is (the value of :data:`RECORD`).
    schema
        The Arrow schema of the output union (every output's columns and :data:`RECORD`).

    Yields
    ------
    pyarrow.RecordBatch
        Cast to ``schema`` (enums and categoricals as strings).
    """
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
