"""Optiq Engine on Apache Spark: the same attribution and journeys as one machine, on a cluster.

Spark does the partitioning, shuffling, scheduling and fault tolerance; every partition runs the engine's
own kernels (:func:`optiq_engine.attribute`, :func:`optiq_engine.build_journeys`) on its Arrow data through
``mapInArrow``. See ``docs/spark.md``.

>>> from optiq_engine.spark import attribute_spark, spark_session  # doctest: +SKIP
>>> spark = spark_session("local[2]")  # doctest: +SKIP
>>> result = attribute_spark(spark.read.parquet("tp/"), spark.read.parquet("cv/"))  # doctest: +SKIP

This subpackage needs the ``spark`` extra (``pip install 'optiq-engine[spark]'``); ``import optiq_engine``
never imports it.
"""

from __future__ import annotations

try:
    import pyspark  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "optiq_engine.spark needs pyspark>=4: pip install 'optiq-engine[spark]' (and a Java 17 runtime)"
    ) from exc

from .attribution import SparkAttributionResult, attribute_spark
from .io import read_parquet, write_journeys, write_result
from .journeys import SparkJourneyResult, journeys_spark
from .session import spark_session

__all__ = [
    "attribute_spark",
    "SparkAttributionResult",
    "journeys_spark",
    "SparkJourneyResult",
    "read_parquet",
    "write_result",
    "write_journeys",
    "spark_session",
]
