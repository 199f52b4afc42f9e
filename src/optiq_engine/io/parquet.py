"""Parquet sources and sinks: the embedded default, no database needed."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import polars as pl

from ..errors import ConfigError, InputError
from ..result import AttributionResult, combine_credit

__all__ = ["read_parquet", "scan_parquet", "iter_partitions", "ResultWriter", "write_result"]

_PARTITION_SEED = 0x2545F4914F6CDD1D


def scan_parquet(path: str | Path) -> pl.LazyFrame:
    """A lazy frame over a Parquet file, a directory of Parquet files (hive partitions too) or a glob."""
    p = Path(path)
    if not p.exists() and not any(ch in str(path) for ch in "*?["):
        raise InputError(f"no such file or directory: {str(path)!r}")
    source = str(p / "**" / "*.parquet") if p.is_dir() else str(path)
    try:
        frame = pl.scan_parquet(source, hive_partitioning=p.is_dir())
        frame.collect_schema()
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise InputError(f"cannot read Parquet from {str(path)!r}: {exc}") from exc
    return frame


def read_parquet(path: str | Path) -> pl.DataFrame:
    """A frame from a Parquet file, a directory of Parquet files (hive partitions too) or a glob."""
    try:
        return scan_parquet(path).collect()
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise InputError(f"cannot read Parquet from {str(path)!r}: {exc}") from exc


def iter_partitions(
    touchpoints: str | Path, conversions: str | Path, *, partitions: int
) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """Touchpoints and conversions in ``partitions`` slices by a hash of ``anon_id``.

    A user's rows (and so every (organization, site, user) group) land in one slice, so attributing the
    slices one by one gives the same links as attributing everything at once, in about 1/partitions of
    the memory. Each slice re-scans the files (with the streaming engine).
    """
    if partitions < 1:
        raise ConfigError(f"partitions must be at least 1, got {partitions}")
    tp, cv = scan_parquet(touchpoints), scan_parquet(conversions)
    if partitions == 1:
        yield tp.collect(), cv.collect()
        return
    for i in range(partitions):
        pred = pl.col("anon_id").cast(pl.String).hash(_PARTITION_SEED) % partitions == i
        yield tp.filter(pred).collect(engine="streaming"), cv.filter(pred).collect(engine="streaming")


class ResultWriter:
    """Write results as Parquet under ``out_dir``, all or nothing.

    One result gives ``links.parquet``, ``credit.parquet``, ``unattributed.parquet`` (and
    ``quarantined_*.parquet`` when rows were set aside). With ``partitioned=True`` every :meth:`write`
    adds ``links/part-NNNNN.parquet``, and credit (summed), unattributed and quarantined rows are written
    once at the end. Files are written into a hidden staging directory and moved into place only when the
    ``with`` block ends without an error, so a failed run leaves the previous results intact.
    """

    def __init__(self, out_dir: str | Path, *, partitioned: bool = False) -> None:
        self.out = Path(out_dir)
        self.partitioned = partitioned
        self._stage = self.out / f".staging-{uuid.uuid4().hex}"
        self._results: list[AttributionResult] = []
        self.counts: dict[str, int] = {}

    def __enter__(self) -> ResultWriter:
        (self._stage / "links" if self.partitioned else self._stage).mkdir(parents=True)
        return self

    def write(self, result: AttributionResult) -> None:
        """Add one result (one partition when partitioned)."""
        if self.partitioned:
            result.links.write_parquet(self._stage / "links" / f"part-{len(self._results):05d}.parquet")
        elif self._results:
            raise ConfigError("an unpartitioned ResultWriter takes one result; pass partitioned=True")
        else:
            result.links.write_parquet(self._stage / "links.parquet")
        self.counts["links"] = self.counts.get("links", 0) + result.links.height
        self._results.append(result.without_links())

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                self._finish()
        finally:
            shutil.rmtree(self._stage, ignore_errors=True)

    def _finish(self) -> None:
        results = self._results
        frames = {
            "credit": combine_credit([r.credit for r in results]),
            "unattributed": pl.concat([r.unattributed for r in results], how="vertical_relaxed"),
        }
        for table in ("touchpoints", "conversions"):
            rows = pl.concat([r.quarantined[table] for r in results if table in r.quarantined], how="diagonal_relaxed")
            if rows.height:
                frames[f"quarantined_{table}"] = rows
        for name, frame in frames.items():
            frame.write_parquet(self._stage / f"{name}.parquet")
            self.counts[name] = frame.height
        names = ["links" if self.partitioned else "links.parquet"] + [f"{n}.parquet" for n in frames]
        for stale in ("links", "links.parquet", "quarantined_touchpoints.parquet", "quarantined_conversions.parquet"):
            if stale not in names:
                _remove(self.out / stale)
        for name in names:
            target = self.out / name
            backup = self.out / f".old-{uuid.uuid4().hex}-{name}"
            if target.exists():
                target.replace(backup)
            (self._stage / name).replace(target)
            _remove(backup)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def write_result(result: AttributionResult, out_dir: str | Path) -> dict[str, int]:
    """Write one result as Parquet files under ``out_dir`` (all or nothing); returns row counts."""
    with ResultWriter(out_dir) as writer:
        writer.write(result)
    return writer.counts
