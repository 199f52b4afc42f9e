"""attribute_spark (local[2]) next to attribute() on the same Parquet data (python -m benchmarks.spark_scaleout).

Prints seconds per step; does not write benchmarks/RESULTS.md. Sizes: --users 200000 gives about 1M
touchpoints. Spark's links are computed with the ``noop`` sink (every row produced, nothing written).
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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
