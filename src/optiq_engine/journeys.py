"""build_journeys(): tracking events -> sessions and journeys (docs/contract.md §5, ``docs/journeys.md``).

Data flow: validate and normalise the events (:func:`optiq_engine.frames.normalize_events`), hash the group
key (two independent hashes, exact codes when they collide: :mod:`optiq_engine.grouping`), sort by
(group, time) with :func:`~optiq_engine.kernels.sort.sort_by_group_time` and order ties by ``event_id``,
then run the kernels of :mod:`optiq_engine.kernels.journeys` over the sorted arrays: gap sessions, journey
bounds, per-journey summaries, touchpoint counts. Stable ids are hashed from the Arrow bytes of the key
columns by :mod:`optiq_engine.kernels.stable_id`. Strings are only hashed and gathered.

On 10M events, random access into large columns is what costs: every string column is read in input
order where possible (hashes, stable-id bytes, the touches' columns), and only small fixed-width values
(hash pairs, row numbers) are read in sorted order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from .config import OnInvalid, check_on_invalid
from .errors import ConfigError
from .frames import TIMESTAMP, normalize_events
from .grouping import (
    KEY_COLUMNS,
    NO_MASK,
    SEED_H,
    SEED_H2,
    arrow_strings,
    group_hashes,
    group_key_columns,
    hash_attempts,
    order_ties_by_id,
)
from .kernels.journeys import (
    CONVERSION,
    OWN_SESSION,
    TOUCH,
    UTM,
    derived_sessions,
    first_touches,
    gap_sessions,
    journey_bounds,
    journey_positions,
    journey_summaries,
    source_keys,
    touch_keys,
)
from .kernels.sort import bucket_bits, sort_by_group_time
from .kernels.stable_id import hex_ids, key_hashes
from .layout import one_chunk, readonly
from .stages import Timed, stage_timer
from .timestamps import micros

__all__ = ["build_journeys", "JourneyResult", "JOURNEY_STATUSES", "stable_id_series"]

log = logging.getLogger(__name__)

#: Journey statuses, in the order of their codes.
JOURNEY_STATUSES = ("CONVERTED", "IN_PROGRESS", "ABANDONED")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_PARTS = len(KEY_COLUMNS) + 2  # organization_id, site_id, anon_id, event_id
_CLICK_IDS = ("gclid", "fbclid", "ttclid")
_UTM = ("utm_source", "utm_medium", "utm_campaign")
#: The input columns build_journeys reads (others are ignored).
_COLUMNS = (
    "event_id",
    "anon_id",
    "occurred_at",
    "type",
    *KEY_COLUMNS,
    "session_id",
    *_UTM,
    *_CLICK_IDS,
    "value_micros",
    "name",
)
#: Test hook: mask applied to the primary group hash and touch-key hash (a small value provokes collisions).
_NO_MASK = NO_MASK
_HASH_MASK = _NO_MASK


@dataclass(frozen=True)
class JourneyResult:
    """What :func:`build_journeys` returns.

    Parameters
    ----------
    journeys, journey_events, sessions, quarantined, timings, as_of
        The fields described under Attributes.

    Attributes
    ----------
    journeys
        One row per journey (columns of ``docs/journeys.md``, in that order); a group's journeys are
        together and in time order.
    journey_events
        ``journey_id``, ``event_id``, ``sequence_number`` (Int32, 1..n), ``occurred_at``: one row per valid
        event, in the order of ``journeys`` and then of ``sequence_number``.
    sessions
        ``event_id``, ``session_id``: every valid event's session (its own ``session_id``, or the derived
        stable id of its gap session), in the row order of ``journey_events``.
    quarantined
        Rows set aside with ``on_invalid="quarantine"``, with a ``reason`` column (empty when none).
    timings
        Seconds per stage.
    as_of
        The time statuses were judged at (the latest event time unless given; ``None`` without events).

    Notes
    -----
    Rows come in the order of the sort: groups by a 64-bit hash of their key (by exact codes after a hash
    collision), then by time. That order does not depend on the input's row order, but polars keeps its
    hash stable only within one version: sort by ``journey_id`` (or by the group key and ``started_at``)
    when an order is to be stored or compared.
    """

    journeys: pl.DataFrame
    journey_events: pl.DataFrame
    sessions: pl.DataFrame
    quarantined: pl.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    as_of: datetime | None = None


def build_journeys(
    events: Any,
    *,
    session_timeout: timedelta = timedelta(minutes=30),
    abandon_after: timedelta = timedelta(days=30),
    as_of: datetime | None = None,
    on_invalid: OnInvalid = "raise",
    timezone: str | None = None,
    timestamp_format: str | None = None,
) -> JourneyResult:
    """Split tracking events into sessions and journeys.

    Parameters
    ----------
    events
        Events frame (polars, pyarrow or pandas): ``event_id``, ``anon_id``, ``occurred_at``, ``type``
        (``PAGE_VIEW`` | ``CONVERSION`` | ``CUSTOM``); optional ``organization_id``, ``site_id``,
        ``session_id``, ``utm_source``, ``utm_medium``, ``utm_campaign``, ``gclid``, ``fbclid``,
        ``ttclid``, ``value_micros``, ``name``.
    session_timeout
        A gap greater than this starts a new gap session (a gap exactly equal does not).
    abandon_after
        A journey without conversion is ``IN_PROGRESS`` while ``as_of - last_activity_at <= abandon_after``,
        else ``ABANDONED``.
    as_of
        When to judge statuses (default: the latest valid ``occurred_at``); a naive datetime is UTC.
    on_invalid
        ``"raise"`` an :class:`~optiq_engine.errors.InputError` on invalid rows, or ``"quarantine"`` them.
    timezone, timestamp_format
        How ``occurred_at`` strings and naive times are read (docs/contract.md §1.2).

    Returns
    -------
    JourneyResult
        ``journeys``, ``journey_events``, ``sessions``, ``quarantined``, ``timings``.

    Raises
    ------
    ConfigError
        A bad option.
    SchemaError, InputError
        Missing or mistyped columns; invalid rows (unless quarantined); duplicate ``event_id``.

    Notes
    -----
    Events are grouped by (``organization_id``, ``site_id``, ``anon_id``) (the key columns present) and
    ordered by (``occurred_at``, ``event_id`` as UTF-8 bytes). Journey and derived session ids are
    ``stable_id("jr" | "se", [*group key, first event_id])``: FNV-1a 64 + splitmix64 of the key's bytes,
    so a recompute reproduces them whatever the library versions. Within a journey a touch counts once
    per (session id, source). See ``docs/journeys.md`` for every rule.

    Examples
    --------
    >>> from datetime import datetime, UTC
    >>> import polars as pl
    >>> import optiq_engine as oq
    >>> events = pl.DataFrame({
    ...     "event_id": ["e1", "e2", "e3"], "anon_id": ["u1", "u1", "u1"],
    ...     "occurred_at": [datetime(2026, 1, 1, h, tzinfo=UTC) for h in (9, 10, 11)],
    ...     "type": ["PAGE_VIEW", "CONVERSION", "PAGE_VIEW"], "utm_source": ["google", None, None],
    ... })
    >>> oq.build_journeys(events).journeys.select("status", "event_count", "touchpoint_count").rows()
    [('CONVERTED', 2, 1), ('IN_PROGRESS', 1, 0)]
    """
    return _build_journeys(
        events,
        session_timeout=session_timeout,
        abandon_after=abandon_after,
        as_of=as_of,
        on_invalid=on_invalid,
        timezone=timezone,
        timestamp_format=timestamp_format,
    )[0]


@dataclass(frozen=True)
class SortedTouchpoints:
    """The touchpoints :func:`build_journeys` counts, for touchpoint extraction (private to the package).

    Attributes
    ----------
    events
        The validated events (input order, invalid rows removed) that ``rows`` index.
    rows
        Row of ``events`` of every touchpoint (the first touch of its (session, source) in its journey), in
        sorted order (group, time, event id).
    session_id, journey_id
        The touchpoints' session and journey ids.
    """

    events: pl.DataFrame
    rows: np.ndarray
    session_id: pl.Series
    journey_id: pl.Series


def _build_journeys(
    events: Any,
    *,
    session_timeout: timedelta,
    abandon_after: timedelta,
    as_of: datetime | None,
    on_invalid: OnInvalid,
    with_touchpoints: bool = False,
    keep: Sequence[str] = (),
    timezone: str | None = None,
    timestamp_format: str | None = None,
) -> tuple[JourneyResult, SortedTouchpoints | None]:
    """:func:`build_journeys`, and with ``with_touchpoints`` the touchpoints it counted (``keep``: more input
    columns to carry in :attr:`SortedTouchpoints.events`)."""
    timeout_us = _duration_us("session_timeout", session_timeout)
    abandon_us = _duration_us("abandon_after", abandon_after)
    as_of_us = None if as_of is None else _instant_us(as_of)
    check_on_invalid(on_invalid)
    timings: dict[str, float] = {}
    timed = stage_timer(timings)

    with timed("validate"):
        normalized = normalize_events(
            events, on_invalid=on_invalid, timezone=timezone, timestamp_format=timestamp_format
        )
        ev = normalized.frame.select(c for c in (*_COLUMNS, *keep) if c in normalized.frame.columns)
    parts = [c for c in KEY_COLUMNS if c in ev.columns] + ["anon_id"]
    if ev.height == 0:
        return _empty_result(ev, parts, normalized.quarantined, timings, with_touchpoints=with_touchpoints)

    ev, keys, flags, ts, order, h_s, ts_s, flags_s = _sorted_events(ev, timed)
    event_id = ev.get_column("event_id")

    with timed("sessions"):
        start, _ = gap_sessions(h_s, ts_s, timeout_us)
        derived_first, derived_index = readonly(*derived_sessions(*readonly(start), flags_s))
        del start
    with timed("journeys"):
        offsets = readonly(journey_bounds(h_s, flags_s))[0]
        first_utm, last_utm, touch_offsets = journey_summaries(offsets, flags_s)
        del h_s
    with timed("ids"):
        start_rows = order[offsets[:-1]]
        journey_id, derived_id = stable_id_series(
            ev, parts, [("journey_id", "jr", start_rows), ("session_id", "se", order[derived_first])], varying=keys
        )
    with timed("sessions"):
        session_id = _session_column(ev, order, derived_index, derived_id)  # sorted order
    with timed("touchpoints"):
        touches, touch_rank = _touches(ev, flags)
        touch_count, first_pos = _count_touchpoints(
            touches, touch_rank, order, derived_index, derived_id, session_id, flags_s, readonly(touch_offsets)[0]
        )
        del derived_index, derived_id, flags

    with timed("frames"):
        last = offsets[1:] - 1
        last_rows = order[last]
        converted = (flags_s[last] & CONVERSION) != 0
        if as_of_us is None:
            as_of_us = int(ts.max())
        status = np.where(converted, 0, np.where(as_of_us - ts_s[last] <= abandon_us, 1, 2)).astype(np.uint8)
        utm_rows = [_where(pos >= 0, touch_rank[order[np.maximum(pos, 0)]]) for pos in (first_utm, last_utm)]
        journeys = _journeys_frame(
            ev,
            parts,
            keys,
            journey_id,
            session_id.gather(last),
            start_rows,
            last_rows,
            status,
            converted,
            ts_s[offsets[:-1]],
            ts_s[last],
            touches,
            utm_rows,
            touch_count,
            np.diff(offsets),
        )
        journey_events, sessions, journey = _event_frames(offsets, journey_id, event_id.gather(order), session_id, ts_s)
        found = None
        if with_touchpoints:
            found = SortedTouchpoints(
                ev, order[first_pos], session_id.gather(first_pos), journey_id.gather(journey[first_pos])
            )

    as_of = _EPOCH + timedelta(microseconds=as_of_us)
    return JourneyResult(journeys, journey_events, sessions, normalized.quarantined, timings, as_of), found


def _empty_result(
    ev: pl.DataFrame, parts: list[str], quarantined: pl.DataFrame, timings: dict[str, float], *, with_touchpoints: bool
) -> tuple[JourneyResult, SortedTouchpoints | None]:
    """What :func:`_build_journeys` returns for no (valid) event: empty frames with their columns."""
    result = JourneyResult(
        _empty_journeys(parts), _empty_journey_events(), _empty_sessions(), quarantined, timings, None
    )
    if not with_touchpoints:
        return result, None
    no_ids = _nulls("session_id", pl.String, 0), _nulls("journey_id", pl.String, 0)
    return result, SortedTouchpoints(ev, np.zeros(0, dtype=np.int64), *no_ids)


def _sorted_events(
    ev: pl.DataFrame, timed: Timed
) -> tuple[pl.DataFrame, list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The events encoded and sorted by (group, time, ``event_id``).

    Returns the events (the columns gathered at random rows in one chunk), the key columns that tell groups
    apart, every event's flags and time in input order, and the sort order with the sorted group hashes,
    times and flags (read-only).
    """
    with timed("encode"):
        keys = group_key_columns(ev)
        # One chunk for the columns gathered at random rows: gathers from many chunks are ~5x slower.
        ev = ev.with_columns(one_chunk(ev.get_column(c)) for c in (*keys, "event_id"))
        flags = ev.select(_flags_expr(ev.columns)).to_series().to_numpy()
        ts = ev.get_column("occurred_at").to_physical().to_numpy()
        ((h, h2),) = group_hashes([ev], keys, exact=False, mask=_HASH_MASK)

    bits = bucket_bits(ev.height, rows_per_bucket=4096, max_bits=12)
    for exact in hash_attempts(log):
        if exact:
            with timed("encode"):
                ((h, h2),) = group_hashes([ev], keys, exact=True)
        with timed("sort"):
            h_r, ts_r, h2_r, flags_r = readonly(h, ts, h2, flags)
            order, h_s, ts_s, _, flags_s, _, n_collisions, n_ties = sort_by_group_time(h_r, ts_r, h2_r, flags_r, bits)
        if n_collisions == 0:
            break
    del h, h2
    with timed("sort"):
        if n_ties:
            order, flags_s = order_ties_by_id(order, flags_s, h_s, ts_s, ev.get_column("event_id"))
        order, h_s, ts_s, flags_s = readonly(order, h_s, ts_s, flags_s)
    return ev, keys, flags, ts, order, h_s, ts_s, flags_s


