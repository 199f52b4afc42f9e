"""attribute_spark (local[2]) next to attribute() on the same Parquet data (python -m benchmarks.spark_scaleout).

Prints seconds per step; does not write benchmarks/RESULTS.md. Sizes: --users 200000 gives about 1M
touchpoints. Spark's links are computed with the ``noop`` sink (every row produced, nothing written).

``--sql-baseline``: on the same session and Parquet data, LINEAR and LAST_TOUCH written as one Spark SQL
window-function query (what a data engineer would otherwise write: a range join of touchpoints to
conversions, ``LAG`` for the previous conversion, ``ROW_NUMBER`` / ``COUNT`` over the conversion) next to
``attribute_spark(models=["LINEAR", "LAST_TOUCH"])``; both checked to give the same links, and the ratio
printed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import polars as pl

import optiq_engine as oq


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--sql-baseline", action="store_true", help="only the Spark SQL window-function comparison")
    args = parser.parse_args()
    if args.sql_baseline:
        sql_baseline(args)
        return
    heuristic = list(oq.models.HEURISTIC_MODELS)
    with tempfile.TemporaryDirectory() as tmp:
        d = oq.synthetic.generate(n_users=args.users, seed=1)
        tp = d.touchpoints.with_columns(pl.col(pl.Enum).cast(pl.String))
        cv = d.conversions
        tp.write_parquet(Path(tmp) / "tp.parquet")
        cv.write_parquet(Path(tmp) / "cv.parquet")
        print(f"{tp.height:,} touchpoints, {cv.height:,} conversions, {args.users:,} users", flush=True)
        oq.attribute(tp.head(1000), cv.head(1000), models=heuristic + ["MARKOV"])  # compile
        for models in (heuristic, heuristic + ["MARKOV"]):
            t0 = time.perf_counter()
            tpr, cvr = pl.read_parquet(Path(tmp) / "tp.parquet"), pl.read_parquet(Path(tmp) / "cv.parquet")
            r = oq.attribute(tpr, cvr, models=models)
            print(
                f"attribute() {len(models)} models: {time.perf_counter() - t0:.2f} s, {r.links.height:,} links",
                flush=True,
            )

        from optiq_engine.spark import attribute_spark, read_parquet, spark_session

        t0 = time.perf_counter()
        spark = spark_session(args.master, shuffle_partitions=args.partitions)
        spark.sparkContext.setLogLevel("ERROR")
        print(f"spark session: {time.perf_counter() - t0:.2f} s", flush=True)
        for models in (heuristic, heuristic, heuristic + ["MARKOV"]):
            t0 = time.perf_counter()
            result = attribute_spark(
                read_parquet(spark, Path(tmp) / "tp.parquet"), read_parquet(spark, Path(tmp) / "cv.parquet"),
                models=models, partitions=args.partitions,
            )  # fmt: skip
            t1 = time.perf_counter()
            result.records.write.format("noop").mode("overwrite").save()
            t2 = time.perf_counter()
            print(
                f"attribute_spark {len(models)} models: {t2 - t0:.2f} s (driver pass/fit {t1 - t0:.2f} s)", flush=True
            )
        t0 = time.perf_counter()
        n = result.links.count()
        print(f"links.count() {n:,}: {time.perf_counter() - t0:.2f} s", flush=True)
        spark.stop()


#: LINEAR and LAST_TOUCH in Spark SQL (docs/attribution.md: T - lookback < t <= T, t > previous conversion).
WINDOW_SQL = """
WITH c AS (
  SELECT conversion_id, anon_id, occurred_at AS ts, value_micros,
         LAG(occurred_at) OVER (PARTITION BY anon_id ORDER BY occurred_at, conversion_id) AS prev_ts
  FROM cv
), j AS (
  SELECT c.conversion_id, t.touchpoint_id, t.occurred_at, c.value_micros, t.channel
  FROM c JOIN tp t ON t.anon_id = c.anon_id
   AND t.occurred_at <= c.ts AND t.occurred_at > c.ts - INTERVAL {days} DAYS
   AND (c.prev_ts IS NULL OR t.occurred_at > c.prev_ts)
), r AS (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY conversion_id ORDER BY occurred_at, touchpoint_id) AS position,
         COUNT(*) OVER (PARTITION BY conversion_id) AS touchpoint_count
  FROM j
)
SELECT conversion_id, touchpoint_id, 'LINEAR' AS model, 1.0D / touchpoint_count AS weight, position,
       touchpoint_count, CAST(FLOOR(value_micros / touchpoint_count) AS BIGINT) AS credited_value_micros, channel
