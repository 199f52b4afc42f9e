"""Path tables: the additive statistics that the data-driven models are fitted on (docs/data_driven.md §2)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute

from ..errors import ColumnNotFoundError, ConfigError, InputError, ModelError
from ..frames import to_polars
from ..kernels import paths as k
from ..kernels import tokenize

__all__ = ["PathTable", "TRANSFORMS", "build_path_table"]

#: Path transforms by name (docs/data_driven.md §2).
TRANSFORMS = {"exposure": k.EXPOSURE, "unique": k.UNIQUE, "first": k.FIRST, "frequency": k.FREQUENCY}


def channel_hashes(channels: Sequence[str]) -> np.ndarray:
    """A stable 64-bit hash of each channel name (path hashes must not depend on code numbering)."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(c.encode(), digest_size=8).digest(), "little") for c in channels],
        dtype=np.uint64,
    )


@dataclass(frozen=True, eq=False)
class PathTable:
    """Distinct transformed paths with their conversions, nulls and value.

    Made by :func:`build_path_table` (:meth:`from_frame`, :meth:`concat`, a run's fits).

    Parameters
    ----------
    channels, offsets, codes, conversions, nulls, value_micros, hashes
        The fields described under Attributes.
    distinct
        Default True; see Attributes.
    gaps
        Default None (untimed); see Attributes.

    Attributes
    ----------
    channels
        Channel names; ``codes`` index into it.
    offsets, codes
        Paths as CSR: row ``p`` is ``codes[offsets[p]:offsets[p + 1]]`` (never empty).
    conversions, nulls
        Converting and non-converting journeys of each path (float64: the bootstrap reweights them).
    value_micros
        Sum of the converting journeys' values.
    hashes
        Content hash of each path (of channel names, so equal across partitions).
    distinct
        Whether every path occurs once (:meth:`merged` makes it so; fits do not need it, the bootstrap
        does).
    gaps
        Timed paths (DATA_DRIVEN's, docs/data_driven.md §2): per touch, int8 aligned with ``codes``, the
        bucket of the time since the path's previous touch (``kernels.paths.gap_bucket``; 0: the first
        touch), part of the path's identity; None: untimed (channel sequences only).
    """

    channels: tuple[str, ...]
    offsets: np.ndarray
    codes: np.ndarray
    conversions: np.ndarray
    nulls: np.ndarray
    value_micros: np.ndarray
    hashes: np.ndarray
    distinct: bool = True
    gaps: np.ndarray | None = None

    def merged(self) -> PathTable:
        """The same journeys with equal paths merged into one row."""
        if self.distinct:
            return self
        return build_path_table(
            self.offsets[:-1],
            self.offsets[1:],
            self.codes,
            self.channels,
            self.conversions,
            self.nulls,
            self.value_micros,
            transform="frequency",
            times=self.gap_times(),
        )[0]

    def gap_times(self) -> np.ndarray | None:
        """Times (microseconds) that reproduce the table's gap buckets (None when untimed): each touch one
        bucket's representative gap after the previous touch."""
        if self.gaps is None:
            return None
        return np.cumsum(np.round(k.GAP_DAYS[self.gaps] * 86_400e6).astype(np.int64))

    def gap_days(self) -> np.ndarray | None:
        """Per touch, the representative days since the path's previous touch (0 at a path's first touch);
        None when untimed."""
        return None if self.gaps is None else k.GAP_DAYS[self.gaps]

    @property
    def height(self) -> int:
        return self.offsets.shape[0] - 1

    @property
    def total_conversions(self) -> float:
        return float(self.conversions.sum())

    def to_frame(self) -> pl.DataFrame:
        """One row per path: ``path`` (list of channels), ``conversions``, ``nulls``, ``value_micros``; a timed
        table also ``gap_days`` (per touch, the representative days since the path's previous touch)."""
        names = pa.array(self.channels, type=pa.large_string()).take(pa.array(self.codes, type=pa.int32()))
        offsets = pa.array(self.offsets, type=pa.int64())
        columns = {
            "path": pl.Series("path", pa.LargeListArray.from_arrays(offsets, names), dtype=pl.List(pl.String)),
            "conversions": self.conversions,
            "nulls": self.nulls,
            "value_micros": self.value_micros,
        }
        days = self.gap_days()
        if days is not None:
            gaps = pa.LargeListArray.from_arrays(offsets, pa.array(days, type=pa.float64()))
            columns["gap_days"] = pl.Series("gap_days", gaps, dtype=pl.List(pl.Float64))
        return pl.DataFrame(columns)

    @staticmethod
    def concat(tables: Sequence[PathTable]) -> PathTable:
        """The path table of the union of the journeys of ``tables`` (disjoint batches or partitions).

        Parameters
        ----------
        tables
            Path tables over any channels, all built with the same transform (not checked: their rows are
            merged as they are), all timed or all untimed.

        Returns
        -------
        PathTable
            Over the sorted union of the channels, equal paths merged into one row.

        Raises
        ------
        ConfigError
            No table.
        ModelError
            One path's value sums to 2**63 micros or more.
        """
        if not tables:
            raise ConfigError("concat needs at least one path table")
        channels = tuple(sorted({c for t in tables for c in t.channels}))
        index = {c: i for i, c in enumerate(channels)}
        codes = np.concatenate([np.array([index[c] for c in t.channels], dtype=np.int32)[t.codes] for t in tables])
        bounds = np.concatenate([[0], np.cumsum([t.codes.shape[0] for t in tables])])
        starts = np.concatenate([t.offsets[:-1] + b for t, b in zip(tables, bounds, strict=False)])
        ends = np.concatenate([t.offsets[1:] + b for t, b in zip(tables, bounds, strict=False)])
        cat = [np.concatenate([getattr(t, f) for t in tables]) for f in ("conversions", "nulls", "value_micros")]
        timed = {t.gaps is not None for t in tables}
        if len(timed) > 1:
            raise ConfigError("concat: some path tables are timed (DATA_DRIVEN's) and others are not")
        times = np.concatenate([t.gap_times() for t in tables]) if timed == {True} else None
        return build_path_table(starts, ends, codes, channels, *cat, transform="frequency", times=times)[0]

    @classmethod
    def from_frame(
        cls,
        frame: Any,
        *,
        path: str = "path",
        conversions: str = "total_conversions",
        nulls: str = "total_null",
        value: str | None = None,
        sep: str = ">",
        transform: str = "exposure",
        remove_direct_if_not_all: bool = False,
        direct_channels: Sequence[str] = ("direct",),
    ) -> PathTable:
        """A path table from aggregated paths in ChannelAttribution's format (``"a > b > c"`` strings).

        Channel names are stripped of surrounding spaces and blank steps are skipped, in string and list
        paths alike; rows whose path is then empty are refused, as are null or negative counts (an
        :class:`InputError` with counts).

        Parameters
        ----------
        frame
            A pandas, polars or Arrow frame, one row per path (a path may appear on several rows).
        path
            The path column: strings joined by ``sep``, or lists of strings (default ``"path"``).
        conversions, nulls
            The count columns (defaults ``"total_conversions"``, ``"total_null"``): any numeric dtype.
        value
            The column of the paths' conversion value in integer micros (default None: every value 0).
        sep
            The separator of string paths (default ``">"``).
        transform
            The path transform (default ``"exposure"``: :data:`TRANSFORMS`).
        remove_direct_if_not_all
            Drop the direct touches of paths that also have others (default False).
        direct_channels
            The channels counted as direct (default ``("direct",)``).

        Returns
        -------
        PathTable
            One row per input row with a non-empty transformed path (``distinct=False``).

        Raises
        ------
        ColumnNotFoundError
            A missing column (with the frame's closest columns).
        ConfigError
            A path column of another type, an empty ``sep``, a non-numeric count column, a non-integer value
            column, or an unknown ``transform``.
        InputError
            Null, negative or non-finite counts; negative values; null or empty paths.
        SchemaError
            ``frame`` is not a polars, pyarrow or pandas frame.
        """
        df = to_polars(frame, what="paths")
        missing = [c for c in (path, conversions, nulls, value) if c is not None and c not in df.columns]
        if missing:
            raise ColumnNotFoundError.of(missing, df.columns, what="paths frame")
        col = df.get_column(path)
        if not (col.dtype == pl.String or isinstance(col.dtype, pl.List)):
            raise ConfigError(f"paths column {path!r} must hold strings or lists of strings, got {col.dtype}")
        if not sep:
            raise ConfigError("sep must not be empty")
        conv = _counts(df, conversions)
        null = _counts(df, nulls)
        if value is None:
            val = np.zeros(df.height, dtype=np.int64)
        else:
            vcol = df.get_column(value)
            if not vcol.dtype.is_integer():
                raise ConfigError(
                    f"value column {value!r} must hold integer micros, got {vcol.dtype}; "
                    f"convert with (pl.col({value!r}) * 1_000_000).round().cast(pl.Int64)"
                )
            val = vcol.fill_null(0).cast(pl.Int64).to_numpy()
            if (val < 0).any():
                raise InputError(f"value column {value!r} has {(val < 0).sum()} negative values")
        offsets, codes, channels = _split(col, sep)
        problems = {"null path": col.null_count(), "empty path": int((np.diff(offsets) == 0).sum()) - col.null_count()}
        problems = {k_: v for k_, v in problems.items() if v}
        if problems:
            raise InputError(
                "invalid path rows: " + ", ".join(f"{v} {k_}" for k_, v in problems.items()), counts=problems
            )
        return build_path_table(
            offsets[:-1],
            offsets[1:],
            codes,
            channels,
            conv,
            null,
            val,
            distinct=False,
            transform=transform,
            remove_direct_if_not_all=remove_direct_if_not_all,
            direct_channels=direct_channels,
        )[0]


