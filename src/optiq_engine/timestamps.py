"""Input timestamps as UTC microseconds (docs/contract.md §1.2).

Strings are read row by row as ISO 8601, in any of its usual spellings (a column may mix them); anything
else only with an explicit ``timestamp_format``. The engine never guesses between day-first and
month-first. Naive times (no offset) are local times of ``timezone``, or UTC with a
:class:`~optiq_engine.errors.NaiveTimestampWarning` when no zone is given.
"""

from __future__ import annotations

import warnings
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from .errors import ConfigError, NaiveTimestampWarning, SchemaError

__all__ = ["ParsedTimes", "to_utc", "check_timezone", "check_timestamp_format", "ISO_FORMATS", "micros"]

UTC_US = pl.Datetime("us", "UTC")
_NAIVE_US = pl.Datetime("us")

#: ISO 8601 spellings read by polars, tried in this order on the rows still unread (with an offset:
#: ``Z``, ``+02:00``, ``+0200``, ``+02``; ``%.f``: an optional fraction of a second). Rarer spellings
#: (basic ``20240105T090000Z``, week and ordinal dates) go through :meth:`datetime.fromisoformat`.
ISO_FORMATS: tuple[tuple[str, bool], ...] = (
    ("%Y-%m-%dT%H:%M:%S%.f%#z", True),
    ("%Y-%m-%dT%H:%M:%S%.f", False),
    ("%Y-%m-%d %H:%M:%S%.f%#z", True),
    ("%Y-%m-%d %H:%M:%S%.f", False),
    ("%Y-%m-%d", False),
    ("%Y-%m-%dT%H:%M%#z", True),
    ("%Y-%m-%dT%H:%M", False),
    ("%Y-%m-%d %H:%M%#z", True),
    ("%Y-%m-%d %H:%M", False),
    ("%Y-%m-%d %H:%M:%S%.f %#z", True),
)
#: Above this many distinct unread strings, the slow ISO fallback is skipped (they are invalid anyway:
#: a whole column in another format, which needs ``timestamp_format``).
_FALLBACK_LIMIT = 100_000


@dataclass(frozen=True)
class ParsedTimes:
    """A column read as UTC microseconds.

    Made by :func:`to_utc`.

    Parameters
    ----------
    utc, unreadable, local_gap, naive
        The fields described under Attributes (the three series have one row per input row).

    Attributes
    ----------
    utc
        ``Datetime("us", "UTC")``; null where the input is null or could not be read.
    unreadable
        True where the input is not null but is not a timestamp (not ISO 8601 / not ``timestamp_format``).
    local_gap
        True where a naive local time does not exist or is ambiguous in ``timezone`` (a DST change).
    naive
        Number of rows read without a time zone.
    """

    utc: pl.Series
    unreadable: pl.Series
    local_gap: pl.Series
    naive: int


def check_timezone(timezone: str | None) -> None:
    """Raise :class:`ConfigError` unless ``timezone`` is None or an IANA time zone name.

    Parameters
    ----------
    timezone
        An IANA name (``"Europe/Paris"``, ``"UTC"``) known to :mod:`zoneinfo`, or None.

    Raises
    ------
    ConfigError
        ``timezone`` is not a string, or not a zone :mod:`zoneinfo` knows.
    """
    if timezone is None:
        return
    if not isinstance(timezone, str):
        raise ConfigError(f"timezone must be an IANA time zone name such as 'Europe/Paris', got {timezone!r}")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown timezone {timezone!r}: use an IANA name such as 'UTC', 'Europe/Paris', 'America/New_York'"
        ) from None


def check_timestamp_format(timestamp_format: Any) -> None:
    """Validate a ``timestamp_format``: a ``strftime`` format with a ``%`` directive and no ``%Z``.

    Parameters
    ----------
    timestamp_format
        The format, or None (nothing to check).

    Raises
    ------
    ConfigError
        Not a string with a ``%`` directive, or a ``%Z``: polars reads a zone name (``EST``) and drops it,
        which would read ``09:00 EST`` as 09:00 UTC.
    """
    if timestamp_format is None:
        return
    if not isinstance(timestamp_format, str) or "%" not in timestamp_format:
        raise ConfigError(
            f"timestamp_format must be a strftime format such as '%m/%d/%Y %H:%M', got {timestamp_format!r}"
        )
    if "%Z" in timestamp_format:
        raise ConfigError(
            f"timestamp_format {timestamp_format!r} has %Z (a zone name such as EST), which is not read: "
            "use %z for offsets (-0500), or strip the name from the times and pass timezone= "
            "(e.g. timezone='America/New_York')"
        )


def micros(td: Any) -> int:
    """A ``timedelta`` in whole microseconds.

    Parameters
    ----------
    td
        A :class:`datetime.timedelta` (anything with ``days``, ``seconds`` and ``microseconds``).

    Returns
    -------
    int
        ``td`` in microseconds, exactly (no float on the way); negative for a negative duration.
    """
    return td.days * 86_400_000_000 + td.seconds * 1_000_000 + td.microseconds


