"""attribute_spark(): attribute() over Spark DataFrames, partition by partition, with identical results."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import polars as pl
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..config import AttributionConfig
from ..errors import ConfigError, ModelError
from ..models import HEURISTIC_MODELS, AttributionModel, DataDrivenModel, FittedModel, HeuristicModel
from ..models.base import resolve_models
from ..paths import PathTable
from ._arrow import (
    CONVERSION_COLUMNS,
    RECORD,
    TOUCHPOINT_COLUMNS,
    arrow_schema,
    co_partition,
    contract_columns,
    key_columns,
    read_partition,
    split_sides,
    to_batches,
)

__all__ = ["attribute_spark", "SparkAttributionResult", "LINK_COLUMNS"]

log = logging.getLogger(__name__)

LINK_COLUMNS = (
    "conversion_id", "touchpoint_id", "model", "weight", "position", "touchpoint_count", "credited_value_micros",
    "channel",
)  # fmt: skip
LINKS, UNATTRIBUTED, CREDIT = 0, 1, 2
_PATHS_SCHEMA = T.StructType([T.StructField("model", T.StringType()), T.StructField("table", T.BinaryType())])


def _record_schema(cv_cols: Sequence[str]) -> T.StructType:
    """The union of the engine's outputs (links, unattributed, credit), told apart by ``RECORD``."""
    s, i, ln, d, ts = T.StringType(), T.IntegerType(), T.LongType(), T.DoubleType(), T.TimestampType()
    fields = [
        (RECORD, T.ByteType()),
        # links
        ("conversion_id", s), ("touchpoint_id", s), ("model", s), ("weight", d), ("position", i),
        ("touchpoint_count", i), ("credited_value_micros", ln), ("channel", s), ("date", T.DateType()),
        # unattributed (conversion_id too) and credit (model, channel, value_micros too)
        ("anon_id", s), ("occurred_at", ts), ("value_micros", ln),
        *((c, s) for c in ("organization_id", "site_id", "name") if c in cv_cols),
        ("reason", s), ("conversions", d),
    ]  # fmt: skip
    return T.StructType([T.StructField(n, t, True) for n, t in fields])


def _unattributed_columns(cv_cols: Sequence[str]) -> list[str]:
    cols = ["conversion_id", "anon_id", "occurred_at", "value_micros"]
    return cols + [c for c in ("organization_id", "site_id", "name") if c in cv_cols] + ["reason"]


@dataclass(frozen=True, eq=False)
class SparkAttributionResult:
    """What :func:`attribute_spark` returns: Spark DataFrames, computed lazily when an action runs.

    Attributes
    ----------
    records
        The engine's output of every partition in one frame (links, unattributed conversions and partial
        credit, told apart by a record column); ``links``, ``unattributed`` and ``credit`` are views of it.
        Each action recomputes it unless :meth:`persist` was called.
    models
        The models of the run.
    config
        The resolved :class:`AttributionConfig`.
    fitted
        Data-driven fits made on the driver from the path tables of every partition (``channel_credit``,
        bootstrap intervals, ``paths``: the whole run's path table). ``fallback_journeys`` is not counted
        on Spark (0).
    partitions
        The partition count asked for (``None``: ``spark.sql.shuffle.partitions``).
    """

    records: DataFrame
    models: tuple[AttributionModel, ...]
    config: AttributionConfig
    unattributed_columns: tuple[str, ...]
    fitted: dict[str, FittedModel] = field(default_factory=dict)
    partitions: int | None = None
    link_dates: bool = False

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    @property
    def links(self) -> DataFrame:
        """One row per (conversion, eligible touchpoint, model), in the links schema (SPEC §1).

        With ``link_dates=True`` a ``date`` column (the conversion's UTC date) follows, for writing
        date-partitioned datasets.
        """
        cols = [*LINK_COLUMNS, "date"] if self.link_dates else list(LINK_COLUMNS)
        return self.records.where(F.col(RECORD) == LINKS).select(*cols)

    @property
    def unattributed(self) -> DataFrame:
        """Conversions with no eligible touchpoint, with a ``reason`` (as in :func:`optiq_engine.attribute`)."""
        return self.records.where(F.col(RECORD) == UNATTRIBUTED).select(*self.unattributed_columns)

    @property
    def credit(self) -> DataFrame:
        """Per model x channel: ``conversions`` (sum of weights) and ``value_micros`` (exact sum of micros)."""
        return (
            self.records.where(F.col(RECORD) == CREDIT)
            .groupBy("model", "channel")
            .agg(F.sum("conversions").alias("conversions"), F.sum("value_micros").alias("value_micros"))
            .orderBy("model", "channel")
        )

    def persist(self, storage_level: StorageLevel = StorageLevel.MEMORY_AND_DISK) -> SparkAttributionResult:
        """Keep the computed records (so that links, credit and unattributed are computed once)."""
        self.records.persist(storage_level)
        return self

    def unpersist(self) -> SparkAttributionResult:
        self.records.unpersist()
        return self

    def __repr__(self) -> str:
        return f"SparkAttributionResult(models={list(self.model_names)}, partitions={self.partitions})"


