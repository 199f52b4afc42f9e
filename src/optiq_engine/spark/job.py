"""The nightly job's compute step on Spark (:func:`compute_on_spark`; ``optiq run --engine spark``)."""

from __future__ import annotations

import time
from dataclasses import replace

from ..batch import Computed, Plan
from ..batch.plan import Stage
from ..io.postgres import Connections
from .postgres import attribute_postgres, postgres_session

__all__ = ["compute_on_spark"]


def compute_on_spark(db: Connections, plan: Plan, stage: Stage) -> Computed:
    """Load, attribute and build journeys of ``plan``'s scope on Spark (``plan.master``; default ``local[*]``).

    The :data:`optiq_engine.batch.Compute` of ``run_batch(engine="spark")``: the results are collected to
    the driver as Arrow and written exactly as :func:`optiq_engine.batch.compute_local`'s (``docs/spark.md``).
    Spark reads through its JDBC source (``db.url``), not ``db``'s connections. ``plan.partitions`` above 1
    is the JDBC read split and the shuffle's partition count.

    Parameters
    ----------
    db
        The job's :class:`~optiq_engine.io.postgres.Connections` (only its ``url`` is used).
    plan
        The run's plan, with its scope (``plan.window`` set).
    stage
        Called with each stage's name as it starts.

    Returns
    -------
    Computed
        Without extracted touchpoints, quarantine counts or per-type counts (not supported on Spark).

    Raises
    ------
    ConfigError
        No PostgreSQL JDBC driver jar (:func:`~optiq_engine.spark.postgres.jdbc_jar`), or invalid options.
    ModelError, SchemaError, InputError
        As :func:`~optiq_engine.spark.attribute_spark` and :func:`~optiq_engine.spark.journeys_spark`.
    """
    assert plan.window is not None, "plan_run, then with_scope"
    master = plan.master or "local[*]"
    stage(f"starting Spark ({master})")
    t0 = time.perf_counter()
    spark = postgres_session(master)
    started = time.perf_counter() - t0
    computed = attribute_postgres(
        spark,
        db.url,
        plan.window,
        models=plan.models,
        config=plan.config,
        as_of=plan.watermark,
        partitions=plan.partitions if plan.partitions > 1 else None,
        on_stage=stage,
    )
    return replace(computed, timings={"spark start": started, **computed.timings})