def to_utc(
    column: pl.Series, *, what: str, timezone: str | None = None, timestamp_format: str | None = None
) -> ParsedTimes:
    """Read ``column`` (datetime, date or string) as UTC microseconds (docs/contract.md §1.2).

    Parameters
    ----------
    column
        The input column.
    what
        The frame's name, for messages (``"touchpoints"``).
    timezone
        IANA zone of naive times; ``None``: UTC, with a :class:`NaiveTimestampWarning`.
    timestamp_format
        A ``strftime`` format applied to every string (instead of ISO 8601).

    Returns
    -------
    ParsedTimes

    Raises
    ------
    SchemaError
        The column is not a datetime, date or string column (epoch numbers are ambiguous).
    ConfigError
        ``timezone`` is not an IANA zone name (:func:`check_timezone`), or ``timestamp_format`` is given for
        a string column but is not a string holding a ``%`` directive.
    """
    check_timezone(timezone)
    dtype = column.dtype
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            utc = column.dt.convert_time_zone("UTC").cast(UTC_US)
            return ParsedTimes(utc, _false(column), _false(column), 0)
        return _localize(column.cast(_NAIVE_US), None, column, what=what, timezone=timezone)
    if dtype == pl.Date:
        return _localize(column.cast(_NAIVE_US), None, column, what=what, timezone=timezone)
    if dtype == pl.String:
        aware, naive = _parse_strings(column, timestamp_format)
        return _localize(naive, aware, column, what=what, timezone=timezone)
    raise SchemaError(
        f"{what} column {column.name!r} must be a timestamp (datetime, date or ISO 8601 string), got {dtype}; "
        "epoch numbers are ambiguous (seconds? milliseconds?): convert them first, e.g. "
        f"pl.from_epoch({column.name!r}, time_unit='ms')"
    )


def _false(column: pl.Series) -> pl.Series:
    return pl.repeat(False, column.len(), eager=True)


def _nulls(column: pl.Series, dtype: pl.DataType) -> pl.Series:
    return pl.repeat(None, column.len(), dtype=dtype, eager=True).rename(column.name)


def _localize(
    naive: pl.Series, aware: pl.Series | None, original: pl.Series, *, what: str, timezone: str | None
) -> ParsedTimes:
    """Combine naive times (local to ``timezone``, else UTC with a warning) with times already in UTC."""
    n_naive = naive.len() - naive.null_count()
    zone = timezone or "UTC"
    local = naive.dt.replace_time_zone(zone, ambiguous="null", non_existent="null").dt.convert_time_zone("UTC")
    local = local.cast(UTC_US)
    gap = naive.is_not_null() & local.is_null()
    utc = local if aware is None else aware.fill_null(local)
    unreadable = original.is_not_null() & utc.is_null() & ~gap
    if n_naive and timezone is None:
        warnings.warn(
            f"{what}: {n_naive:,} {original.name} value(s) have no time zone and were taken as UTC; "
            "pass timezone='UTC' to confirm, or the zone they are in (e.g. timezone='America/New_York')",
            NaiveTimestampWarning,
            stacklevel=5,
        )
    return ParsedTimes(utc.rename(original.name), unreadable, gap, n_naive)


def _parse_strings(column: pl.Series, timestamp_format: str | None) -> tuple[pl.Series, pl.Series]:
    """Aware (UTC) and naive parses of a string column: each null where the row is not of that kind."""
    if timestamp_format is not None:
        check_timestamp_format(timestamp_format)
        # %s: seconds since the epoch, UTC by definition (a timezone= does not apply to them)
        aware = any(z in timestamp_format for z in ("%z", "%#z", "%:z", "%s"))
        parsed = column.str.strptime(UTC_US if aware else _NAIVE_US, timestamp_format, strict=False)
        return (parsed, _nulls(column, _NAIVE_US)) if aware else (_nulls(column, UTC_US), parsed)
    aware_out, naive_out = _nulls(column, UTC_US), _nulls(column, _NAIVE_US)
    todo = column.is_not_null()
    for fmt, is_aware in ISO_FORMATS:
        if not todo.any():
            break
        idx = todo.arg_true()
        rest = column if idx.len() == column.len() else column.gather(idx)
        parsed = rest.str.strptime(UTC_US if is_aware else _NAIVE_US, fmt, strict=False)
        if idx.len() == column.len() and parsed.null_count() == 0:  # the usual case: one spelling
            return (parsed, naive_out) if is_aware else (aware_out, parsed)
        hit = parsed.is_not_null()
        if not hit.any():
            continue
        rows, values = idx.filter(hit), parsed.filter(hit)
        if is_aware:
            aware_out = aware_out.scatter(rows, values)
        else:
            naive_out = naive_out.scatter(rows, values)
        todo = todo.scatter(rows, False)
    if todo.any():
        aware_out, naive_out = _iso_fallback(column, todo, aware_out, naive_out)
    return aware_out, naive_out


def _iso_fallback(
    column: pl.Series, todo: pl.Series, aware_out: pl.Series, naive_out: pl.Series
) -> tuple[pl.Series, pl.Series]:
    """Rows no polars format read: :meth:`datetime.fromisoformat` on each distinct (trimmed) string."""
    idx = todo.arg_true()
    texts = column.gather(idx).str.strip_chars()
    distinct = texts.unique()
    if distinct.len() > _FALLBACK_LIMIT:
        return aware_out, naive_out
    aware_map: dict[str, datetime] = {}
    naive_map: dict[str, datetime] = {}
    for text in distinct.to_list():
        try:
            value = datetime.fromisoformat(text)
        except (ValueError, TypeError):
            continue
        if value.tzinfo is None:
            naive_map[text] = value
        else:
            aware_map[text] = value.astimezone(UTC)
    if aware_map:
        got = texts.replace_strict(aware_map, default=None, return_dtype=UTC_US)
        hit = got.is_not_null()
        aware_out = aware_out.scatter(idx.filter(hit), got.filter(hit))
    if naive_map:
        got = texts.replace_strict(naive_map, default=None, return_dtype=_NAIVE_US)
        hit = got.is_not_null()
        naive_out = naive_out.scatter(idx.filter(hit), got.filter(hit))
    return aware_out, naive_out
