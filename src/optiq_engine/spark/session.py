"""A Spark session set up for the engine (Python workers on this interpreter, UTC, Arrow)."""

from __future__ import annotations

import os
import sys
from typing import Any

from pyspark.sql import SparkSession

__all__ = ["spark_session"]


def spark_session(
    master: str | None = "local[2]",
    *,
    app_name: str = "optiq-engine",
    shuffle_partitions: int | None = None,
    ui: bool = False,
    config: dict[str, Any] | None = None,
) -> SparkSession:
    """Get or create a Spark session for Optiq Engine.

    Parameters
    ----------
    master
        Spark master URL (``local[2]``, ``spark://host:7077``, ``yarn``); ``None`` leaves it to
        ``spark-submit``.
    app_name
        Application name shown by Spark.
    shuffle_partitions
        ``spark.sql.shuffle.partitions`` (the default partition count of :func:`attribute_spark`).
    ui
        Start the Spark web UI.
    config
        Further Spark settings.

    Returns
    -------
    SparkSession

    Notes
    -----
    Python workers must import pyarrow, polars, numba and optiq_engine: unless ``PYSPARK_PYTHON`` is
    set, they use this interpreter (the driver's virtual environment). The session time zone is UTC (the
    engine's timestamps are UTC instants). Each task's Python worker runs Polars on the task's cores
    (``spark.executorEnv.POLARS_MAX_THREADS`` = ``spark.task.cpus``, unless ``config`` sets it), as the
    Numba kernels do: an executor runs one task per core at once. The PostgreSQL JDBC driver jar, when found
    (:func:`optiq_engine.spark.postgres.jdbc_jar`), is put on the classpath for Spark's JDBC source: it
    must be there when the session's JVM starts.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    settings: dict[str, Any] = {
        "spark.ui.enabled": str(ui).lower(),
        "spark.ui.showConsoleProgress": str(ui).lower(),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.pythonUDF.arrow.enabled": "true",
    }
    jar = _postgres_jar()
    if jar is not None:  # Spark's JDBC source loads the driver from the JVM's startup classpath only
        settings["spark.jars"] = settings["spark.driver.extraClassPath"] = jar
    if shuffle_partitions is not None:
        settings["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
    settings.update(config or {})
    settings.setdefault("spark.executorEnv.POLARS_MAX_THREADS", str(settings.get("spark.task.cpus", 1)))
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _postgres_jar() -> str | None:
    """The PostgreSQL JDBC driver jar if there is one (``optiq_engine.spark.postgres.jdbc_jar``)."""
    from ..errors import ConfigError
    from .postgres import jdbc_jar

    try:
        return jdbc_jar()
    except ConfigError:
        return None
