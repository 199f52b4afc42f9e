"""attribute_spark (local[2]) next to attribute() on the same Parquet data (python -m benchmarks.spark_scaleout).

Prints seconds per step; does not write benchmarks/RESULTS.md. Sizes: --users 200000 gives about 1M
touchpoints. Spark's links are computed with the ``noop`` sink (every row produced, nothing written).

``--sql-baseline`` (the issue's comparison; ``--users 2000000`` gives about 10M touchpoints / 1M
conversions): on the same session and Parquet data, LINEAR and LAST_TOUCH written as one Spark SQL
window-function query (what a data engineer would otherwise write: a range join of touchpoints to
conversions on the group key, ``LAG`` for the previous conversion, ``ROW_NUMBER`` / ``COUNT`` over the
conversion, LINEAR's exact largest-remainder split) next to ``attribute_spark(models=["LINEAR",
"LAST_TOUCH"])``, both to the ``noop`` sink and to Parquet; the stages of the Optiq path measured one by
one (read, + shuffle, + Arrow into Python, whole, the partitions' own seconds per stage); the single-process
``attribute()`` on the same Parquet. Wall and CPU seconds (the process tree: driver, JVM, Python workers)
and the load average of every run; both link sets checked equal (all eight columns). ``--json`` keeps it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import polars as pl

import optiq_engine as oq
from optiq_engine.spark.attribution import LINK_COLUMNS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--sql-baseline", action="store_true", help="only the Spark SQL window-function comparison")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each --sql-baseline measurement")
    parser.add_argument("--stage-repeat", type=int, default=1, help="runs of each --sql-baseline stage alone")
    parser.add_argument("--json", help="write the --sql-baseline measurements to this JSON file")
    parser.add_argument("--tmp", help="directory for the Parquet data (default: the system's)")
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


#: LINEAR and LAST_TOUCH in Spark SQL, computing what attribute() computes (docs/attribution.md): groups by
#: (organization_id, site_id, anon_id), nulls a key value of their own (<=>); T - lookback < t <= T and
#: t > the previous conversion's time; positions by (occurred_at, touchpoint_id); LINEAR's value split by
#: largest remainder (equal weights: floor(V * (1/n)) each, the remaining units to the last positions).
WINDOW_SQL = """
WITH c AS (
  SELECT conversion_id, organization_id, site_id, anon_id, occurred_at AS ts, COALESCE(value_micros, 0) AS value_micros,
         LAG(occurred_at) OVER (PARTITION BY organization_id, site_id, anon_id
                                ORDER BY occurred_at, conversion_id) AS prev_ts
  FROM cv
), j AS (
  SELECT c.conversion_id, t.touchpoint_id, t.occurred_at, c.value_micros, t.channel
  FROM c JOIN tp t ON t.organization_id <=> c.organization_id AND t.site_id <=> c.site_id
   AND t.anon_id = c.anon_id
   AND t.occurred_at <= c.ts AND t.occurred_at > c.ts - INTERVAL {days} DAYS
   AND (c.prev_ts IS NULL OR t.occurred_at > c.prev_ts)
), r AS (
  SELECT *, CAST(ROW_NUMBER() OVER (PARTITION BY conversion_id ORDER BY occurred_at, touchpoint_id) AS INT) AS position,
         CAST(COUNT(*) OVER (PARTITION BY conversion_id) AS INT) AS touchpoint_count
  FROM j
), s AS (
  SELECT *, IF(CAST(value_micros AS DOUBLE) * (1.0D / touchpoint_count) >= CAST(value_micros AS DOUBLE),
               value_micros, FLOOR(CAST(value_micros AS DOUBLE) * (1.0D / touchpoint_count))) AS base
  FROM r
)
SELECT conversion_id, touchpoint_id, 'LINEAR' AS model, 1.0D / touchpoint_count AS weight, position,
       touchpoint_count,
       base + IF(position > touchpoint_count - (value_micros - touchpoint_count * base), 1L, 0L)
         AS credited_value_micros,
       channel
FROM s
UNION ALL
SELECT conversion_id, touchpoint_id, 'LAST_TOUCH', IF(position = touchpoint_count, 1.0D, 0.0D), position,
       touchpoint_count, IF(position = touchpoint_count, value_micros, 0L), channel