def _event_frames(
    offsets: np.ndarray, journey_id: pl.Series, event_id: pl.Series, session_id: pl.Series, ts_s: np.ndarray
) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray]:
    """``journey_events`` and ``sessions`` of the sorted events (``event_id``, ``session_id``, ``ts_s``: in
    sorted order), and the journey of every sorted event."""
    journey, sequence = journey_positions(offsets)
    journey_events = pl.DataFrame(
        [
            journey_id.gather(journey),
            event_id,
            pl.Series("sequence_number", sequence, dtype=pl.Int32),
            _timestamps("occurred_at", ts_s),
        ]
    )
    sessions = pl.DataFrame([event_id, session_id])
    return journey_events, sessions, journey


def stable_id_series(
    frame: pl.DataFrame,
    parts: Sequence[str],
    requests: Sequence[tuple[str, str, np.ndarray]],
    *,
    varying: Sequence[str] | None = None,
) -> list[pl.Series]:
    """Stable ids ``stable_id(prefix, [*parts at row, event_id at row])`` for rows of ``frame``.

    Parameters
    ----------
    frame
        Normalised events (string key columns and ``event_id``).
    parts
        The group key columns present, in key order (``organization_id``, ``site_id``, ``anon_id``).
    requests
        ``(name, prefix, rows)``: one String series called ``name`` of ids ``prefix + "_" + hex32``, one per
        entry of ``rows`` (row indices of ``frame``).
    varying
        The key columns that are not one constant (:func:`~optiq_engine.grouping.group_key_columns`, computed
        when not given); a constant column is converted to Arrow as a single row.

    Returns
    -------
    list of polars.Series
        One String series per request, in the order of ``requests``.

    Notes
    -----
    Each distinct row is hashed once, in increasing row order (sequential reads of the string buffers,
    several times faster than reading them in the requested order), then written out as hex per request.
    Only the wanted rows of the varying columns are converted to Arrow (``large_string``).
    """
    columns = [*parts, "event_id"]
    distinct = group_key_columns(frame) if varying is None else varying
    constant = [c != "event_id" and c not in distinct for c in columns]  # one value: hashed from one row
    wanted = np.zeros(frame.height, dtype=np.bool_)
    for _, _, r in requests:
        wanted[r] = True
    rows = np.flatnonzero(wanted)
    rank = np.empty(frame.height, dtype=np.int64)
    rank[rows] = np.arange(rows.shape[0])
    # Only the wanted rows, in input order: a sequential filter, then a smaller Arrow conversion.
    taken = frame.select(c for c, k in zip(columns, constant, strict=True) if not k).filter(pl.Series(wanted))
    offsets, data, valid = [], [], []
    where = np.empty((len(columns), rows.shape[0]), dtype=np.int64)
    for i, (c, k) in enumerate(zip(columns, constant, strict=True)):
        o, d, v = arrow_strings(frame.get_column(c).head(1) if k else taken.get_column(c))
        offsets.append(o)
        data.append(d)
        valid.append(v)
        where[i] = 0 if k else np.arange(rows.shape[0])
    # Always 4 columns (unused ones empty): one tuple type, so one compiled kernel for every key shape.
    for _ in range(_MAX_PARTS - len(columns)):
        o, d, v = readonly(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.bool_))
        offsets.append(o)
        data.append(d)
        valid.append(v)
    hashes = readonly(key_hashes(tuple(offsets), tuple(data), tuple(valid), *readonly(where)))[0]
    out = []
    for name, prefix, r in requests:
        prefix_bytes = np.frombuffer((prefix + "_").encode(), dtype=np.uint8)
        raw = hex_ids(*readonly(prefix_bytes, hashes, rank[r]))
        out.append(_fixed_width_strings(name, raw))
    return out


