"""attribute_spark(): attribute() over Spark DataFrames, partition by partition, with identical results."""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import polars as pl
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.accumulators import Accumulator, AccumulatorParam
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..balance import balance_fit
from ..config import AttributionConfig
from ..errors import ConfigError, ModelError
from ..frames import value_source
from ..models import HEURISTIC_MODELS, AttributionModel, DataDrivenModel, FittedModel, HeuristicModel
from ..models.base import resolve_models
from ..paths import PathTable
from ..paths.partial import REFERENCE_KEY, WINDOWS_KEY
from ..result import LINK_COLUMNS
from ._arrow import (
    CONVERSION_COLUMNS,
    RECORD,
    TOUCHPOINT_COLUMNS,
    arrow_schema,
    contract_columns,
    converting_touchpoints,
    key_columns,
    narrow_sides,
    partition,
    read_partition,
    split_narrow,
    task_threads,
    to_batches,
)

__all__ = ["attribute_spark", "SparkAttributionResult", "LINK_COLUMNS"]

log = logging.getLogger(__name__)

LINKS, UNATTRIBUTED, CREDIT = 0, 1, 2
_PATHS_SCHEMA = T.StructType([T.StructField("model", T.StringType()), T.StructField("table", T.BinaryType())])


def _weight_column(i: int) -> str:
    return f"_optiq_weight_{i}"


def _credit_column(i: int) -> str:
    return f"_optiq_credit_{i}"


def _record_schema(cv_cols: Sequence[str], n_models: int) -> T.StructType:
    """The union of the engine's outputs (links, unattributed, credit), told apart by ``RECORD``.

    A link record is one (conversion, touchpoint) pair with every model's weight and credited micros
    (``_optiq_weight_i``, ``_optiq_credit_i`` for the i-th model): the ids cross from Python to the JVM
    once, not once per model; :attr:`SparkAttributionResult.links` unpivots them with ``stack``.
    """
    s, i, ln, d, ts = T.StringType(), T.IntegerType(), T.LongType(), T.DoubleType(), T.TimestampType()
    fields = [
        (RECORD, T.ByteType()),
        # links (wide: one row per pair)
        ("conversion_id", s),
        ("touchpoint_id", s),
        ("position", i),
        ("touchpoint_count", i),
        ("channel", s),
        ("date", T.DateType()),
        *((_weight_column(k), d) for k in range(n_models)),
        *((_credit_column(k), ln) for k in range(n_models)),
        # unattributed (conversion_id too) and credit (channel too)
        ("anon_id", s),
        ("occurred_at", ts),
        ("value_micros", ln),
        *((c, s) for c in ("organization_id", "site_id", "name") if c in cv_cols),
        ("reason", s),
        ("model", s),
        ("conversions", d),
    ]
    return T.StructType([T.StructField(n, t, True) for n, t in fields])


def _unattributed_columns(cv_cols: Sequence[str]) -> list[str]:
    cols = ["conversion_id", "anon_id", "occurred_at", "value_micros"]
    return cols + [c for c in ("organization_id", "site_id", "name") if c in cv_cols] + ["reason", "model"]


