"""File sources and sinks: Parquet or CSV in, Parquet out; the embedded default, no database needed."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import polars as pl

from .._interrupt import checkpoint
from ..errors import ConfigError, SinkError, SourceError
from ..result import AttributionResult, combine_credit

__all__ = [
    "read_parquet",
    "scan_parquet",
    "read_source",
    "scan_source",
    "iter_partitions",
    "ResultWriter",
    "write_result",
    "TEXT_COLUMNS",
]

_PARTITION_SEED = 0x2545F4914F6CDD1D

#: Columns a CSV file gives as text, whatever they look like: identifiers (``007`` stays ``007``),
#: names, URLs and timestamps (parsed by the frame contract, docs/contract.md §1.2, not by the CSV reader).
#: Every other column is typed by its values (``value_micros`` ``1500000`` is an integer, ``1.5`` a float
#: that the contract refuses, docs/contract.md §1.1).
TEXT_COLUMNS = (
    "event_id",
    "touchpoint_id",
    "conversion_id",
    "anon_id",
    "session_id",
    "organization_id",
    "site_id",
    "type",
    "name",
    "url",
    "referrer",
    "channel",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "gclid",
    "fbclid",
    "ttclid",
    "platform_code",
    "campaign_id",
    "ad_id",
    "properties",
    "occurred_at",
)

#: What polars raises on a file it cannot read (a Rust panic on some corrupted files is not an Exception).
_READ_ERRORS: tuple[type[BaseException], ...] = (pl.exceptions.PolarsError, OSError, pl.exceptions.PanicException)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _kind(path: Path) -> str:
    """``parquet`` or ``csv`` for a file, by its extension, else by its first bytes."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] in ([".parquet"], [".pq"]):
        return "parquet"
    if suffixes[-1:] == [".csv"]:
        return "csv"
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise SourceError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    if magic == b"PAR1":
        return "parquet"
    raise SourceError(f"{str(path)!r} is neither Parquet nor CSV: name it *.parquet or *.csv")


