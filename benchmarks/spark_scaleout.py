"""attribute_spark (local[2]) next to attribute() on the same Parquet data (python -m benchmarks.spark_scaleout).

Prints seconds per step; does not write benchmarks/RESULTS.md. Sizes: --users 200000 gives about 1M
touchpoints. Spark's links are computed with the ``noop`` sink (every row produced, nothing written).

``--sql-baseline`` (the issue's comparison; ``--users 2000000`` gives about 10M touchpoints / 1M
conversions): on the same session and Parquet data, the heuristic models of ``--models`` (default all six:
FIRST_TOUCH, LAST_TOUCH, LAST_NON_DIRECT, LINEAR, POSITION_BASED, TIME_DECAY at their default parameters)
written as one Spark SQL window-function query (:func:`window_sql`: what a data engineer would otherwise
write: a range join of touchpoints to conversions on the group key, ``LAG`` for the previous conversion,
``ROW_NUMBER`` / ``COUNT`` / ``MAX`` / ``SUM`` over the conversion, one ``UNION ALL`` branch per model, the
exact largest-remainder value split with a ranking window) next to ``attribute_spark(models=models)``, both
to the ``noop`` sink and to Parquet; the stages of the Optiq path measured one by one (read, + shuffle, +
Arrow into Python, whole, the partitions' own seconds per stage); the single-process ``attribute()`` on the
same Parquet. Wall and CPU seconds (the process tree: driver, JVM, Python workers) and the load average of
every run; both link sets checked equal: an order-independent hash sum of all eight columns (bit-exact), and
a join on (conversion, touchpoint, model) allowing weights to differ by 1e-12 (TIME_DECAY's ``POW`` is
Java's fdlibm, not the C library the engine uses: a few weights differ in the last bit). ``--json`` keeps it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import timedelta
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
    parser.add_argument(
        "--models",
        default=",".join(SQL_MODELS),
        help="comma-separated heuristic models of --sql-baseline (default: all six)",
    )
    parser.add_argument("--json", help="write the --sql-baseline measurements to this JSON file")
    parser.add_argument("--tmp", help="directory for the Parquet data (default: the system's)")
    args = parser.parse_args()
    if args.sql_baseline:
        args.models = [m.strip() for m in args.models.split(",") if m.strip()]
        window_sql(args.models, oq.AttributionConfig())  # unknown or repeated names fail before any work
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
                read_parquet(spark, Path(tmp) / "tp.parquet"),
                read_parquet(spark, Path(tmp) / "cv.parquet"),
                models=models,
                partitions=args.partitions,
            )
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


#: The models :func:`window_sql` writes in Spark SQL: the six heuristics, in ``attribute()``'s order.
SQL_MODELS: tuple[str, ...] = tuple(oq.models.HEURISTIC_MODELS)


def _double(x: float) -> str:
    """A Spark SQL DOUBLE literal of exactly ``x`` (``repr`` round-trips; ``1e-05`` -> ``1e-05D`` is valid)."""
    return f"{float(x)!r}D"


def _string(s: str) -> str:
    """A Spark SQL string literal (backslash escapes)."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _split(m: str, source: str) -> str:
    """CTEs ``{m}_q``, ``{m}_s``: model ``m``'s largest-remainder split of ``value_micros`` by ``w_{m}``.

    docs/attribution.md "Value split": quota ``q = float(V) * w``, base ``V`` if ``q >= float(V)`` else
    ``floor(q)``, fraction ``q - floor(q)``; remainder ``R = V - sum(base)`` over the conversion, and one unit
    to each of the ``R`` largest ``(fraction, position)`` (ties in the fraction to the later position).
    """
    q = f"CAST(value_micros AS DOUBLE) * w_{m}"
    return f"""{m}_q AS (  -- quota q = V * w: base (V if q >= V, else floor(q)) and fraction
  SELECT *, IF({q} >= CAST(value_micros AS DOUBLE), value_micros, FLOOR({q})) AS base_{m},
         {q} - FLOOR({q}) AS frac_{m}
  FROM {source}
), {m}_s AS (  -- remainder R = V - sum(base); one unit each to the R largest (frac, position)
  SELECT *, base_{m} + IF(ROW_NUMBER() OVER (PARTITION BY conversion_id ORDER BY frac_{m} DESC, position DESC)
                           <= value_micros - SUM(base_{m}) OVER (PARTITION BY conversion_id), 1L, 0L) AS c_{m}
  FROM {m}_q
)"""