@dataclass(frozen=True, eq=False)
class SparkAttributionResult:
    """What :func:`attribute_spark` returns: Spark DataFrames, computed lazily when an action runs.

    Made by :func:`attribute_spark`.

    Parameters
    ----------
    records, models, config
        The fields described under Attributes.
    unattributed_columns
        The columns of :attr:`unattributed` (the conversions' contract columns, then ``reason``, ``model``).
    fitted, partitions, seconds
        Described under Attributes (default empty, None, None).
    link_dates
        Whether :attr:`links` has a ``date`` column (default False).

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
        bootstrap intervals, ``paths``: the whole run's path table, ``balance``: the multipliers every
        partition's links use). ``baseline_conversions`` and ``credit_gap`` are not counted on Spark (0), and
        ``channel_credit``'s ``conversions`` and ``value_micros`` are the fit's allocation (``share x``
        fitted conversions, the fitted value split by share), not the links' sums as in
        :func:`optiq_engine.attribute`: report :attr:`credit` (docs/spark.md "Data-driven credit").
    partitions
        The partition count asked for (``None``: ``spark.sql.shuffle.partitions``).
    seconds
        An accumulator of the seconds the partitions spent per stage (see :attr:`timings`).
    """

    records: DataFrame
    models: tuple[AttributionModel, ...]
    config: AttributionConfig
    unattributed_columns: tuple[str, ...]
    fitted: dict[str, FittedModel] = field(default_factory=dict)
    partitions: int | None = None
    link_dates: bool = False
    seconds: Accumulator[dict[str, float]] | None = None

    @property
    def timings(self) -> dict[str, float]:
        """Seconds summed over the partitions of every action run so far, per stage of the attribution pass.

        ``input``: the partition's rows taken from the shuffle (the Arrow transfer into Python, and the
        wait for the shuffle read); ``validate`` ... ``frames``: the stages of
        :func:`optiq_engine.attribute` (``result.timings``); ``output``: the wide link, unattributed and
        credit records as Arrow batches. ``partitions``, ``touchpoints`` and ``conversions`` count what
        the partitions saw. Each action that recomputes the records adds to it again (see :meth:`persist`).
        """
        return dict(self.seconds.value) if self.seconds is not None else {}

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    @property
    def links(self) -> DataFrame:
        """One row per (conversion, eligible touchpoint, model), in the links schema (docs/contract.md §1).

        With ``link_dates=True`` a ``date`` column (the conversion's UTC date) follows, for writing
        date-partitioned datasets.
        """
        cols = [*LINK_COLUMNS, "date"] if self.link_dates else list(LINK_COLUMNS)
        pairs = ", ".join(
            f"{_sql_string(name)}, `{_weight_column(i)}`, `{_credit_column(i)}`"
            for i, name in enumerate(self.model_names)
        )
        unpivot = F.expr(f"stack({len(self.model_names)}, {pairs}) AS (model, weight, credited_value_micros)")
        pair_cols = [c for c in cols if c not in ("model", "weight", "credited_value_micros")]
        links = self.records.where(F.col(RECORD) == LINKS).select(*pair_cols, unpivot)
        # a null weight: the model credits the pair's conversion to no channel (it is in ``unattributed``)
        return links.where(F.col("weight").isNotNull()).select(*cols)

    @property
    def unattributed(self) -> DataFrame:
        """Conversions without links, with a ``reason`` and a ``model`` (null: for every model, no eligible
        touchpoint; a data-driven model's name: a conversion it credits to no channel), as in
        :func:`optiq_engine.attribute`."""
        return self.records.where(F.col(RECORD) == UNATTRIBUTED).select(*self.unattributed_columns)

    @property
    def credit(self) -> DataFrame:
        """Per model x channel: ``conversions`` (sum of weights) and ``value_micros`` (exact sum of micros;
        null where it exceeds int64 or a partition's sum did, as in :func:`optiq_engine.attribute`)."""
        value = F.col("value_micros")
        total = F.when(F.count_if(value.isNull()) == 0, F.sum(value.cast("decimal(38,0)")))
        return (
            self.records.where(F.col(RECORD) == CREDIT)
            .groupBy("model", "channel")
            .agg(F.sum("conversions").alias("conversions"), total.alias("value_micros"))
            .withColumn("value_micros", F.when(value.between(-(2**63), 2**63 - 1), value.cast("long")))
            .orderBy("model", "channel")
        )

    def persist(self, storage_level: StorageLevel = StorageLevel.MEMORY_AND_DISK) -> SparkAttributionResult:
        """Keep the computed records (so that links, credit and unattributed are computed once).

        Parameters
        ----------
        storage_level
            Spark's storage level (default ``MEMORY_AND_DISK``).

        Returns
        -------
        SparkAttributionResult
            ``self``.
        """
        self.records.persist(storage_level)
        return self

    def unpersist(self) -> SparkAttributionResult:
        self.records.unpersist()
        return self

    def __repr__(self) -> str:
        return f"SparkAttributionResult(models={list(self.model_names)}, partitions={self.partitions})"


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def attribute_spark(
    touchpoints: DataFrame,
    conversions: DataFrame,
    *,
    models: Sequence[str | AttributionModel] | str | AttributionModel | None = None,
    config: AttributionConfig | None = None,
    partitions: int | None = None,
    link_dates: bool = False,
    prefilter: bool = True,
    **options: Any,
) -> SparkAttributionResult:
    """Attribute conversions to touchpoints on Spark, with the results of :func:`optiq_engine.attribute`.

    Parameters
    ----------
    touchpoints, conversions
        Spark DataFrames in the frame contract of docs/contract.md §1 (other columns are ignored).
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
    prefilter
        Heuristic models only: drop the touchpoints of groups without a conversion before the shuffle
        (docs/spark.md; rows validation could refuse are kept). Default True; the same links either way.
    **options
        :class:`AttributionConfig` fields, over ``config``'s.

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
    cfg = _spark_config(config, options)
    chosen = _spark_models(models, cfg)
    tp_cols, cv_cols = _contract_columns(touchpoints, conversions)
    _check_value_column(conversions.columns, cfg)
    keys = key_columns(tp_cols, cv_cols)
    filtered = prefilter and cfg.identity == "anon_id" and all(isinstance(m, HeuristicModel) for m in chosen)
    tp = converting_touchpoints(touchpoints, conversions, keys) if filtered else touchpoints
    both = partition(narrow_sides(tp, conversions, tp_cols, cv_cols, keys, rules=cfg.channel_rules), keys, partitions)
    records, fits, seconds = _attribution_records(both, keys, cv_cols, chosen, cfg, link_dates=link_dates)
    return SparkAttributionResult(
        records=records,
        models=chosen,
        config=cfg,
        unattributed_columns=tuple(_unattributed_columns(cv_cols)),
        fitted=fits,
        partitions=partitions,
        link_dates=link_dates,
        seconds=seconds,
    )


def _attribution_records(
    both: DataFrame,
    keys: list[str],
    cv_cols: list[str],
    chosen: tuple[AttributionModel, ...],
    cfg: AttributionConfig,
    *,
    link_dates: bool,
) -> tuple[DataFrame, dict[str, FittedModel], Accumulator[dict[str, float]]]:
    """The partitions' output records (lazily), the data-driven models' fits (fitted on the driver first, then
    broadcast) and the accumulator of the partitions' seconds."""
    in_schema = arrow_schema(both.schema)
    data_driven = [m for m in chosen if isinstance(m, DataDrivenModel)]
    fits = _fit_on_driver(both, in_schema, keys, cv_cols, data_driven, cfg) if data_driven else {}
    context = both.sparkSession.sparkContext
    shipped, seconds = context.broadcast(fits) if fits else None, context.accumulator({}, _SumParam())
    out_schema = _record_schema(cv_cols, len(chosen))
    run = partial(
        _attribute_partition,
        in_schema=in_schema,
        out_schema=arrow_schema(out_schema),
        keys=tuple(keys),
        cv_cols=tuple(cv_cols),
        models=chosen,
        config=cfg,
        fits=shipped,
        link_dates=link_dates,
        seconds=seconds,
    )
    return both.mapInArrow(run, out_schema), fits, seconds