def _fixed_width_strings(name: str, raw: np.ndarray) -> pl.Series:
    """A String series from an ASCII uint8[m, w] matrix (row i is string i)."""
    import pyarrow as pa

    m, w = raw.shape
    offsets = np.arange(0, (m + 1) * w, w, dtype=np.int64)
    arr = pa.Array.from_buffers(pa.large_string(), m, [None, pa.py_buffer(offsets), pa.py_buffer(raw)])
    return pl.Series(name, arr)


def _flags_expr(columns: list[str]) -> pl.Expr:
    """Per-event flags of :mod:`optiq_engine.kernels.journeys` (Int32)."""
    clicks = [pl.col(c).is_not_null() for c in _CLICK_IDS if c in columns]
    utm = [pl.col(c).is_not_null() for c in _UTM[:2] if c in columns]
    has_utm = pl.any_horizontal(utm) if utm else pl.lit(False)
    touch = pl.any_horizontal([*clicks, has_utm])
    own = pl.col("session_id").is_not_null() if "session_id" in columns else pl.lit(False)
    return (
        (pl.col("type") == "CONVERSION").cast(pl.Int32) * CONVERSION
        + has_utm.cast(pl.Int32) * UTM
        + touch.cast(pl.Int32) * TOUCH
        + own.cast(pl.Int32) * OWN_SESSION
    ).alias("flags")