def window_sql(models: list[str], config: oq.AttributionConfig) -> str:
    """Spark SQL computing the links ``attribute(tp, cv, models=models, config=config)`` computes.

    Reads the temporary views ``tp`` and ``cv`` (both with ``organization_id`` and ``site_id`` columns; a
    non-null ``channel`` on ``tp``; ``value_micros`` on ``cv``) and returns the columns of
    :data:`LINK_COLUMNS` for any subset of the six heuristic models (:data:`SQL_MODELS`, each at most once),
    with the parameters of ``config`` (lookback, ``reset_after_conversion``, POSITION_BASED's shares,
    TIME_DECAY's half-life, the direct channels), following docs/attribution.md. One pass, as a data
    engineer would write it for several models at once:

    * conversions with ``LAG`` for the previous conversion of their group (organization, site, anon id; a
      null a key value of its own, hence ``<=>`` in the join), times as integer microseconds
      (``UNIX_MICROS``: exact, whatever the session time zone); the range join of touchpoints to
      conversions, ``T - lookback < t <= T`` and ``t > T_prev``; ``ROW_NUMBER`` by ``(occurred_at,
      touchpoint_id)`` for the position (Spark compares strings as UTF-8 bytes), ``COUNT`` and ``MAX(t)``
      over the conversion;
    * every model's weight and credited micros as two columns of the same pair row: FIRST_TOUCH,
      LAST_TOUCH: 1 and the whole value at position 1 / n. LAST_NON_DIRECT: the same at the largest
      position whose channel is not direct (a ``MAX`` over the conversion; n if all are direct). LINEAR:
      equal quotas, so the remaining units go to the last positions. POSITION_BASED, TIME_DECAY: the weight
      table, then the largest-remainder split with a ``ROW_NUMBER`` by (fraction, position) descending
      (:func:`_split`). TIME_DECAY's ``r_k = 2 ** (-float(t_n - t_k) / h)`` is ``POW`` and its sum runs left
      to right by position (a window ordered by position over the whole conversion), as the engine sums;
    * ``stack`` turns each pair row into one link row per model (every eligible touchpoint, weight 0
      included).

    Where it cannot match the engine bit for bit: Spark's ``POW`` is Java's ``StrictMath.pow`` (fdlibm),
    the engine's ``2.0 ** x`` is compiled by Numba/LLVM to the C library's ``exp2``; they differ in the last
    bit for a few percent of the ``r_k`` (so TIME_DECAY weights differ by ~1e-16, and a credited micro could
    in principle move when two fractions are that close). The split hands out the remainder ``R`` in one
    round, which is the engine's rule while ``0 <= R <= n``: ``R`` is ``sum(fractions)`` (in ``[0, n)``)
    minus the float error of the quotas' sum, a few ``n`` ulps of ``V``, below one unit for values under
    ~1e15 micros (1e9 currency units) in short journeys (~1e15 / n micros for n touchpoints). Larger
    values may need a second round (``R > n``) or a negative remainder, which this query does not do.
    """
    unknown = [m for m in models if m not in SQL_MODELS]
    if unknown or not models or len(set(models)) != len(models):
        raise ValueError(f"models must be distinct names out of {', '.join(SQL_MODELS)}, got {models}")
    us = timedelta(microseconds=1)
    lookback, half_life = config.lookback // us, _double(config.half_life // us)
    first, last = _double(config.position_first), _double(config.position_last)
    direct = ", ".join(_string(c) for c in config.direct_channels)
    is_direct = f"channel IN ({direct})" if direct else "FALSE"
    prev, reset = "", ""
    if config.reset_after_conversion:
        prev = (
            ",\n         LAG(UNIX_MICROS(occurred_at)) OVER (PARTITION BY organization_id, site_id, anon_id\n"
            "                                             ORDER BY occurred_at, conversion_id) AS prev_ts"
        )
        reset = "\n   AND (c.prev_ts IS NULL OR t.ts > c.prev_ts)"
    one_at = "IF(position = {p}, 1.0D, 0.0D)", "IF(position = {p}, value_micros, 0L)"
    weights = {  # model -> (weight, credited micros or None for the largest-remainder split)
        "FIRST_TOUCH": (one_at[0].format(p="1"), one_at[1].format(p="1")),
        "LAST_TOUCH": (one_at[0].format(p="touchpoint_count"), one_at[1].format(p="touchpoint_count")),
        "LAST_NON_DIRECT": (one_at[0].format(p="lnd_position"), one_at[1].format(p="lnd_position")),
        # equal quotas V * (1/n): the R = V - n * base remaining units go to the last R positions
        "LINEAR": (
            "1.0D / touchpoint_count",
            "lin_base + IF(position > touchpoint_count - (value_micros - touchpoint_count * lin_base), 1L, 0L)",
        ),
        "POSITION_BASED": (
            f"""CASE WHEN touchpoint_count = 1 THEN 1.0D
       WHEN touchpoint_count = 2 THEN IF(position = 1, {first} / ({first} + {last}), {last} / ({first} + {last}))
       WHEN position = 1 THEN {first} WHEN position = touchpoint_count THEN {last}
       ELSE (1.0D - {first} - {last}) / (touchpoint_count - 2) END""",
            None,
        ),
        # r_k = 2 ** (-float(t_n - t_k) / h), h in us; w_k = r_k / (r_1 + ... + r_n), summed left to right
        "TIME_DECAY": (
            "decay / SUM(decay) OVER (PARTITION BY conversion_id ORDER BY position\n"
            "                              ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)",
            None,
        ),
    }
    extra = []
    if "LAST_NON_DIRECT" in models:  # the last non-direct position, else the last
        extra.append(
            f"COALESCE(MAX(IF({is_direct}, NULL, position)) OVER (PARTITION BY conversion_id), touchpoint_count)"
            " AS lnd_position"
        )
    if "LINEAR" in models:
        extra.append(
            "IF(CAST(value_micros AS DOUBLE) * (1.0D / touchpoint_count) >= CAST(value_micros AS DOUBLE), "
            "value_micros,\n            FLOOR(CAST(value_micros AS DOUBLE) * (1.0D / touchpoint_count))) AS lin_base"
        )
    if "TIME_DECAY" in models:
        extra.append(f"POW(2.0D, -CAST(last_ts - ts AS DOUBLE) / {half_life}) AS decay")
    ctes = [
        f"""c AS (  -- conversions: time (us), value (null is 0), the previous conversion of the group
  SELECT conversion_id, organization_id, site_id, anon_id, UNIX_MICROS(occurred_at) AS ts,
         COALESCE(value_micros, 0L) AS value_micros{prev}
  FROM cv
), t AS (
  SELECT touchpoint_id, organization_id, site_id, anon_id, UNIX_MICROS(occurred_at) AS ts, channel FROM tp
), j AS (  -- eligible (conversion, touchpoint) pairs: range join on the group key
  SELECT c.conversion_id, t.touchpoint_id, t.ts, c.value_micros, t.channel
  FROM c JOIN t ON t.organization_id <=> c.organization_id AND t.site_id <=> c.site_id
   AND t.anon_id = c.anon_id
   AND t.ts <= c.ts AND t.ts > c.ts - {lookback}L{reset}
), r AS (  -- positions by (occurred_at, touchpoint_id); per-conversion count and last touchpoint time
  SELECT *, CAST(ROW_NUMBER() OVER (PARTITION BY conversion_id ORDER BY ts, touchpoint_id) AS INT) AS position,
         CAST(COUNT(*) OVER (PARTITION BY conversion_id) AS INT) AS touchpoint_count,
         MAX(ts) OVER (PARTITION BY conversion_id) AS last_ts
  FROM j
), x AS (
  SELECT *{"".join(f",{chr(10)}         {e}" for e in extra)} FROM r
), w AS (  -- every model's weight
  SELECT *{"".join(f",{chr(10)}         {weights[m][0]} AS w_{m}" for m in models)}
  FROM x
)"""
    ]
    source = "w"
    for m in models:
        if weights[m][1] is None:
            ctes.append(_split(m, source))
            source = f"{m}_s"
    credit = {m: weights[m][1] or f"c_{m}" for m in models}
    stack = ", ".join(f"{_string(m)}, w_{m}, {credit[m]}" for m in models)
    return (
        "WITH " + ",\n".join(ctes) + "\n"
        f"SELECT {', '.join(LINK_COLUMNS)} FROM (\n"
        f"  SELECT conversion_id, touchpoint_id, position, touchpoint_count, channel,\n"
        f"         stack({len(models)}, {stack})\n"
        f"           AS (model, weight, credited_value_micros)\n  FROM {source}\n)\n"
    )


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
        f"{name:44s} wall "
        + " ".join(f"{r['wall']:7.2f}" for r in runs)
        + "  cpu "
        + " ".join(f"{r['cpu']:7.2f}" for r in runs)
        + f"  load {runs[-1]['load']}",
        flush=True,
    )