def _contract_columns(touchpoints: DataFrame, conversions: DataFrame) -> tuple[list[str], list[str]]:
    """The contract columns of both frames (docs/contract.md §1), the required ones checked."""
    tp_required, cv_required = ("touchpoint_id", "anon_id", "occurred_at"), ("conversion_id", "anon_id", "occurred_at")
    return (
        contract_columns(touchpoints, TOUCHPOINT_COLUMNS, tp_required, what="touchpoints"),
        contract_columns(conversions, CONVERSION_COLUMNS, cv_required, what="conversions"),
    )


def _spark_config(config: AttributionConfig | None, options: dict[str, Any]) -> AttributionConfig:
    """The run's configuration (``config`` with ``options``), refusing what Spark does not support yet."""
    cfg = (config or AttributionConfig()).with_options(**options)
    if cfg.on_invalid != "raise":
        raise ConfigError(
            "on_invalid='quarantine' is not supported by attribute_spark yet; filter invalid rows in Spark"
        )
    if cfg.identity != "anon_id":  # partitions split by anon id would split a person: never stitch silently
        raise ConfigError(
            "identity='stitched' is not supported by attribute_spark yet (a person's anon ids may be in different "
            "partitions); stitch with optiq_engine.attribute (docs/contract.md §1.5)"
        )
    return cfg