def attribute_spark(
    touchpoints: DataFrame,
    conversions: DataFrame,
    *,
    models: Sequence[str | AttributionModel] | str | AttributionModel | None = None,
    config: AttributionConfig | None = None,
    partitions: int | None = None,
    link_dates: bool = False,
    **options: Any,
) -> SparkAttributionResult:
    """Attribute conversions to touchpoints on Spark, with the results of :func:`optiq_engine.attribute`.

    Parameters
    ----------
    touchpoints, conversions
        Spark DataFrames in the frame contract of SPEC §1 (other columns are ignored).
    models
        Model names or objects, as in :func:`optiq_engine.attribute` (``None``: every heuristic model).
        MARKOV, SHAPLEY and DATA_DRIVEN are fitted once on the driver from every partition's path table.
    config
        An :class:`AttributionConfig`; ``options`` override its fields (``lookback=timedelta(days=7)``).
    partitions
        Partitions of the shuffle by group key (``None``: ``spark.sql.shuffle.partitions``). The results do
        not depend on it.
    link_dates
        Add the conversion's UTC ``date`` to the links (for :func:`write_result`'s date partitions).

    Returns
    -------
    SparkAttributionResult
        Lazy ``links``, ``credit``, ``unattributed`` Spark DataFrames; ``fitted`` data-driven models.

    Raises
    ------
    ConfigError, ModelError
        Bad options or models (on the driver, before any job). ``on_invalid="quarantine"`` is not supported
        on Spark yet.
    SchemaError
        A required column is missing.

    Notes
    -----
    Touchpoints and conversions are tagged, unioned and hash-partitioned together on the group key
    (``organization_id``, ``site_id`` when both frames have them, ``anon_id``) in one shuffle, so every
    group is whole in one partition. ``mapInArrow`` hands each partition's Arrow batches to
    :func:`optiq_engine.attribute` (its Numba kernels sort, match windows and weigh); the links come back as
    Arrow. Data-driven models take two passes over the co-partitioned data: first each partition's path
    tables (:func:`optiq_engine.partial.path_tables`), collected and added up on the driver
    (:meth:`PathTable.concat`), where each model is fitted once (with its bootstrap, whose Poisson weights
    are keyed by path hash and so independent of partitioning); then the fits are broadcast and every
    partition is credited with ``attribute(..., fitted=fits)``. Invalid rows raise on the executor that
    meets them; ids duplicated across two groups are not detected (they land in different partitions).

    Examples
    --------
    >>> from optiq_engine.spark import attribute_spark, spark_session  # doctest: +SKIP
    >>> spark = spark_session("local[2]")  # doctest: +SKIP
    >>> result = attribute_spark(spark.read.parquet("tp"), spark.read.parquet("cv"), models=["LINEAR", "MARKOV"])  # doctest: +SKIP
    >>> result.links.write.parquet("links")  # doctest: +SKIP
    """
    cfg = (config or AttributionConfig()).with_options(**options)
    if cfg.on_invalid != "raise":
        raise ConfigError(
            "on_invalid='quarantine' is not supported by attribute_spark yet; filter invalid rows in Spark"
        )
    chosen = resolve_models(models, cfg, default=HEURISTIC_MODELS)
    unsupported = [m.name for m in chosen if not isinstance(m, (HeuristicModel, DataDrivenModel))]
    if unsupported:
        raise ModelError(f"model(s) {unsupported} cannot run in attribute_spark() yet")
    tp_cols = contract_columns(
        touchpoints, TOUCHPOINT_COLUMNS, ("touchpoint_id", "anon_id", "occurred_at"), what="touchpoints"
    )
    cv_cols = contract_columns(
        conversions, CONVERSION_COLUMNS, ("conversion_id", "anon_id", "occurred_at"), what="conversions"
    )
    keys = key_columns(tp_cols, cv_cols)
    both = co_partition(touchpoints, conversions, tp_cols, cv_cols, keys, partitions)
    in_schema = arrow_schema(both.schema)

    fits: dict[str, FittedModel] = {}
    data_driven = [m for m in chosen if isinstance(m, DataDrivenModel)]
    if data_driven:
        fits = _fit_on_driver(both, in_schema, tp_cols, cv_cols, data_driven, cfg)
    spark = both.sparkSession
    shipped = spark.sparkContext.broadcast(fits) if fits else None
    out_schema = _record_schema(cv_cols)
    run = partial(
        _attribute_partition, in_schema=in_schema, out_schema=arrow_schema(out_schema), tp_cols=tuple(tp_cols),
        cv_cols=tuple(cv_cols), models=chosen, config=cfg, fits=shipped, link_dates=link_dates,
    )  # fmt: skip
    records = both.mapInArrow(run, out_schema)
    return SparkAttributionResult(
        records=records, models=chosen, config=cfg, unattributed_columns=tuple(_unattributed_columns(cv_cols)),
        fitted=fits, partitions=partitions, link_dates=link_dates,
    )  # fmt: skip