FROM r
"""

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    """CPU seconds of this process and its descendants (the JVM and its Python workers), from /proc."""
    procs: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            procs[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / _TICK)
    tree, grew = {os.getpid()}, True
    while grew:
        grew = False
        for pid, (parent, _) in procs.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(procs[p][1] for p in tree if p in procs)


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def measure(name: str, action, repeat: int, out: dict) -> None:
    """Run ``action`` ``repeat`` times; wall and CPU seconds (process tree) and the load average of each."""
    runs = []
    for _ in range(repeat):
        c0, t0 = cpu_seconds(), time.perf_counter()
        action()
        runs.append({"wall": time.perf_counter() - t0, "cpu": cpu_seconds() - c0, "load": load()})
    out[name] = runs
    print(
        f"{name:44s} wall " + " ".join(f"{r['wall']:7.2f}" for r in runs)
        + "  cpu " + " ".join(f"{r['cpu']:7.2f}" for r in runs) + f"  load {runs[-1]['load']}",
        flush=True,
    )  # fmt: skip


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def sql_baseline(args: argparse.Namespace) -> None:
    """attribute_spark vs the Spark SQL window-function query, same session, same Parquet, same models.

    Stages of the Optiq path, each run alone (wall and CPU seconds of the process tree, ``repeat`` times):
    read (the narrow selection, noop sink), read + shuffle (noop sink), read + shuffle + Arrow into Python
    (a mapInArrow that only counts), the whole attribution (noop sink; the partitions' own seconds per
    stage from ``result.timings``) and the whole attribution written to Parquet. The Spark SQL query the
    same way (noop and Parquet). Both results are checked equal: row count and an order-independent sum of
    64-bit hashes of every link column.
    """
    import pyarrow as pa
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from optiq_engine.spark import attribute_spark, read_parquet, spark_session
    from optiq_engine.spark._arrow import (
        CONVERSION_COLUMNS,
        TOUCHPOINT_COLUMNS,
        contract_columns,
        key_columns,
        narrow_sides,
        partition,
    )

    models = ["LINEAR", "LAST_TOUCH"]
    report: dict = {"users": args.users, "partitions": args.partitions, "master": args.master, "models": models}
    report["load_start"] = load()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        t0 = time.perf_counter()
        d = oq.synthetic.generate(n_users=args.users, seed=1)
        tp = d.touchpoints.with_columns(pl.col(pl.Enum).cast(pl.String))
        tp.write_parquet(Path(tmp) / "tp.parquet")
        d.conversions.write_parquet(Path(tmp) / "cv.parquet")
        report.update(touchpoints=tp.height, conversions=d.conversions.height)
        print(
            f"{tp.height:,} touchpoints, {d.conversions.height:,} conversions, {args.users:,} users "
            f"(generated and written in {time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
        del d, tp
        oq.attribute(
            pl.read_parquet(Path(tmp) / "tp.parquet", n_rows=10_000),
            pl.read_parquet(Path(tmp) / "cv.parquet", n_rows=1_000),
            models=models,
        )  # compile
        local: list[dict] = []
        for _ in range(args.repeat):
            c0, t0 = cpu_seconds(), time.perf_counter()
            tpl, cvl = pl.read_parquet(Path(tmp) / "tp.parquet"), pl.read_parquet(Path(tmp) / "cv.parquet")
            t1 = time.perf_counter()
            r = oq.attribute(tpl, cvl, models=models)
            t2 = time.perf_counter()
            local.append(
                {"read": t1 - t0, "attribute": t2 - t1, "cpu": cpu_seconds() - c0, "load": load(), "timings": r.timings}
            )
            n_links = r.links.height
            print(
                f"attribute() in process: read {t1 - t0:.2f} s, attribute {t2 - t1:.2f} s, {n_links:,} links "
                f"(stages {', '.join(f'{k} {v:.2f}' for k, v in r.timings.items())})  load {load()}",
                flush=True,
            )
            del tpl, cvl, r
        report["attribute"] = local

        t0 = time.perf_counter()
        local_dir = Path(tmp) / "spark-local"  # shuffle files land here: their size is the shuffle volume
        spark = spark_session(
            args.master, shuffle_partitions=args.partitions, config={"spark.local.dir": str(local_dir)}
        )
        spark.sparkContext.setLogLevel("ERROR")
        report["session_start"] = time.perf_counter() - t0
        tps = read_parquet(spark, Path(tmp) / "tp.parquet")
        cvs = read_parquet(spark, Path(tmp) / "cv.parquet")
        tps.createOrReplaceTempView("tp")
        cvs.createOrReplaceTempView("cv")
        query = WINDOW_SQL.format(days=oq.AttributionConfig().lookback.days)
        tp_cols = contract_columns(tps, TOUCHPOINT_COLUMNS, (), what="touchpoints")
        cv_cols = contract_columns(cvs, CONVERSION_COLUMNS, (), what="conversions")
        keys = key_columns(tp_cols, cv_cols)
        sides = narrow_sides(tps, cvs, tp_cols, cv_cols, keys)
        shuffled = partition(sides, keys, args.partitions)
        count_schema = T.StructType([T.StructField("rows", T.LongType())])

        def count_rows(batches):
            n = sum(b.num_rows for b in batches)
            yield pa.RecordBatch.from_pydict({"rows": [n]}, schema=pa.schema([("rows", pa.int64())]))

        def noop(frame) -> None:
            frame.write.format("noop").mode("overwrite").save()

        results = []

        def optiq(sink: str) -> None:
            result = attribute_spark(tps, cvs, models=models, partitions=args.partitions)
            results.append(result)
            if sink == "noop":
                noop(result.links)
            else:
                result.links.write.mode("overwrite").parquet(str(Path(tmp) / "optiq_links"))

        def sql(sink: str) -> None:
            if sink == "noop":
                noop(spark.sql(query))
            else:
                spark.sql(query).write.mode("overwrite").parquet(str(Path(tmp) / "sql_links"))

        runs: dict = {}
        n = args.repeat
        measure("warm-up: Optiq, Spark SQL (noop)", lambda: (optiq("noop"), sql("noop")), 1, runs)
        k = args.stage_repeat
        measure("Optiq read (narrow selection, noop)", lambda: noop(sides), k, runs)
        before = _disk_bytes(local_dir)
        measure("Optiq read + shuffle (noop)", lambda: noop(shuffled), 1, runs)
        report["shuffle_bytes"] = _disk_bytes(local_dir) - before
        print(f"shuffle files written by one read + shuffle: {report['shuffle_bytes'] / 1e6:.0f} MB", flush=True)
        measure(
            "Optiq read + shuffle + Arrow into Python",
            lambda: noop(shuffled.mapInArrow(count_rows, count_schema)),
            k,
            runs,
        )
        for sink in ("noop", "parquet"):
            for name, action in (
                (f"Optiq attribute_spark links ({sink})", optiq),
                (f"Spark SQL window query ({sink})", sql),
            ):
                measure(name, lambda action=action, sink=sink: action(sink), n, runs)
        report["spark"] = runs
        report["partition_seconds"] = [r.timings for r in results]
        for r in results[1 : n + 1]:
            print(
                "partitions' seconds (noop run): " + ", ".join(f"{k} {v:.2f}" for k, v in r.timings.items()), flush=True
            )
        best = {k: min(x["wall"] for x in v) for k, v in runs.items()}
        for sink in ("noop", "parquet"):
            ratio = best[f"Spark SQL window query ({sink})"] / best[f"Optiq attribute_spark links ({sink})"]
            print(f"Spark SQL window functions / Optiq on Spark ({sink}, best of {n}): {ratio:.2f}x", flush=True)
        cols = list(LINK_COLUMNS)

        def fingerprint(frame):
            row = frame.select(
                F.count(F.lit(1)).alias("rows"),
                F.sum(F.xxhash64(*cols).cast("decimal(38,0)")).alias("hash_sum"),
            ).collect()[0]
            return int(row["rows"]), int(row["hash_sum"])

        a = fingerprint(spark.read.parquet(str(Path(tmp) / "optiq_links")).select(*cols))
        b = fingerprint(spark.read.parquet(str(Path(tmp) / "sql_links")).select(*cols))
        report["links"] = {"optiq": a, "sql": b, "equal": a == b}
        print(f"links: Optiq {a[0]:,} rows, SQL {b[0]:,} rows, same rows (hash sum): {a == b}", flush=True)
        spark.stop()
    report["load_end"] = load()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