def _spark_models(
    models: Sequence[str | AttributionModel] | str | AttributionModel | None, cfg: AttributionConfig
) -> tuple[AttributionModel, ...]:
    """The models of the run (``None``: every heuristic model): heuristic and data-driven ones only."""
    chosen = resolve_models(models, cfg, default=HEURISTIC_MODELS)
    unsupported = [m.name for m in chosen if not isinstance(m, (HeuristicModel, DataDrivenModel))]
    if unsupported:
        raise ModelError(f"model(s) {unsupported} cannot run in attribute_spark() yet")
    return chosen


def _fit_on_driver(
    both: DataFrame,
    in_schema: pa.Schema,
    keys: list[str],
    cv_cols: list[str],
    models: list[DataDrivenModel],
    cfg: AttributionConfig,
) -> dict[str, FittedModel]:
    """Pass 1: every partition's path tables, added up here; each model fitted once on the sum."""
    collect = partial(
        _partition_tables,
        in_schema=in_schema,
        keys=tuple(keys),
        cv_cols=tuple(cv_cols),
        models=tuple(models),
        config=cfg,
    )
    rows = both.mapInArrow(collect, _PATHS_SCHEMA).collect()
    parts: dict[str, list[PathTable]] = {}  # per key of path_tables: a model's name, or its window tables'
    for row in rows:
        parts.setdefault(row["model"], []).append(pickle.loads(row["table"]))
    fits: dict[str, FittedModel] = {}
    for model in models:
        if not parts.get(model.name):  # no touchpoint anywhere: the (empty) tables of an empty run
            from ..partial import path_tables

            empty_tp, empty_cv = split_narrow(in_schema.empty_table(), keys, cv_cols)
            parts |= {k: [t] for k, t in path_tables(empty_tp, empty_cv, models=[model], config=cfg).items()}
        table = PathTable.concat(parts[model.name])
        log.info(
            "%s: fitting on %d distinct paths from %d partitions", model.name, table.height, len(parts[model.name])
        )
        extra = {  # DATA_DRIVEN's fit_on="auto"
            name: PathTable.concat(parts[key.format(model.name)])
            for name, key in (("windows", WINDOWS_KEY), ("reference", REFERENCE_KEY))
            if parts.get(key.format(model.name))
        }
        fit = model.fit(table, direct_channels=cfg.direct_channels, **extra)
        fits[model.name] = replace(fit, balance=balance_fit(fit))  # once, here: every partition uses it
    return fits


def _partition_tables(
    batches: Iterable[pa.RecordBatch],
    *,
    in_schema: pa.Schema,
    keys: tuple[str, ...],
    cv_cols: tuple[str, ...],
    models: tuple[DataDrivenModel, ...],
    config: AttributionConfig,
) -> Iterator[pa.RecordBatch]:
    """On an executor: one partition's path table per model (pickled; an empty partition yields none)."""
    from ..partial import path_tables

    task_threads()
    table = read_partition(batches, in_schema)
    tp, cv = split_narrow(table, keys, cv_cols)
    if tp.num_rows == 0:  # no journey without touchpoints
        return
    tables = path_tables(tp, cv, models=[replace(m, bootstrap=0) for m in models], config=config)
    names = list(tables)  # a model's name, and "DATA_DRIVEN/windows", "DATA_DRIVEN/reference" for fit_on="auto"
    blobs = [pickle.dumps(tables[n], protocol=pickle.HIGHEST_PROTOCOL) for n in names]
    yield pa.RecordBatch.from_arrays(
        [pa.array(names, pa.string()), pa.array(blobs, pa.binary())], names=["model", "table"]
    )