FROM r
UNION ALL
SELECT conversion_id, touchpoint_id, 'LAST_TOUCH', IF(position = touchpoint_count, 1.0D, 0.0D), position,
       touchpoint_count, IF(position = touchpoint_count, value_micros, 0L), channel
FROM r
"""


def sql_baseline(args: argparse.Namespace) -> None:
    """attribute_spark vs the Spark SQL window-function query, same session, same Parquet, same models."""
    from pyspark.sql import functions as F

    from optiq_engine.spark import attribute_spark, read_parquet, spark_session

    models = ["LINEAR", "LAST_TOUCH"]
    with tempfile.TemporaryDirectory() as tmp:
        d = oq.synthetic.generate(n_users=args.users, seed=1)
        tp = d.touchpoints.with_columns(pl.col(pl.Enum).cast(pl.String))
        tp.write_parquet(Path(tmp) / "tp.parquet")
        d.conversions.write_parquet(Path(tmp) / "cv.parquet")
        print(f"{tp.height:,} touchpoints, {d.conversions.height:,} conversions, {args.users:,} users", flush=True)
        t0 = time.perf_counter()
        local = oq.attribute(tp, d.conversions, models=models)
        print(f"attribute() in process (incl. compile): {time.perf_counter() - t0:.2f} s", flush=True)
        t0 = time.perf_counter()
        local = oq.attribute(tp, d.conversions, models=models)
        print(f"attribute() in process: {time.perf_counter() - t0:.2f} s, {local.links.height:,} links", flush=True)

        spark = spark_session(args.master, shuffle_partitions=args.partitions)
        spark.sparkContext.setLogLevel("ERROR")
        read_parquet(spark, Path(tmp) / "tp.parquet").createOrReplaceTempView("tp")
        read_parquet(spark, Path(tmp) / "cv.parquet").createOrReplaceTempView("cv")
        days = oq.AttributionConfig().lookback.days
        query = WINDOW_SQL.format(days=days)

        def optiq() -> object:
            return attribute_spark(
                spark.table("tp"), spark.table("cv"), models=models, partitions=args.partitions
            ).links

        def window_sql() -> object:
            return spark.sql(query)

        times: dict[str, list[float]] = {"optiq": [], "sql": []}
        for _ in range(3):  # the first round warms the JVM and the Python workers
            for name, make in (("optiq", optiq), ("sql", window_sql)):
                t0 = time.perf_counter()
                make().write.format("noop").mode("overwrite").save()  # type: ignore[attr-defined]
                times[name].append(time.perf_counter() - t0)
        for name, ts in times.items():
            print(f"{name}: " + ", ".join(f"{t:.2f}" for t in ts) + " s", flush=True)
        best = {name: min(ts[1:]) for name, ts in times.items()}
        print(f"Spark SQL window functions / Optiq on Spark: {best['sql'] / best['optiq']:.2f}x", flush=True)
        # Same links (weights, positions, counts) from both.
        cols = ["conversion_id", "touchpoint_id", "model", "weight", "position", "touchpoint_count"]
        a = optiq().select(*cols).withColumn("position", F.col("position").cast("int"))  # type: ignore[attr-defined]
        b = window_sql().select(*cols).withColumn("position", F.col("position").cast("int"))  # type: ignore[attr-defined]
        b = b.withColumn("touchpoint_count", F.col("touchpoint_count").cast("int"))
        diff = a.exceptAll(b).count() + b.exceptAll(a).count()
        print(f"links: optiq {a.count():,}, sql {b.count():,}, rows differing {diff:,}", flush=True)
        spark.stop()


if __name__ == "__main__":
    main()