def _session_column(ev: pl.DataFrame, order: np.ndarray, derived_index: np.ndarray, derived_id: pl.Series) -> pl.Series:
    """Every event's session id, in sorted order: its own, else its gap session's derived id."""
    own = ev.get_column("session_id") if "session_id" in ev.columns else None
    if own is None or own.null_count() == own.len():
        return derived_id.gather(derived_index).alias("session_id")
    if own.null_count() == 0:
        return one_chunk(own).gather(order)
    # One gather from one chunk [derived ids, own ids]: cheaper than gathering both and choosing per row.
    index = np.where(derived_index >= 0, derived_index, derived_id.len() + order)
    return pl.concat([derived_id, own], rechunk=True).gather(index).alias("session_id")


def _touches(ev: pl.DataFrame, flags: np.ndarray) -> tuple[pl.DataFrame, np.ndarray]:
    """The touches' click id, UTM and session columns in input order, and each input row's rank among them."""
    is_touch = (flags & TOUCH) != 0
    columns = [c for c in (*_CLICK_IDS, *_UTM, "session_id") if c in ev.columns]
    if not columns:  # no click id or UTM column: no touch
        return pl.DataFrame(), np.cumsum(is_touch) - 1
    touches = ev.select(columns).filter(pl.Series(is_touch))
    touches = pl.DataFrame([one_chunk(c) for c in touches.iter_columns()], schema=touches.schema)
    return touches, np.cumsum(is_touch) - 1