#: Weights of the two link sets may differ by this much (TIME_DECAY's POW against the engine's 2.0 ** x).
WEIGHT_TOLERANCE = 1e-12


def compare_links(optiq, sql) -> dict:
    """Join two Spark link frames on (conversion_id, touchpoint_id, model) and count their differences.

    A row is a mismatch when it is on one side only, when position, touchpoint_count,
    credited_value_micros or channel differ, or when the weights differ by more than
    :data:`WEIGHT_TOLERANCE`. Also counts the weights that are not bit-identical (per model) and the
    largest weight difference.
    """
    from pyspark.sql import functions as F

    key = ["conversion_id", "touchpoint_id", "model"]
    rest = [c for c in LINK_COLUMNS if c not in key]
    a = optiq.select(*key, *(F.col(c).alias(f"a_{c}") for c in rest), F.lit(True).alias("in_a"))
    b = sql.select(*key, *(F.col(c).alias(f"b_{c}") for c in rest), F.lit(True).alias("in_b"))
    j = a.join(b, key, "full_outer")
    one_side = F.col("in_a").isNull() | F.col("in_b").isNull()
    other = ~one_side & ~F.expr(" AND ".join(f"a_{c} <=> b_{c}" for c in rest if c != "weight"))
    diff = F.abs(F.col("a_weight") - F.col("b_weight"))
    beyond = ~one_side & ~(diff <= WEIGHT_TOLERANCE)  # a NaN or a null on one side is beyond too
    not_identical = ~one_side & ~F.expr("a_weight <=> b_weight")
    j = j.select(
        "model",
        one_side.alias("one_side"),
        other.alias("other"),
        beyond.alias("beyond"),
        (one_side | other | beyond).alias("bad"),
        not_identical.alias("not_identical"),
        diff.alias("diff"),
    )
    rows = (
        j.groupBy("model")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            *(F.sum(F.col(c).cast("long")).alias(c) for c in ("one_side", "other", "beyond", "bad", "not_identical")),
            F.max("diff").alias("diff"),
        )
        .collect()
    )
    total = {c: sum(int(r[c]) for r in rows) for c in ("rows", "one_side", "other", "beyond", "bad")}
    return {
        "rows": total["rows"],
        "mismatched": total["bad"],
        "one_side_only": total["one_side"],
        "other_columns_differ": total["other"],
        "weight_beyond_tolerance": total["beyond"],
        "weights_not_identical": sum(int(r["not_identical"]) for r in rows),
        "weights_not_identical_by_model": {r["model"]: int(r["not_identical"]) for r in rows if r["not_identical"]},
        "max_weight_difference": max((float(r["diff"]) for r in rows if r["diff"] is not None), default=0.0),
        "tolerance": WEIGHT_TOLERANCE,
        "equal": total["bad"] == 0,
    }


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def sql_baseline(args: argparse.Namespace) -> None:
    """attribute_spark vs the Spark SQL window-function query, same session, same Parquet, same models.

    The models are ``args.models`` (heuristic names; :func:`window_sql` writes them in SQL, default
    parameters from ``AttributionConfig()``), given to ``attribute()``, ``attribute_spark`` and the query.
    Stages of the Optiq path, each run alone (wall and CPU seconds of the process tree, ``repeat`` times):
    read (the narrow selection, noop sink), read + shuffle (noop sink), read + shuffle + Arrow into Python
    (a mapInArrow that only counts), the whole attribution (noop sink; the partitions' own seconds per
    stage from ``result.timings``) and the whole attribution written to Parquet. The Spark SQL query the
    same way (noop and Parquet). Both results are checked equal: row count and an order-independent sum of
    64-bit hashes of every link column (bit-exact); then joined on (conversion_id, touchpoint_id, model):
    rows on one side only, rows whose other columns differ, or whose weights differ by more than 1e-12 are
    mismatches (TIME_DECAY's ``POW`` may differ from the engine's ``2.0 ** x`` in the last bit); the count
    of weights not bit-identical (per model) and the largest difference are reported too.
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

    models = list(args.models)
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
        query = window_sql(models, oq.AttributionConfig())
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

        def optiq(sink: str, prefilter: bool = True) -> None:
            result = attribute_spark(tps, cvs, models=models, partitions=args.partitions, prefilter=prefilter)
            if prefilter:
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
        # the semi-join prefilter's share: the same call with every touchpoint shuffled (issue 26)
        measure("Optiq attribute_spark links, prefilter off (noop)", lambda: optiq("noop", False), n, runs)
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
        off = best["Spark SQL window query (noop)"] / best["Optiq attribute_spark links, prefilter off (noop)"]
        print(f"... with the prefilter off (noop, best of {n}): {off:.2f}x", flush=True)
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
        report["links_tolerant"] = tolerant = compare_links(
            spark.read.parquet(str(Path(tmp) / "optiq_links")), spark.read.parquet(str(Path(tmp) / "sql_links"))
        )
        print(
            f"links joined on (conversion, touchpoint, model): {tolerant['mismatched']:,} mismatched of "
            f"{tolerant['rows']:,} (one side only {tolerant['one_side_only']:,}, other columns differ "
            f"{tolerant['other_columns_differ']:,}, weight off by > {WEIGHT_TOLERANCE:g} "
            f"{tolerant['weight_beyond_tolerance']:,}); weights not bit-identical: "
            f"{tolerant['weights_not_identical']:,} {tolerant['weights_not_identical_by_model']}, largest "
            f"difference {tolerant['max_weight_difference']:.3g}; equal within {WEIGHT_TOLERANCE:g}: "
            f"{tolerant['equal']}",
            flush=True,
        )
        spark.stop()
    report["load_end"] = load()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