def _attribute_partition(
    batches: Iterable[pa.RecordBatch],
    *,
    in_schema: pa.Schema,
    out_schema: pa.Schema,
    keys: tuple[str, ...],
    cv_cols: tuple[str, ...],
    models: tuple[AttributionModel, ...],
    config: AttributionConfig,
    fits: Any,
    link_dates: bool,
    seconds: Accumulator[dict[str, float]] | None = None,
) -> Iterator[pa.RecordBatch]:
    """On an executor: attribute() on one partition; links, unattributed and credit as output records."""
    from ..pipeline import run_attribution

    task_threads()
    t0 = time.perf_counter()
    table = read_partition(batches, in_schema)
    if table.num_rows == 0:
        return
    tp, cv = split_narrow(table, keys, cv_cols)
    if cv.num_rows == 0:  # nothing to attribute (data-driven fits saw these users in pass 1)
        return
    spent = {"partitions": 1.0, "touchpoints": float(tp.num_rows), "conversions": float(cv.num_rows)}
    spent["input"] = time.perf_counter() - t0
    fitted = fits.value if fits is not None else None
    result = run_attribution(tp, cv, models=models, config=config, fitted=fitted, dense_links=True)
    spent.update(result.timings)
    t0 = time.perf_counter()
    out = list(_records(result, cv, out_schema, len(models), link_dates=link_dates))
    spent["output"] = time.perf_counter() - t0
    if seconds is not None:
        seconds.add(spent)
    yield from out


def _records(
    result: Any, cv: pa.Table, out_schema: pa.Schema, n_models: int, *, link_dates: bool
) -> Iterator[pa.RecordBatch]:
    """A partition's result as batches of the output union: wide links, unattributed, partial credit."""
    links = _wide_links(result.links, n_models)
    if link_dates:
        dates = pl.from_arrow(cv.select(["conversion_id", "occurred_at"]))
        assert isinstance(dates, pl.DataFrame)
        dates = dates.select("conversion_id", pl.col("occurred_at").dt.convert_time_zone("UTC").dt.date().alias("date"))
        links = links.join(dates, on="conversion_id", how="left")
    yield from to_batches(links, LINKS, out_schema)
    yield from to_batches(result.unattributed, UNATTRIBUTED, out_schema)
    yield from to_batches(result.credit, CREDIT, out_schema)


class _SumParam(AccumulatorParam[dict[str, float]]):
    """Accumulates dictionaries of numbers key by key (the seconds of each stage)."""

    def zero(self, value: dict[str, float]) -> dict[str, float]:
        return {}

    def addInPlace(self, value1: dict[str, float], value2: dict[str, float]) -> dict[str, float]:
        for key, v in value2.items():
            value1[key] = value1.get(key, 0.0) + v
        return value1


def _wide_links(links: pl.DataFrame, n_models: int) -> pl.DataFrame:
    """The long links of one run as one row per pair, each model's weight and credit in its own columns.

    ``run_attribution`` lays its links out model by model, each block holding the same pairs in the same
    order (``pipeline.run_attribution`` with ``dense_links=True``: the blocks share their id, position and
    channel columns; a model's null weight marks a conversion it credits to no channel); the block
    boundaries are checked against the ``model`` column.
    """
    pairs = links.height // n_models
    codes = links.get_column("model").to_physical()
    for i in range(n_models):
        block = codes.slice(i * pairs, pairs)
        if links.height != pairs * n_models or (pairs and (block[0] != i or block[-1] != i)):  # pragma: no cover
            raise AssertionError("run_attribution's links are not laid out model by model")
    wide = links.slice(0, pairs).select("conversion_id", "touchpoint_id", "position", "touchpoint_count", "channel")
    weight, credit = links.get_column("weight"), links.get_column("credited_value_micros")
    return wide.with_columns(
        *(weight.slice(i * pairs, pairs).alias(_weight_column(i)) for i in range(n_models)),
        *(credit.slice(i * pairs, pairs).alias(_credit_column(i)) for i in range(n_models)),
    )


def _check_value_column(columns: list[str], cfg: AttributionConfig) -> None:
    """Money on Spark is ``value_micros`` in integer micros (docs/contract.md §1.1), checked on the driver.

    Only contract columns ride through the shuffle, so a money-like column beside no ``value_micros`` would
    be dropped and every conversion credited 0: refused here, as :func:`optiq_engine.attribute` refuses it.
    """
    if cfg.value_column is not None or cfg.value_unit != "micros":
        raise ConfigError(
            "attribute_spark reads money from value_micros in integer micros only: convert in Spark first, e.g. "
            "(F.col('revenue').cast('decimal(38,6)') * 1000000).cast('long').alias('value_micros')"
        )
    value_source(columns, "value_micros", None, "micros", what="conversions")
