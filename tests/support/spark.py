"""Shared Spark test session: skipped with a reason without pyspark/Java (failed under OPTIQ_REQUIRE_SPARK=1)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

REQUIRE_SPARK = os.environ.get("OPTIQ_REQUIRE_SPARK") == "1"


def unavailable(*, jdbc: bool = False) -> str | None:
    """Why a local Spark (with the PostgreSQL JDBC driver when ``jdbc``) cannot run here, or None."""
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        return f"pyspark not installed ({exc}); pip install -e '.[spark]'"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime (java not on PATH, JAVA_HOME unset); Spark needs Java 17"
    if jdbc:
        from optiq_engine.errors import ConfigError
        from optiq_engine.spark.postgres import jdbc_jar

        try:
            jdbc_jar()
        except ConfigError as exc:
            return str(exc)
    return None


def local_session(*, jdbc: bool = False) -> Iterator[object]:
    """A ``local[2]`` session for one test module (body of a module-scoped fixture)."""
    reason = unavailable(jdbc=jdbc)
    if reason:
        if REQUIRE_SPARK:
            pytest.fail(f"OPTIQ_REQUIRE_SPARK=1 but {reason}")
        pytest.skip(reason)
    if jdbc:
        from optiq_engine.spark.postgres import postgres_session as make
    else:
        from optiq_engine.spark import spark_session as make

    session = make("local[2]", shuffle_partitions=2, config={"spark.driver.memory": "1g"})
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
