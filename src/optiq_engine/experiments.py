"""Lift tests and holdouts that calibrate DATA_DRIVEN (docs/data_driven.md §6, "Calibration by experiments")."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .errors import ConfigError

__all__ = ["Experiment", "experiments_from_json"]


@dataclass(frozen=True)
class Experiment:
    """The result of a lift test or holdout of one channel.

    Parameters
    ----------
    channel
        The tested channel (as it appears in the touchpoints' ``channel``).
    incremental_conversions
        Conversions the channel caused over the test's period (test minus control, scaled to the whole
        population that the data covers).
    std_error
        Standard error of ``incremental_conversions`` (> 0).
    start, end
        The period ``[start, end)``: journeys whose conversion (non-converting journeys: last touch) falls in
        it are the ones the test measured. ``None``: open on that side. Naive datetimes are taken as UTC (a run
        that reads the data's naive times in another ``timezone`` warns: give aware datetimes there).
        Dates (``datetime.date``, or ``"2026-03-31"`` in JSON) are whole UTC days, both included, as a test's
        report reads: ``start=date(2026, 3, 1), end=date(2026, 3, 31)`` is March, ``[Mar 1, Apr 1)``.

    Raises
    ------
    ConfigError
        An empty ``channel`` (it is stripped of surrounding spaces, as the data's channels are);
        ``incremental_conversions`` or ``std_error`` not a finite number (Python or numpy); ``std_error`` under
        ``1e-6``; ``start`` / ``end`` neither a datetime, a date nor None (pandas' ``NaT`` included); an empty
        period.

    Examples
    --------
    >>> import optiq_engine as oq
    >>> from datetime import datetime
    >>> test = oq.Experiment("email", 120.0, 15.0, datetime(2026, 3, 1), datetime(2026, 4, 1))
    >>> model = oq.models.DataDriven(experiments=[test])
    """

    channel: str
    incremental_conversions: float
    std_error: float
    start: datetime | None = None
    end: datetime | None = None
    #: Whether a side was given without a time zone (a naive datetime or a date), read as UTC.
    naive: bool = field(default=False, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.channel, str) or not self.channel.strip():
            raise ConfigError(f"Experiment.channel must be a non-empty string, got {self.channel!r}")
        object.__setattr__(self, "channel", self.channel.strip())  # as the data's channels (docs/contract.md §4)
        for name in ("incremental_conversions", "std_error"):
            object.__setattr__(self, name, _finite(name, getattr(self, name)))
        if not self.std_error >= _MIN_STD_ERROR:
            raise ConfigError(
                f"Experiment.std_error must be at least {_MIN_STD_ERROR:g} conversions, got {self.std_error!r}; a "
                "test without error is not possible, give its standard error (half the 95% interval's width / 1.96)"
            )
        given = (self.start, self.end)
        naive = [v is not None and (not isinstance(v, datetime) or v.tzinfo is None) for v in given]
        object.__setattr__(self, "naive", any(naive))
        for name in ("start", "end"):
            object.__setattr__(self, name, _instant(name, getattr(self, name)))
        if self.start is not None and self.end is not None and not self.start < self.end:
            raise ConfigError(f"Experiment period is empty: start {given[0]} is not before end {given[1]}")

    def bounds_us(self) -> tuple[int, int]:
        """``[start, end)`` as microseconds since the epoch (open sides: the int64 limits)."""
        lo = -(2**63) if self.start is None else _micros(self.start)
        hi = 2**63 - 1 if self.end is None else _micros(self.end)
        return lo, hi


#: The smallest ``std_error`` an Experiment takes (conversions): a test's error is never below this, and its
#: inverse square weighs the test in the calibration.
_MIN_STD_ERROR = 1e-6


def _finite(name: str, v: Any) -> float:
    """``v`` as a finite float (Python or numpy numbers, not bools), else :class:`ConfigError`."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ConfigError(f"Experiment.{name} must be a number, got {v!r}")
    try:
        out = float(v)
    except OverflowError:
        out = math.inf
    if not math.isfinite(out):
        shown = repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "..."
        raise ConfigError(f"Experiment.{name} must be a finite number, got {shown}")
    return out


def _instant(name: str, v: Any) -> datetime | None:
    """``start`` / ``end`` as an aware datetime: naive ones in UTC, a date the start of that day (``start``)
    or of the next (``end``: the day is included); None stays None."""
    if v is None:
        return None
    if isinstance(v, datetime) and v != v:  # pandas' NaT (a blank cell) is a datetime unequal to itself
        raise ConfigError(f"Experiment.{name} is NaT (a blank cell?): give a datetime, a date or None (open)")
    if isinstance(v, date) and not isinstance(v, datetime):
        try:
            v = datetime(v.year, v.month, v.day) + timedelta(days=1 if name == "end" else 0)
        except OverflowError:
            raise ConfigError(f"Experiment.{name} {v!r} is past the last representable day: use None (open)") from None
    if not isinstance(v, datetime):
        raise ConfigError(
            f"Experiment.{name} must be a datetime, a date or None, got {v!r}"
            + (" (parse a string first: date.fromisoformat('2026-03-01'))" if isinstance(v, str) else "")
        )
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v


def _micros(t: datetime) -> int:
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def experiments_from_json(value: Any, *, where: str = "experiments") -> tuple[Experiment, ...]:
    """Experiments from a JSON list of objects with keys ``channel``, ``incremental_conversions``
    (or ``incrementalConversions``), ``std_error`` (or ``stdError``), ``start`` and ``end`` (ISO 8601).

    Parameters
    ----------
    value
        The parsed JSON: a list of objects, or None (no experiment). ``start`` / ``end``: ``"2026-03-31"`` a
        date (a whole UTC day), ``"2026-03-31T12:00:00Z"`` a datetime (an offset, or a date with a zone, too);
        other spellings (``"20260331"``, week dates) are refused; missing or null: open.
    where
        The name the messages give the list (default ``"experiments"``; ``attributionSettings`` passes its
        key path).

    Returns
    -------
    tuple of Experiment
        In the list's order (empty for None).

    Raises
    ------
    ConfigError
        Naming the field (``experiments[1].std_error``) and what is wrong with it.
    """
    if value is None:
        return ()
    if not isinstance(value, Iterable) or isinstance(value, (str, bytes, Mapping)):
        raise ConfigError(f"{where} must be a list of objects, got {value!r}")
    out = []
    aliases = {
        "channel": ("channel",),
        "incremental_conversions": ("incremental_conversions", "incrementalConversions"),
        "std_error": ("std_error", "stdError"),
        "start": ("start",),
        "end": ("end",),
    }
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{at} must be an object with keys {', '.join(aliases)}, got {item!r}")
        known = {a for names in aliases.values() for a in names}
        unknown = sorted(set(item) - known)
        if unknown:
            raise ConfigError(f"{at}: unknown key(s) {unknown}; valid keys: {', '.join(aliases)}")
        fields: dict[str, Any] = {}
        for name, names in aliases.items():
            given = [n for n in names if n in item]
            if not given:
                if name in ("start", "end"):
                    fields[name] = None
                    continue
                raise ConfigError(f"{at}.{name} is missing")
            if len(given) > 1:
                raise ConfigError(f"{at}: give one of {' or '.join(given)}, not both")
            v = item[given[0]]
            fields[name] = _json_instant(f"{at}.{name}", v) if name in ("start", "end") else v
        try:
            out.append(Experiment(**fields))
        except ConfigError as exc:
            raise ConfigError(f"{at}: {exc}") from None
    return tuple(out)


_JSON_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_JSON_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}|Z$|[+-]\d{2}:\d{2}$)")  # a time, or a zone


def _json_instant(at: str, v: Any) -> date | datetime | None:
    """A JSON ``start`` / ``end``: ``"2026-03-31"`` a date (a whole day), ``"2026-03-31T12:00:00Z"`` (or with a
    space, seconds, fractions, an offset) a datetime, as is a date with a zone (``"2026-03-31Z"``: its midnight); other ISO 8601 spellings (``"20260331"``, week dates) are
    refused, since Python would read some of them as an instant at midnight and drop the day."""
    if v is None:
        return None
    if not isinstance(v, str):
        raise ConfigError(f"{at} must be an ISO 8601 date or datetime string, got {v!r}")
    try:
        if _JSON_DATE.fullmatch(v):
            return date.fromisoformat(v)
        if _JSON_DATETIME.match(v):
            return datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"{at}: cannot read {v!r} as an ISO 8601 date or datetime ({exc})") from None
    raise ConfigError(
        f"{at}: {v!r} is neither a date 'YYYY-MM-DD' (a whole day) nor a datetime 'YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM]'"
    )