def _fit_on_driver(
    both: DataFrame, in_schema: pa.Schema, tp_cols: list[str], cv_cols: list[str],
    models: list[DataDrivenModel], cfg: AttributionConfig,
) -> dict[str, FittedModel]:  # fmt: skip
    """Pass 1: every partition's path tables, added up here; each model fitted once on the sum."""
    collect = partial(
        _partition_tables,
        in_schema=in_schema,
        tp_cols=tuple(tp_cols),
        cv_cols=tuple(cv_cols),
        models=tuple(models),
        config=cfg,
    )
    rows = both.mapInArrow(collect, _PATHS_SCHEMA).collect()
    parts: dict[str, list[PathTable]] = {m.name: [] for m in models}
    for row in rows:
        parts[row["model"]].append(pickle.loads(row["table"]))
    fits: dict[str, FittedModel] = {}
    for model in models:
        tables = parts[model.name]
        if not tables:  # no touchpoint anywhere: the (empty) table of an empty run
            from ..partial import path_tables

            empty_tp = in_schema.empty_table().select(tp_cols)
            empty_cv = in_schema.empty_table().select(cv_cols)
            tables = [path_tables(empty_tp, empty_cv, models=[model], config=cfg)[model.name]]
        table = PathTable.concat(tables)
        log.info("%s: fitting on %d distinct paths from %d partitions", model.name, table.height, len(tables))
        fits[model.name] = model.fit(table, direct_channels=cfg.direct_channels)
    return fits


def _partition_tables(
    batches: Iterable[pa.RecordBatch], *, in_schema: pa.Schema, tp_cols: tuple[str, ...], cv_cols: tuple[str, ...],
    models: tuple[DataDrivenModel, ...], config: AttributionConfig,
) -> Iterator[pa.RecordBatch]:  # fmt: skip
    """On an executor: one partition's path table per model (pickled; an empty partition yields none)."""
    from ..partial import path_tables

    table = read_partition(batches, in_schema)
    tp, cv = split_sides(table, tp_cols, cv_cols)
    if tp.num_rows == 0:  # no journey without touchpoints
        return
    tables = path_tables(tp, cv, models=[replace(m, bootstrap=0) for m in models], config=config)
    names = [m.name for m in models]
    blobs = [pickle.dumps(tables[n], protocol=pickle.HIGHEST_PROTOCOL) for n in names]
    yield pa.RecordBatch.from_arrays(
        [pa.array(names, pa.string()), pa.array(blobs, pa.binary())], names=["model", "table"]
    )


def _attribute_partition(
    batches: Iterable[pa.RecordBatch], *, in_schema: pa.Schema, out_schema: pa.Schema, tp_cols: tuple[str, ...],
    cv_cols: tuple[str, ...], models: tuple[AttributionModel, ...], config: AttributionConfig, fits: Any,
    link_dates: bool,
) -> Iterator[pa.RecordBatch]:  # fmt: skip
    """On an executor: attribute() on one partition; links, unattributed and credit as output records."""
    from ..pipeline import run_attribution

    table = read_partition(batches, in_schema)
    if table.num_rows == 0:
        return
    tp, cv = split_sides(table, tp_cols, cv_cols)
    if cv.num_rows == 0:  # nothing to attribute (data-driven fits saw these users in pass 1)
        return
    fitted = fits.value if fits is not None else None
    result = run_attribution(tp, cv, models=models, config=config, fitted=fitted)
    links = result.links
    if link_dates:
        dates = pl.from_arrow(cv.select(["conversion_id", "occurred_at"]))
        assert isinstance(dates, pl.DataFrame)
        dates = dates.select("conversion_id", pl.col("occurred_at").dt.convert_time_zone("UTC").dt.date().alias("date"))
        links = links.join(dates, on="conversion_id", how="left")
    yield from to_batches(links, LINKS, out_schema)
    yield from to_batches(result.unattributed, UNATTRIBUTED, out_schema)
    yield from to_batches(result.credit, CREDIT, out_schema)