def _split(col: pl.Series, sep: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Paths as CSR codes over sorted channel names (null rows are empty)."""
    if col.dtype == pl.String:
        arr = pa.compute.cast(col.fill_null("").to_arrow(), pa.large_string())  # null rows: empty paths
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        n = len(arr)
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
        data = (
            np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None else np.empty(0, np.uint8)
        )
        capacity, ok = 256, False
        while not ok:
            capacity *= 16
            row_offsets, codes, spans, ok = tokenize.split_paths(
                offsets, data, np.frombuffer(sep.encode(), dtype=np.uint8), capacity
            )
        names = [bytes(data[a:b]).decode() for a, b in spans]
        row_offsets, codes, names = _strip_unicode_spaces(row_offsets, codes, names)
    else:
        # as the string paths: names stripped, blank and null steps skipped
        name = pl.element().str.strip_chars()
        parts = col.cast(pl.List(pl.String)).list.eval(name.filter(name.is_not_null() & (name != "")))
        flat = parts.explode().drop_nulls()
        names = flat.unique(maintain_order=True).to_list()
        codes = flat.cast(pl.Enum(names)).to_physical().cast(pl.Int32).to_numpy()
        row_offsets = np.zeros(col.len() + 1, dtype=np.int64)
        np.cumsum(parts.list.len().fill_null(0).to_numpy(), out=row_offsets[1:])
    order = sorted(range(len(names)), key=names.__getitem__)
    remap = np.empty(max(len(names), 1), dtype=np.int32)
    remap[order] = np.arange(len(names), dtype=np.int32)
    return row_offsets, remap[codes] if codes.size else codes.astype(np.int32), tuple(names[i] for i in order)


def _strip_unicode_spaces(
    offsets: np.ndarray, codes: np.ndarray, names: list[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The tokenizer strips ASCII white space; names with other white space around them (a no-break space
    from a spreadsheet) are stripped here as Polars' ``strip_chars`` does, merged with their twins, and
    tokens left blank are dropped."""
    clean = pl.Series(names, dtype=pl.String).str.strip_chars().to_list()
    if clean == names:
        return offsets, codes, names
    kept = sorted({c for c in clean if c})
    index = {name: i for i, name in enumerate(kept)}
    remap = np.array([index.get(c, -1) for c in clean] or [-1], dtype=np.int32)
    mapped = remap[codes] if codes.size else codes.astype(np.int32)
    keep = mapped >= 0
    rows = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
    per_row = np.bincount(rows[keep], minlength=offsets.size - 1)
    new_offsets = np.zeros_like(offsets)
    np.cumsum(per_row, out=new_offsets[1:])
    return new_offsets, mapped[keep], kept


def _counts(df: pl.DataFrame, name: str) -> np.ndarray:
    col = df.get_column(name)
    if not col.dtype.is_numeric():
        raise ConfigError(f"paths column {name!r} must be numeric, got {col.dtype}")
    bad = {"null": col.null_count(), "negative": int((col < 0).sum()), "not finite": 0}
    if col.dtype.is_float():
        bad["not finite"] = int((~col.is_finite()).sum())
    bad = {k_: v for k_, v in bad.items() if v}
    if bad:
        raise InputError(f"paths column {name!r}: " + ", ".join(f"{v} {k_}" for k_, v in bad.items()), counts=bad)
    return col.cast(pl.Float64).to_numpy()


def build_path_table(
    starts: np.ndarray,
    ends: np.ndarray,
    codes: np.ndarray,
    channels: Sequence[str],
    conversions: np.ndarray,
    nulls: np.ndarray,
    value_micros: np.ndarray,
    *,
    transform: str = "exposure",
    remove_direct_if_not_all: bool = False,
    direct_channels: Sequence[str] = ("direct",),
    distinct: bool = True,
    times: np.ndarray | None = None,
) -> tuple[PathTable, np.ndarray]:
    """Aggregate journeys (ranges of ``codes``) into a path table.

    Returns the table and each journey's path row (-1 for a journey whose transformed path is empty).
    With ``distinct=False`` every journey with a non-empty path keeps its own row (cheaper; fits do not
    need distinct paths).

    Parameters
    ----------
    starts, ends
        Per journey, its range ``codes[starts[j]:ends[j]]`` in time order.
    codes
        Channel codes (indices into ``channels``).
    channels
        Channel names.
    conversions, nulls, value_micros
        Per journey: converting (usually 0 or 1), non-converting, and its conversion value in micros.
    transform
        The path transform (default ``"exposure"``: :data:`TRANSFORMS`).
    remove_direct_if_not_all
        Drop the direct touches of journeys that also have others (default False).
    direct_channels
        The channels counted as direct (default ``("direct",)``).
    distinct
        Merge equal paths into one row (default True).
    times
        The touches' times (int64 microseconds, aligned with ``codes``): timed paths, whose gaps between
        touches (bucketed) are part of each path (default None: untimed).

    Returns
    -------
    table : PathTable
    journey_path : numpy.ndarray
        int64, per journey its row of ``table`` (-1: empty transformed path).

    Raises
    ------
    ConfigError
        An unknown ``transform``.
    ModelError
        With ``distinct``, one path's value sums to 2**63 micros or more.
    """
    if transform not in TRANSFORMS:
        raise ConfigError(f"unknown path transform {transform!r}; valid choices: {', '.join(TRANSFORMS)}")
    channels = tuple(channels)
    is_direct = np.array([c in direct_channels for c in channels], dtype=np.bool_)
    offsets, out, gaps, hashes = k.build_paths(
        starts,
        ends,
        codes,
        channel_hashes(channels),
        is_direct,
        bool(remove_direct_if_not_all),
        TRANSFORMS[transform],
        np.empty(0, np.int64) if times is None else np.asarray(times, np.int64),
    )
    timed = times is not None
    lengths = np.diff(offsets)
    live = np.flatnonzero(lengths > 0)
    if not distinct:
        journey_path = np.full(starts.shape[0], -1, dtype=np.int64)
        journey_path[live] = np.arange(live.shape[0])
        if live.shape[0] < starts.shape[0]:
            offsets = np.concatenate([[0], np.cumsum(lengths[live])])
        table = PathTable(
            channels=channels,
            offsets=offsets,
            codes=out,
            conversions=np.asarray(conversions, np.float64)[live],
            nulls=np.asarray(nulls, np.float64)[live],
            value_micros=np.asarray(value_micros, np.int64)[live],
            hashes=hashes[live],
            distinct=False,
            gaps=gaps if timed else None,
        )
        return table, journey_path
    return _merged_rows(
        channels, starts.shape[0], live, offsets, out, gaps if timed else None, hashes, conversions, nulls, value_micros
    )


def _merged_rows(
    channels: tuple[str, ...],
    n_journeys: int,
    live: np.ndarray,
    offsets: np.ndarray,
    codes: np.ndarray,
    gaps: np.ndarray | None,
    hashes: np.ndarray,
    conversions: np.ndarray,
    nulls: np.ndarray,
    value_micros: np.ndarray,
) -> tuple[PathTable, np.ndarray]:
    """:func:`build_path_table`'s distinct rows: the ``live`` journeys (non-empty paths, CSR ``offsets`` into
    ``codes`` and ``gaps``) grouped by path, their counts and values summed."""
    order = live[np.argsort(hashes[live], kind="stable")]
    no_gaps = np.empty(0, np.int8) if gaps is None else gaps
    group, first, collisions = k.path_groups(order, hashes, offsets, codes, no_gaps)
    if collisions:  # pragma: no cover - needs a 64-bit hash collision between two different paths
        group, first = _exact_groups(order, offsets, codes, no_gaps)
    journey_path = np.full(n_journeys, -1, dtype=np.int64)
    journey_path[order] = group[order]
    n_paths = first.shape[0]
    row_len = np.diff(offsets)[first]
    new_offsets = np.zeros(n_paths + 1, dtype=np.int64)
    np.cumsum(row_len, out=new_offsets[1:])
    idx = np.repeat(offsets[first] - new_offsets[:-1], row_len) + np.arange(new_offsets[-1])
    g = journey_path[live]
    table = PathTable(
        channels=channels,
        offsets=new_offsets,
        codes=codes[idx],
        conversions=np.bincount(g, weights=conversions[live], minlength=n_paths).astype(np.float64),
        nulls=np.bincount(g, weights=nulls[live], minlength=n_paths).astype(np.float64),
        value_micros=_sum_int(g, value_micros[live], n_paths),
        hashes=hashes[first],
        gaps=None if gaps is None else gaps[idx],
    )
    return table, journey_path


def _sum_int(group: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Exact int64 sums per group; a sum beyond int64 is refused rather than wrapped."""
    approx = np.bincount(group, weights=values.astype(np.float64), minlength=n)
    if n and approx.max() >= 2.0**63:
        raise ModelError("the conversion value of one path sums to more than 2**63 - 1 micros; split the data")
    out = np.zeros(n, dtype=np.int64)
    np.add.at(out, group, values.astype(np.int64))
    return out


def _exact_groups(
    order: np.ndarray, offsets: np.ndarray, codes: np.ndarray, gaps: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Group journeys by their exact code (and gap) sequence (the fallback after a hash collision)."""
    ids: dict[bytes, int] = {}
    group = np.empty(offsets.shape[0] - 1, dtype=np.int64)
    first: list[int] = []
    for q in order:
        key = codes[offsets[q] : offsets[q + 1]].tobytes() + gaps[offsets[q] : offsets[q + 1]].tobytes()
        if key not in ids:
            ids[key] = len(first)
            first.append(int(q))
        group[q] = ids[key]
    return group, np.array(first, dtype=np.int64)
