"""Peak memory of one attribute() (or Polars baseline) call in a fresh process.

``python -m benchmarks.memory engine|polars TOUCHPOINTS.parquet CONVERSIONS.parquet`` prints JSON: the
process's resident set after imports (``rss_start``), its high-water mark from the moment the inputs are
loaded (``peak``; the mark is reset after reading, so Parquet decoding buffers do not count), and the Arrow
sizes of the inputs and the result. ``peak - rss_start`` is what the loaded inputs, the computation and
its result cost together.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import psutil

import optiq_engine as oq
from benchmarks.polars_baseline import attribute_polars
from benchmarks.run import arrow_bytes, peak_rss, result_arrow_bytes


def main() -> None:
    which, tp_path, cv_path = sys.argv[1:4]
    rss_start = psutil.Process().memory_info().rss
    tp = pl.read_parquet(tp_path)
    cv = pl.read_parquet(cv_path)
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark: Parquet decoding is not ours
    if which == "engine":
        result = oq.attribute(tp, cv)
        peak = peak_rss()
        output_bytes = result_arrow_bytes(result)
    else:
        links = attribute_polars(tp.with_columns(pl.col("channel").cast(pl.String)), cv)
        peak = peak_rss()
        output_bytes = arrow_bytes(links)
    input_bytes = arrow_bytes(tp) + arrow_bytes(cv)  # measured after the peak: the conversion copies
    print(json.dumps({"rss_start": rss_start, "peak": peak, "input_bytes": input_bytes, "output_bytes": output_bytes}))


if __name__ == "__main__":
    main()
