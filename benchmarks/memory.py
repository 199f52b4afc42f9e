"""Peak memory of one attribute() (or Polars baseline) call in a fresh process.

``python -m benchmarks.memory engine|duckdb|polars TOUCHPOINTS.parquet CONVERSIONS.parquet`` prints JSON: the
process's resident set after imports (``rss_start``), its high-water mark from the moment the inputs are
loaded (``peak``; the mark is reset after reading, so Parquet decoding buffers do not count), and the Arrow
sizes of the inputs and the result. ``peak - rss_start`` is what the loaded inputs, the computation and
its result cost together; ``rss_loaded`` is the resident set with the inputs loaded, before the call, so
``peak - rss_loaded`` is what the call costs above its loaded inputs. The DuckDB baseline's imports happen
before ``rss_start``, like the engine's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import psutil

import optiq_engine as oq
from benchmarks.polars_baseline import ALL_MODELS, attribute_polars
from benchmarks.run import arrow_bytes, peak_rss, result_arrow_bytes


def main() -> None:
    which, tp_path, cv_path = sys.argv[1:4]
    if which == "duckdb":
        import duckdb  # noqa: F401  (imported by the baseline only when called)

        import benchmarks.duckdb_baseline  # noqa: F401
    rss_start = psutil.Process().memory_info().rss
    tp = pl.read_parquet(tp_path)
    cv = pl.read_parquet(cv_path)
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark: Parquet decoding is not ours
    rss_loaded = psutil.Process().memory_info().rss
    if which == "engine":
        result = oq.attribute(tp, cv)
        peak = peak_rss()
        output_bytes = result_arrow_bytes(result)
    elif which == "duckdb":
        from benchmarks.duckdb_baseline import attribute_duckdb

        links = attribute_duckdb(tp, cv)
        peak = peak_rss()
        # one chunk per model sharing the id, position, count and channel columns: counted once, as the engine's
        pairs = links.height // len(ALL_MODELS)
        shared = links.slice(0, pairs).select(
            "conversion_id", "touchpoint_id", "position", "touchpoint_count", "channel"
        )
        output_bytes = arrow_bytes(shared) + arrow_bytes(links.select("model", "weight", "credited_value_micros"))
    else:
        links = attribute_polars(tp.with_columns(pl.col("channel").cast(pl.String)), cv)
        peak = peak_rss()
        output_bytes = arrow_bytes(links)
    input_bytes = arrow_bytes(tp) + arrow_bytes(cv)  # measured after the peak: the conversion copies
    print(
        json.dumps(
            {
                "rss_start": rss_start,
                "rss_loaded": rss_loaded,
                "peak": peak,
                "input_bytes": input_bytes,
                "output_bytes": output_bytes,
            }
        )
    )


if __name__ == "__main__":
    main()