def _files(path: Path) -> tuple[str, list[Path]]:
    """The kind (``parquet`` / ``csv``) and the files of a file or a directory (recursively, hidden ones
    skipped: a directory holds one kind)."""
    if not path.exists():
        raise SourceError(f"no such file or directory: {str(path)!r}")
    if not path.is_dir():
        return _kind(path), [path]
    found = {
        kind: sorted(
            p
            for p in path.rglob(f"*.{kind}")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        for kind in ("parquet", "csv")
    }
    kinds = [kind for kind, files in found.items() if files]
    if not kinds:
        raise SourceError(f"no .parquet or .csv files in directory {str(path)!r}")
    if len(kinds) > 1:
        raise SourceError(
            f"directory {str(path)!r} holds both .parquet and .csv files ({len(found['parquet'])} and "
            f"{len(found['csv'])}): point at one kind (a file or a folder of one kind)"
        )
    return kinds[0], found[kinds[0]]


def scan_source(path: str | Path) -> pl.LazyFrame:
    """A lazy frame over a Parquet or CSV file, a directory of either, or a glob of Parquet files.

    Parameters
    ----------
    path
        ``*.parquet`` / ``*.csv`` (else recognised by its first bytes), a directory (its ``.parquet`` files
        with hive partitions, or its ``.csv`` files, recursively; not both), or a glob.

    Returns
    -------
    polars.LazyFrame
        CSV columns in :data:`TEXT_COLUMNS` are strings; the others are typed by their values (the whole
        file is scanned to decide).

    Raises
    ------
    SourceError
        A missing path, a file of another format, an unreadable header or footer. Errors in the data
        itself surface when collecting: use :func:`read_source`, or :func:`iter_partitions`.
    """
    text = str(path)
    if any(ch in text for ch in "*?[") and not Path(path).exists():
        if text.lower().endswith(".csv"):
            return _scan_csv(text, text)
        return _scan_parquet(text, text, hive=False)
    p = Path(path)
    kind, files = _files(p)
    if kind == "csv":
        return _scan_csv([str(f) for f in files], text)
    return _scan_parquet(str(p / "**" / "*.parquet") if p.is_dir() else str(p), text, hive=p.is_dir())


def _scan_parquet(source: str, path: str, *, hive: bool) -> pl.LazyFrame:
    try:
        frame = pl.scan_parquet(source, hive_partitioning=hive)
        frame.collect_schema()
    except _READ_ERRORS as exc:
        raise SourceError(
            f"cannot read Parquet from {path!r}: {_first_line(exc)} (a damaged or truncated file? write it again)"
        ) from exc
    return frame


def _scan_csv(source: str | list[str], path: str) -> pl.LazyFrame:
    try:
        header = pl.scan_csv(source, n_rows=0, infer_schema=False).collect_schema()
        text = {c: pl.String for c in header if c in TEXT_COLUMNS}
        frame = pl.scan_csv(source, infer_schema_length=None, schema_overrides=text)
        # Decimals stay text: through float64, 12345678901.123456 would lose its last digit before the exact
        # conversion to micros (docs/contract.md §1.1) could see it.
        floats = {c: pl.String for c, dtype in frame.collect_schema().items() if dtype.is_float()}
        if floats:
            frame = pl.scan_csv(source, infer_schema_length=None, schema_overrides=text | floats)
            frame.collect_schema()
    except _READ_ERRORS as exc:
        raise SourceError(f"cannot read CSV from {path!r}: {_first_line(exc)}") from exc
    return frame


def _collect(frame: pl.LazyFrame, path: str | Path, *, streaming: bool = False) -> pl.DataFrame:
    try:
        return frame.collect(engine="streaming") if streaming else frame.collect()
    except _READ_ERRORS as exc:
        line = _first_line(exc)
        hint = "a damaged or truncated file? write it again" if "parquet" in line.lower() else "fix the file"
        raise SourceError(f"cannot read {str(path)!r}: {line} ({hint})") from exc


def read_source(path: str | Path) -> pl.DataFrame:
    """A frame from a Parquet or CSV file, a directory of either or a glob (:func:`scan_source`).

    Parameters
    ----------
    path
        As :func:`scan_source`.

    Returns
    -------
    polars.DataFrame
        Typed as :func:`scan_source` says.

    Raises
    ------
    SourceError
        The path is missing, of another format, or damaged (one line naming it).
    """
    return _collect(scan_source(path), path)


def scan_parquet(path: str | Path) -> pl.LazyFrame:
    """A lazy frame over a Parquet file, a directory of Parquet files (hive partitions too) or a glob.

    Parameters
    ----------
    path
        A file (whatever its name), a directory (its ``**/*.parquet``, hive partitions as columns) or a glob.

    Returns
    -------
    polars.LazyFrame

    Raises
    ------
    SourceError
        The path does not exist (and is not a glob), or its schema cannot be read (a damaged file).
    """
    p = Path(path)
    if not p.exists() and not any(ch in str(path) for ch in "*?["):
        raise SourceError(f"no such file or directory: {str(path)!r}")
    return _scan_parquet(str(p / "**" / "*.parquet") if p.is_dir() else str(path), str(path), hive=p.is_dir())


def read_parquet(path: str | Path) -> pl.DataFrame:
    """A frame from a Parquet file, a directory of Parquet files (hive partitions too) or a glob.

    Parameters
    ----------
    path
        As :func:`scan_parquet`.

    Returns
    -------
    polars.DataFrame

    Raises
    ------
    SourceError
        The path does not exist, or a file cannot be read (one line naming it).
    """
    return _collect(scan_parquet(path), path)


def iter_partitions(
    touchpoints: str | Path, conversions: str | Path, *, partitions: int
) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """Touchpoints and conversions (Parquet or CSV: :func:`scan_source`) in ``partitions`` slices by a
    hash of ``anon_id``.

    A user's rows (and so every (organization, site, user) group) land in one slice, so attributing the
    slices one by one gives the same links as attributing everything at once, in about 1/partitions of
    the memory. Each slice re-scans the files (with the streaming engine).

    Parameters
    ----------
    touchpoints, conversions
        Paths as :func:`scan_source` takes them; both have an ``anon_id`` column.
    partitions
        Number of slices (>= 1); 1 reads each input whole, once.

    Yields
    ------
    tuple of polars.DataFrame
        ``(touchpoints, conversions)`` of one slice, ``partitions`` times.

    Raises
    ------
    ConfigError
        ``partitions < 1`` (at the first iteration: this is a generator).
    SourceError
        An input cannot be found or read.
    """
    if partitions < 1:
        raise ConfigError(f"partitions must be at least 1, got {partitions}")
    tp, cv = scan_source(touchpoints), scan_source(conversions)
    if partitions == 1:
        yield _collect(tp, touchpoints), _collect(cv, conversions)
        return
    for i in range(partitions):
        pred = pl.col("anon_id").cast(pl.String).hash(_PARTITION_SEED) % partitions == i
        yield (
            _collect(tp.filter(pred), touchpoints, streaming=True),
            _collect(cv.filter(pred), conversions, streaming=True),
        )


class ResultWriter:
    """Write results as Parquet under ``out_dir``, all or nothing.

    One result gives ``links.parquet``, ``credit.parquet``, ``unattributed.parquet`` (and
    ``quarantined_*.parquet`` when rows were set aside). With ``partitioned=True`` every :meth:`write`
    adds ``links/part-NNNNN.parquet``, and credit (summed), unattributed and quarantined rows are written
    once at the end. Files are written into a hidden staging directory and moved into place only when the
    ``with`` block ends without an error, so a failed (or interrupted: SIGINT/SIGTERM under
    :func:`optiq_engine._interrupt.handle_signals`) run leaves the previous results intact and no staging.

    Parameters
    ----------
    out_dir
        The output folder (created if missing); the staging folder is a hidden folder inside it.
    partitioned
        Default False: exactly one :meth:`write`; True: any number, each one ``links`` part.

    Raises
    ------
    SinkError
        On entering the ``with`` block, or writing or publishing the files: ``out_dir`` is a file, read-only,
        or full.
    Interrupted
        On leaving the block, when SIGINT / SIGTERM arrived under
        :func:`~optiq_engine._interrupt.handle_signals`: nothing is published.
    """

    def __init__(self, out_dir: str | Path, *, partitioned: bool = False) -> None:
        self.out = Path(out_dir)
        self.partitioned = partitioned
        self._stage = self.out / f".staging-{uuid.uuid4().hex}"
        self._results: list[AttributionResult] = []
        self.counts: dict[str, int] = {}

    def __enter__(self) -> ResultWriter:
        """Create the staging directory (and ``out_dir`` if missing).

        Raises
        ------
        SinkError
            ``out_dir`` is an existing file, or cannot be created or written (read-only, no space).
        """
        if self.out.exists() and not self.out.is_dir():
            raise SinkError(f"output folder {str(self.out)!r} is an existing file: name a folder (created if missing)")
        with _sink(self.out):
            (self._stage / "links" if self.partitioned else self._stage).mkdir(parents=True)
        return self

    def write(self, result: AttributionResult) -> None:
        """Add one result (one partition when partitioned).

        Parameters
        ----------
        result
            A result: its ``links`` are written to the staging folder now, the rest kept for the end.

        Raises
        ------
        ConfigError
            A second result for an unpartitioned writer.
        SinkError
            The links cannot be written.
        """
        if not self.partitioned and self._results:
            raise ConfigError("an unpartitioned ResultWriter takes one result; pass partitioned=True")
        name = f"links/part-{len(self._results):05d}.parquet" if self.partitioned else "links.parquet"
        with _sink(self.out):
            result.links.write_parquet(self._stage / name)
        self.counts["links"] = self.counts.get("links", 0) + result.links.height
        self._results.append(result.without_links())

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                checkpoint()  # the last safe point: an interrupted run publishes nothing
                with _sink(self.out):
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


@contextmanager
def _sink(out: Path) -> Iterator[None]:
    """OS errors writing under ``out`` as one :class:`SinkError` line (the previous results stay intact)."""
    try:
        yield
    except OSError as exc:
        what = exc.strerror or str(exc)
        raise SinkError(
            f"cannot write to output folder {str(out)!r}: {what}; choose a writable folder with free space "
            "(previous results there are unchanged)"
        ) from exc


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def write_result(result: AttributionResult, out_dir: str | Path) -> dict[str, int]:
    """Write one result as Parquet files under ``out_dir`` (all or nothing); returns row counts.

    Parameters
    ----------
    result
        The result of :func:`optiq_engine.attribute`.
    out_dir
        The output folder (created if missing); files of a previous result there are replaced.

    Returns
    -------
    dict of str to int
        Rows written per file stem (``links``, ``credit``, ``unattributed``, ``quarantined_*``).

    Raises
    ------
    SinkError
        ``out_dir`` is a file, read-only, or full (previous results stay in place).
    """
    with ResultWriter(out_dir) as writer:
        writer.write(result)
    return writer.counts
