"""``optiq attribute --engine spark``: the command's Spark path (called from :mod:`optiq_engine.cli.attribute`)."""

from __future__ import annotations

from pathlib import Path

from ..cli.output import console, credit_table, stages
from ..config import AttributionConfig
from ..models.fitted import data_driven_names

__all__ = ["attribute_command"]


def attribute_command(
    touchpoints: Path,
    conversions: Path,
    out: Path,
    *,
    models: list[str] | None,
    config: AttributionConfig,
    partitions: int | None,
    master: str | None,
) -> None:
    """Read Parquet datasets, attribute on Spark, write ``links/`` (by date), ``unattributed/``, ``credit/``.

    Prints the credit table and what was written.

    Parameters
    ----------
    touchpoints, conversions
        Parquet files or dataset directories.
    out
        The output directory (:func:`~optiq_engine.spark.write_result`).
    models
        Model names (None: the heuristics).
    config
        The run's options.
    partitions
        The shuffle's partition count (None: ``spark.sql.shuffle.partitions``).
    master
        Spark master URL (None: ``local[*]``).

    Raises
    ------
    ConfigError, ModelError, SchemaError, InputError
        As :func:`~optiq_engine.spark.attribute_spark`.
    SourceError
        An unreadable input.
    SinkError
        A dataset cannot be moved into place.
    """
    import polars as pl

    from . import attribute_spark, read_parquet, spark_session, write_result

    with stages(f"starting Spark ({master or 'local[*]'})") as show:
        spark = spark_session(master or "local[*]")
        if data_driven_names(models, config):
            show("path tables per partition, fitting on the driver")
        result = attribute_spark(
            read_parquet(spark, touchpoints),
            read_parquet(spark, conversions),
            models=models,
            config=config,
            partitions=partitions,
            link_dates=True,
        )
        show("attributing partitions and writing Parquet")
        counts = write_result(result, out)
    credit = pl.read_parquet(out / "credit" / "*.parquet")
    console.print(credit_table(result, credit))  # type: ignore[arg-type]
    console.print(
        f"wrote {counts['links']:,} links, {counts['unattributed']:,} unattributed rows (a conversion's row with a model: "
        f"a baseline conversion of that model) to {out}",
        soft_wrap=True,
    )
