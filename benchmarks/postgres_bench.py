"""Postgres end to end: load, attribute, write, against the raw COPY limits and polars.read_database.

Usage: ``python -m benchmarks.postgres_bench [--users 200000] [--url postgresql://postgres@127.0.0.1:5432/postgres]``
(about 5 touchpoints and 0.5 conversions per user). A fresh database is created, seeded with synthetic
data, measured, and dropped. Updates the ``postgres`` section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path

import polars as pl
import psycopg
import psycopg.sql
from sqlalchemy.engine import make_url

import optiq_engine as oq
from benchmarks.run import machine, write_section
from optiq_engine.batch import run_batch
from optiq_engine.io import db, postgres, seed

HERE = Path(__file__).resolve().parent


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def raw_copy_read(dsn: str, sql: str, params: list) -> float:
    """Seconds to run the query as binary COPY and consume every byte (the read limit)."""
    literal = sql
    with psycopg.connect(dsn) as conn:
        for i, value in reversed(list(enumerate(params, 1))):
            literal = literal.replace(f"${i}", psycopg.sql.Literal(value).as_string(conn))
        t0 = time.perf_counter()
        with conn.cursor().copy(f"COPY ({literal}) TO STDOUT (FORMAT binary)") as copy:
            for _ in copy:
                pass
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()
    admin = make_url(args.url).set(drivername="postgresql")
    name = f"optiq_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.set(database=name).render_as_string(hide_password=False)
    out: dict = {"users": args.users}
    try:
        db.upgrade(url)
        data = oq.synthetic.generate(n_users=args.users, seed=0)
        out["seed_s"], _ = timed(lambda: seed.write_synthetic(url, data, page_views=True))
        out["touchpoints"], out["conversions"] = data.touchpoints.height, data.conversions.height
        window = postgres.Window(organization_id="org_1")
        sql, params = postgres._touchpoints_query(window)
        out["read_adbc_s"], tp = timed(lambda: postgres.read_touchpoints(url, window))
        out["read_raw_copy_s"] = raw_copy_read(url, sql, params)
        literal = sql.replace("$1", "'org_1'")
        with psycopg.connect(url) as conn:
            out["read_polars_read_database_s"], _ = timed(lambda: pl.read_database(literal, conn))
        cv = postgres.read_conversions(url, window)
        out["attribute_s"], result = timed(lambda: oq.attribute(tp, cv))
        rows = postgres.link_rows_for_postgres(result.links)
        out["links"] = rows.height
        import adbc_driver_postgresql.dbapi as adbc

        with adbc.connect(url) as conn, conn.cursor() as cur:  # raw binary COPY into the same table
            t0 = time.perf_counter()
            cur.adbc_ingest("AttributionLink", rows.to_arrow(), mode="append")
            conn.commit()
            out["write_raw_copy_s"] = time.perf_counter() - t0
            cur.execute('TRUNCATE "AttributionLink"')
            conn.commit()
        out["write_merge_s"], _ = timed(
            lambda: postgres.write_links(
                url, result.links, organization_id="org_1", conversion_ids=cv["conversion_id"],
                models=list(result.model_names),
            )
        )  # fmt: skip
        out["rewrite_unchanged_s"], _ = timed(
            lambda: postgres.write_links(
                url, result.links, organization_id="org_1", conversion_ids=cv["conversion_id"],
                models=list(result.model_names),
            )
        )  # fmt: skip
        with psycopg.connect(url) as conn:
            conn.execute('TRUNCATE "AttributionLink", "Journey", "JourneyEvent", "EngineRun"')
        out["full_run_s"], summary = timed(lambda: run_batch(url, organization_id="org_1", full=True))
        out["full_run_stages"] = summary.timings
        out["rerun_s"], _ = timed(lambda: run_batch(url, organization_id="org_1", full=True))
    finally:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(out, default=str))
    (HERE / "postgres_results.json").write_text(json.dumps({"machine": machine(), **out}, indent=2, default=str))
    n_tp, n_links = out["touchpoints"], out["links"]
    md = f"""## Postgres: load, attribute, write ({n_tp:,} touchpoints, {out['conversions']:,} conversions)

Written by `benchmarks/postgres_bench.py` (same machine as above; PostgreSQL 15, local socket over TCP,
default settings). Synthetic data seeded into a fresh Optiq database (page views included).

| step | seconds | rows/s | baseline in the same run | ratio |
|---|---:|---:|---|---:|
| read touchpoints (ADBC, Arrow) | {out['read_adbc_s']:.2f} | {n_tp / out['read_adbc_s'] / 1e6:.2f}M | raw binary COPY TO of the same query: {out['read_raw_copy_s']:.2f} s | {out['read_raw_copy_s'] / out['read_adbc_s']:.2f}x of the COPY rate |
| read touchpoints (`polars.read_database`, psycopg) | {out['read_polars_read_database_s']:.2f} | {n_tp / out['read_polars_read_database_s'] / 1e6:.2f}M | ADBC loader | {out['read_polars_read_database_s'] / out['read_adbc_s']:.1f}x slower |
| attribute (six models) | {out['attribute_s']:.2f} | | | |
| write {n_links:,} links (stage + merge, one transaction) | {out['write_merge_s']:.2f} | {n_links / out['write_merge_s'] / 1e6:.2f}M | raw binary COPY into `AttributionLink` (its indexes and foreign keys): {out['write_raw_copy_s']:.2f} s | {out['write_raw_copy_s'] / out['write_merge_s']:.2f}x of the COPY rate |
| rewrite the same links (nothing changes) | {out['rewrite_unchanged_s']:.2f} | | | |
| `optiq run --full` (load, attribute, journeys, write) | {out['full_run_s']:.2f} | | read + write COPY limits: {out['read_raw_copy_s'] + out['write_raw_copy_s']:.2f} s | {out['full_run_s'] / (out['read_raw_copy_s'] + out['write_raw_copy_s']):.2f}x |
| rerun (nothing changes) | {out['rerun_s']:.2f} | | | |

Stages of the full run (s): {", ".join(f"{k} {v:.2f}" for k, v in out['full_run_stages'].items())}.
"""
    write_section(Path(args.out), "postgres", md)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
