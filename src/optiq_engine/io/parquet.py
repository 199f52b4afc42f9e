"""Parquet sources and sinks: the embedded default, no database needed."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..errors import InputError
from ..result import AttributionResult

__all__ = ["read_parquet", "write_result"]


def read_parquet(path: str | Path) -> pl.DataFrame:
    """A frame from a Parquet file, a directory of Parquet files (hive partitions too) or a glob."""
    p = Path(path)
    if not p.exists() and not any(ch in str(path) for ch in "*?["):
        raise InputError(f"no such file or directory: {str(path)!r}")
    source = str(p / "**" / "*.parquet") if p.is_dir() else str(path)
    try:
        return pl.read_parquet(source, hive_partitioning=p.is_dir())
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise InputError(f"cannot read Parquet from {str(path)!r}: {exc}") from exc


def write_result(result: AttributionResult, out_dir: str | Path) -> dict[str, int]:
    """Write links, credit, unattributed (and quarantined rows) as Parquet files; returns row counts.

    Files are written under temporary names and renamed on success, so a failed run leaves the previous
    files intact.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames = {
        "links": result.links,
        "credit": result.credit,
        "unattributed": result.unattributed,
        **{f"quarantined_{k}": v for k, v in result.quarantined.items() if v.height},
    }
    tmp = {name: out / f".{name}.parquet.tmp" for name in frames}
    try:
        for name, frame in frames.items():
            frame.write_parquet(tmp[name])
    except BaseException:
        for t in tmp.values():
            t.unlink(missing_ok=True)
        raise
    for name, t in tmp.items():
        t.replace(out / f"{name}.parquet")
    return {name: frame.height for name, frame in frames.items()}