def _count_touchpoints(
    touches: pl.DataFrame,
    touch_rank: np.ndarray,
    order: np.ndarray,
    derived_index: np.ndarray,
    derived_id: pl.Series,
    session_id: pl.Series,
    flags_s: np.ndarray,
    touch_offsets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Touchpoints per journey (touches counted once per (session id, source) within the journey), and the
    sorted positions of the touches counted (the first of their key in their journey).

    Keys are two independent 64-bit hashes of (session id, source); equal primary but different check
    hashes within a journey send the count to exact codes (a dictionary of the touches' keys).
    """
    n_journeys = touch_offsets.shape[0] - 1
    if touches.height == 0:
        return np.zeros(n_journeys, dtype=np.int32), np.zeros(0, dtype=np.int64)
    touch_pos = np.flatnonzero(flags_s & TOUCH)
    touch_hash = np.empty((touches.height, 4), dtype=np.uint64)
    derived_hash = np.empty((derived_id.len(), 2), dtype=np.uint64)
    for i, seed in enumerate((SEED_H, SEED_H2)):
        touch_hash[:, i] = source_keys(*_source_hashes(touches, seed))
        if "session_id" in touches.columns:
            touch_hash[:, 2 + i] = touches.get_column("session_id").hash(seed).to_numpy()
        derived_hash[:, i] = derived_id.hash(seed).to_numpy()
    key, check = touch_keys(*readonly(touch_pos, order, touch_rank, derived_index, touch_hash, derived_hash))
    if _HASH_MASK != _NO_MASK:  # test hook only
        key = key & _HASH_MASK
    first, n_clashes = first_touches(touch_offsets, *readonly(key, check))
    if n_clashes:
        log.warning("64-bit touch key hash collision detected; recounting with exact codes")
        exact = _touch_keys(touches, touch_rank[order[touch_pos]], session_id.gather(touch_pos))
        ((code, _),) = group_hashes([exact], exact.columns, exact=True)
        first, n_clashes = first_touches(touch_offsets, *readonly(code, code))
        if n_clashes:  # pragma: no cover - exact codes cannot clash
            raise AssertionError("touch codes clashed after exact encoding")
    counted = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(first, dtype=np.int64)])
    count = (counted[touch_offsets[1:]] - counted[touch_offsets[:-1]]).astype(np.int32)
    return count, touch_pos[first]


def _source_hashes(
    touches: pl.DataFrame, seed: int
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Arguments of :func:`~optiq_engine.kernels.journeys.source_keys`: click id hashes and presence, UTM
    hashes (an absent column is all null: one constant hash)."""
    n = touches.height
    present = [c for c in (*_CLICK_IDS, *_UTM) if c in touches.columns]
    hashed = touches.select(pl.col(c).hash(seed) for c in present)
    nulls = np.zeros(n, dtype=np.uint64)
    h = {c: hashed.get_column(c).to_numpy() if c in present else nulls for c in (*_CLICK_IDS, *_UTM)}
    absent = np.zeros(n, dtype=np.bool_)
    valid = [touches.get_column(c).is_not_null().to_numpy() if c in present else absent for c in _CLICK_IDS]
    return readonly(*(h[c] for c in _CLICK_IDS)), readonly(*valid), readonly(*(h[c] for c in _UTM))


def _touch_keys(touches: pl.DataFrame, rows: np.ndarray, session_id: pl.Series) -> pl.DataFrame:
    """(session id, source) of the touches at ``rows`` of ``touches``: source kind, then its one or three
    values. The source is the first non-null click id as ``(kind, value)``, else ``("utm", utm_source,
    utm_medium, utm_campaign)``; nulls compare equal."""
    present = [c for c in (*_CLICK_IDS, *_UTM) if c in touches.columns]
    taken = touches.select(present)[rows] if present else pl.DataFrame(height=len(rows))
    col = {c: (pl.col(c) if c in present else pl.lit(None, dtype=pl.String)) for c in (*_CLICK_IDS, *_UTM)}
    kind: pl.Expr = pl.lit("utm")
    for c in reversed(_CLICK_IDS):
        kind = pl.when(col[c].is_not_null()).then(pl.lit(c)).otherwise(kind)
    is_click = kind != "utm"
    return taken.select(
        kind.alias("kind"),
        pl.coalesce(*(col[c] for c in _CLICK_IDS), col["utm_source"]).alias("value"),
        pl.when(is_click).then(None).otherwise(col["utm_medium"]).alias("medium"),
        pl.when(is_click).then(None).otherwise(col["utm_campaign"]).alias("campaign"),
        session_id.alias("session_id"),
    )


def _journeys_frame(
    ev: pl.DataFrame,
    parts: list[str],
    varying: list[str],
    journey_id: pl.Series,
    session_id: pl.Series,
    start_rows: np.ndarray,
    last_rows: np.ndarray,
    status: np.ndarray,
    converted: np.ndarray,
    started: np.ndarray,
    last_activity: np.ndarray,
    touches: pl.DataFrame,
    utm_rows: list[pl.Series],
    touch_count: np.ndarray,
    event_count: np.ndarray,
) -> pl.DataFrame:
    """The journeys frame, columns in the order of ``docs/journeys.md``."""
    m = len(start_rows)
    group = [
        ev.get_column(c).gather(start_rows) if c in varying else ev.get_column(c).new_from_index(0, m) for c in parts
    ]
    code = pl.Series(status)
    label: Any = pl.when(code == 0).then(pl.lit(JOURNEY_STATUSES[0]))  # Then, then ChainedThen
    for i, name in enumerate(JOURNEY_STATUSES[1:], start=1):
        label = label.when(code == i).then(pl.lit(name))
    converted_rows = last_rows[converted]
    columns: list[pl.Series] = [
        journey_id,
        *group,
        session_id,
        pl.select(label.alias("status")).to_series(),
        _timestamps("started_at", started),
        _timestamps("last_activity_at", last_activity),
        _scatter("converted_at", _timestamps("", last_activity[converted]), converted),
        _scatter("conversion_value_micros", ev.get_column("value_micros").gather(converted_rows), converted),
        _scatter("conversion_name", _gather(ev, "name", converted_rows), converted),
    ]
    present = [c for c in _UTM if c in touches.columns]
    # One select: polars runs the gathers of the first and last UTM values in parallel.
    utm = touches.select(
        pl.col(c).gather(rows).alias(f"{which}_{c}")
        for which, rows in zip(("first", "last"), utm_rows, strict=True)
        for c in present
    )
    columns += [
        utm.get_column(f"{which}_{c}") if c in present else _nulls(f"{which}_{c}", pl.String, m)
        for which in ("first", "last")
        for c in _UTM
    ]
    columns += [
        pl.Series("touchpoint_count", touch_count, dtype=pl.Int32),
        pl.Series("event_count", event_count, dtype=pl.Int32),
    ]
    return pl.DataFrame(columns)


def _where(mask: np.ndarray, rows: np.ndarray) -> pl.Series:
    """Row indices where ``mask``, null elsewhere (a gather gives null at a null index)."""
    return pl.select(pl.when(pl.Series(mask)).then(pl.Series(rows))).to_series()


def _gather(frame: pl.DataFrame, column: str, rows: np.ndarray | pl.Series) -> pl.Series:
    """``frame[column][rows]``, all null (String) when the column is absent."""
    if column not in frame.columns:
        return _nulls(column, pl.String, len(rows))
    return frame.get_column(column).gather(rows)


def _scatter(name: str, values: pl.Series, mask: np.ndarray) -> pl.Series:
    """A series of ``len(mask)`` rows: ``values`` in order at the rows where ``mask``, null elsewhere."""
    if mask.all():
        return values.alias(name)
    if not mask.any():
        return _nulls(name, values.dtype, len(mask))
    return values.gather(_where(mask, np.cumsum(mask) - 1)).alias(name)


def _nulls(name: str, dtype: Any, n: int) -> pl.Series:
    return pl.Series(name, [], dtype=dtype).extend_constant(None, n)


def _timestamps(name: str, us: np.ndarray) -> pl.Series:
    return pl.Series(name, us, dtype=pl.Int64).cast(TIMESTAMP)


def _duration_us(name: str, value: Any) -> int:
    if not isinstance(value, timedelta):
        raise ConfigError(f"{name} must be a datetime.timedelta, got {type(value).__name__} {value!r}")
    if value < timedelta(0):
        raise ConfigError(f"{name} must not be negative, got {value}")
    return micros(value)


def _instant_us(value: Any) -> int:
    if not isinstance(value, datetime):
        raise ConfigError(f"as_of must be a datetime.datetime (UTC if naive), got {type(value).__name__} {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return micros(value - _EPOCH)


def _empty_journeys(parts: list[str]) -> pl.DataFrame:
    schema: dict[str, Any] = {"journey_id": pl.String, **dict.fromkeys(parts, pl.String)}
    schema |= {
        "session_id": pl.String,
        "status": pl.String,
        "started_at": TIMESTAMP,
        "last_activity_at": TIMESTAMP,
        "converted_at": TIMESTAMP,
        "conversion_value_micros": pl.Int64,
        "conversion_name": pl.String,
    }
    schema |= {f"{w}_{c}": pl.String for w in ("first", "last") for c in _UTM}
    schema |= {"touchpoint_count": pl.Int32, "event_count": pl.Int32}
    return pl.DataFrame(schema=schema)


def _empty_journey_events() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"journey_id": pl.String, "event_id": pl.String, "sequence_number": pl.Int32, "occurred_at": TIMESTAMP}
    )


def _empty_sessions() -> pl.DataFrame:
    return pl.DataFrame(schema={"event_id": pl.String, "session_id": pl.String})
