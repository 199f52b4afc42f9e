"""Lift tests and holdouts that calibrate DATA_DRIVEN (docs/data_driven.md §6, "Calibration by experiments")."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
        it are the ones the test measured. ``None``: open on that side. Naive datetimes are taken as UTC.
        Dates (``datetime.date``, or ``"2026-03-31"`` in JSON) are whole UTC days, both included, as a test's
        report reads: ``start=date(2026, 3, 1), end=date(2026, 3, 31)`` is March, ``[Mar 1, Apr 1)``.

    Raises
    ------
    ConfigError
        An empty ``channel``; ``incremental_conversions`` or ``std_error`` not a finite number;
        ``std_error <= 0``; ``start`` / ``end`` neither a datetime, a date nor None; an empty period.

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

    def __post_init__(self) -> None:
        if not isinstance(self.channel, str) or not self.channel:
            raise ConfigError(f"Experiment.channel must be a non-empty string, got {self.channel!r}")
        for name in ("incremental_conversions", "std_error"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"Experiment.{name} must be a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if not self.std_error > 0:
            raise ConfigError(
                f"Experiment.std_error must be > 0, got {self.std_error!r}; a test without error is not "
                "possible, give its standard error (half the 95% interval's width / 1.96)"
            )
        for name in ("start", "end"):
            v = getattr(self, name)
            if isinstance(v, date) and not isinstance(v, datetime):  # a whole day: the end day is included
                v = datetime(v.year, v.month, v.day) + timedelta(days=1 if name == "end" else 0)
            if v is not None and not isinstance(v, datetime):
                raise ConfigError(f"Experiment.{name} must be a datetime or None, got {v!r}")
            if v is not None and v.tzinfo is None:
                v = v.replace(tzinfo=UTC)
            object.__setattr__(self, name, v)
        if self.start is not None and self.end is not None and not self.start < self.end:
            raise ConfigError(f"Experiment period is empty: start {self.start} is not before end {self.end}")

    def bounds_us(self) -> tuple[int, int]:
        """``[start, end)`` as microseconds since the epoch (open sides: the int64 limits)."""
        lo = -(2**63) if self.start is None else _micros(self.start)
        hi = 2**63 - 1 if self.end is None else _micros(self.end)
        return lo, hi


def _micros(t: datetime) -> int:
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def experiments_from_json(value: Any, *, where: str = "experiments") -> tuple[Experiment, ...]:
    """Experiments from a JSON list of objects with keys ``channel``, ``incremental_conversions``
    (or ``incrementalConversions``), ``std_error`` (or ``stdError``), ``start`` and ``end`` (ISO 8601).

    Parameters
    ----------
    value
        The parsed JSON: a list of objects, or None (no experiment). ``start`` / ``end`` of 10 characters
        are dates (whole UTC days); longer ones datetimes (``Z`` accepted); missing or null: open.
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
            v = item[given[0]]
            if name in ("start", "end") and v is not None:
                if not isinstance(v, str):
                    raise ConfigError(f"{at}.{name} must be an ISO 8601 date or datetime string, got {v!r}")
                try:  # "2026-03-31": a date (a whole day); anything longer: a datetime
                    v = date.fromisoformat(v) if len(v) == 10 else datetime.fromisoformat(v.replace("Z", "+00:00"))
                except ValueError as exc:
                    raise ConfigError(f"{at}.{name}: cannot read {v!r} as an ISO 8601 datetime ({exc})") from None
            fields[name] = v
        try:
            out.append(Experiment(**fields))
        except ConfigError as exc:
            raise ConfigError(f"{at}: {exc}") from None
    return tuple(out)
