"""Reference sessionization and journey building (docs/contract.md §1 events/journeys, §5, as completed by docs/journeys.md).

Written for obviousness, not speed, in plain Python (no numpy, no polars): group the events, sort each
group, walk it once for sessions and once for journeys, and keep a set of the (session_id, source) pairs
already seen in the current journey. Where docs/contract.md and docs/journeys.md differ, docs/journeys.md is
followed.

Times are int microseconds since the Unix epoch (UTC). Output order (callers comparing against the engine
should sort): groups in order of first appearance in the input, journeys in time order within a group,
journey_events in journey then sequence order.
"""

from __future__ import annotations

from typing import Any

MICROS_PER_MINUTE = 60 * 1_000_000
MICROS_PER_DAY = 86_400_000_000

PAGE_VIEW = "PAGE_VIEW"
CONVERSION = "CONVERSION"
CUSTOM = "CUSTOM"
EVENT_TYPES = (PAGE_VIEW, CONVERSION, CUSTOM)

CONVERTED = "CONVERTED"
IN_PROGRESS = "IN_PROGRESS"
ABANDONED = "ABANDONED"

#: Group key columns in the order docs/journeys.md fixes for the parts of a stable id.
KEY_ORDER = ("organization_id", "site_id", "anon_id")

#: Columns of a journey row after the group key columns (docs/journeys.md, the table).
JOURNEY_COLUMNS = (
    "journey_id",
    "session_id",
    "status",
    "started_at",
    "converted_at",
    "last_activity_at",
    "conversion_value_micros",
    "conversion_name",
    "first_utm_source",
    "first_utm_medium",
    "first_utm_campaign",
    "last_utm_source",
    "last_utm_medium",
    "last_utm_campaign",
    "touchpoint_count",
    "event_count",
)

JOURNEY_EVENT_COLUMNS = ("journey_id", "event_id", "sequence_number", "occurred_at")

Row = dict[str, Any]

# --------------------------------------------------------------------------------------
# Stable ids
# --------------------------------------------------------------------------------------

MASK64 = 2**64 - 1
FNV_PRIME = 0x100000001B3
FNV_OFFSET_1 = 0xCBF29CE484222325
FNV_OFFSET_2 = 0x84222325CBF29CE4


def fnv1a_64(data: bytes, offset_basis: int) -> int:
    """FNV-1a 64: for every byte, xor it in, then multiply by the prime (modulo 2^64)."""
    h = offset_basis
    for byte in data:
        h = h ^ byte
        h = (h * FNV_PRIME) % 2**64
    return h


def splitmix64_finalizer(z: int) -> int:
    """``z ^= z >> 30; z *= 0xbf58476d1ce4e5b9; z ^= z >> 27; z *= 0x94d049bb133111eb; z ^= z >> 31`` mod 2^64."""
    z = z ^ (z >> 30)
    z = (z * 0xBF58476D1CE4E5B9) % 2**64
    z = z ^ (z >> 27)
    z = (z * 0x94D049BB133111EB) % 2**64
    z = z ^ (z >> 31)
    return z


def stable_id_bytes(parts: list[str | None]) -> bytes:
    """``part_1 + 0x1F + part_2 + 0x1F + ... + part_k`` in UTF-8; a null part is the single byte 0x00."""
    encoded = [b"\x00" if part is None else part.encode("utf-8") for part in parts]
    return b"\x1f".join(encoded)


def stable_id(prefix: str, parts: list[str | None]) -> str:
    """``prefix + "_" + format(h1, "016x") + format(h2, "016x")`` as docs/journeys.md defines it."""
    b = stable_id_bytes(parts)
    h1 = splitmix64_finalizer(fnv1a_64(b, FNV_OFFSET_1))
    h2 = splitmix64_finalizer(fnv1a_64(b, FNV_OFFSET_2))
    return prefix + "_" + format(h1, "016x") + format(h2, "016x")


# --------------------------------------------------------------------------------------
# Validation (docs/journeys.md, "Input: events")
# --------------------------------------------------------------------------------------


def invalid_reason(event: Row) -> str | None:
    """Why an event row is invalid, or None. (Reason strings are the reference's own, not the engine's.)"""
    if event.get("event_id") is None:
        return "null event_id"
    if event.get("anon_id") is None:
        return "null anon_id"
    if event.get("occurred_at") is None:
        return "null occurred_at"
    if event.get("type") not in EVENT_TYPES:
        return "unknown type"
    value = event.get("value_micros")
    if value is not None and value < 0:
        return "negative value_micros"
    return None


def _check_input(events: list[Row]) -> None:
    for event in events:
        reason = invalid_reason(event)
        if reason is not None:
            raise ValueError(f"invalid event {event!r}: {reason}")
    seen: set[str] = set()
    for event in events:
        if event["event_id"] in seen:
            raise ValueError(f"duplicate event_id {event['event_id']!r}")
        seen.add(event["event_id"])


# --------------------------------------------------------------------------------------
# Touches
# --------------------------------------------------------------------------------------


def touch_source(event: Row) -> tuple | None:
    """The touch source of an event, or None when the event is not a touch.

    A click id (first non-null of gclid, fbclid, ttclid) gives ``(name, value)``; otherwise a non-null
    utm_source or utm_medium gives ``("utm", utm_source, utm_medium, utm_campaign)`` (None == None).
    """
    for name in ("gclid", "fbclid", "ttclid"):
        if event.get(name) is not None:
            return (name, event[name])
    if event.get("utm_source") is not None or event.get("utm_medium") is not None:
        return ("utm", event.get("utm_source"), event.get("utm_medium"), event.get("utm_campaign"))
    return None


def has_utm(event: Row) -> bool:
    """The first/last UTM columns come from events with a non-null utm_source or utm_medium."""
    return event.get("utm_source") is not None or event.get("utm_medium") is not None


# --------------------------------------------------------------------------------------
# Journeys
# --------------------------------------------------------------------------------------


def build_journeys_reference(
    events: list[Row],
    *,
    session_timeout_us: int = 30 * MICROS_PER_MINUTE,
    abandon_after_us: int = 30 * MICROS_PER_DAY,
    as_of_us: int | None = None,
    group_by: tuple[str, ...] = ("anon_id",),
) -> tuple[list[Row], list[Row], dict[str, str]]:
    """Sessions and journeys of ``events``: returns ``(journeys, journey_events, session_of_event)``.

    ``group_by`` names the group key columns present (``anon_id`` always); whatever order it is given in,
    key parts are taken in the order organization_id, site_id, anon_id. A missing or None key value is the
    value None (a group of its own).
    """
    _check_input(events)
    key_columns = [c for c in KEY_ORDER if c in group_by]
    if "anon_id" not in key_columns:
        raise ValueError("group_by must contain anon_id")
    unknown = [c for c in group_by if c not in KEY_ORDER]
    if unknown:
        raise ValueError(f"unknown group_by columns {unknown}")

    # as_of defaults to the latest occurred_at of the input.
    if as_of_us is None and events:
        as_of_us = max(e["occurred_at"] for e in events)

    # Group the events by their key (None is a value of its own).
    groups: dict[tuple, list[Row]] = {}
    for event in events:
        key = tuple(event.get(c) for c in key_columns)
        if key not in groups:
            groups[key] = []
        groups[key].append(event)

    journeys: list[Row] = []
    journey_events: list[Row] = []
    session_of_event: dict[str, str] = {}

    for key, group_events in groups.items():
        key_parts = list(key)

        # Order within the group: (occurred_at, event_id as UTF-8 bytes).
        ordered = sorted(group_events, key=lambda e: (e["occurred_at"], e["event_id"].encode("utf-8")))

        # ---- Sessions: a new gap session at the first event and after every gap > timeout.
        gap_session_first_event_id = None
        previous_time = None
        for event in ordered:
            if previous_time is None or event["occurred_at"] - previous_time > session_timeout_us:
                gap_session_first_event_id = event["event_id"]
            previous_time = event["occurred_at"]
            if event.get("session_id") is not None:
                session_of_event[event["event_id"]] = event["session_id"]
            else:
                session_of_event[event["event_id"]] = stable_id("se", [*key_parts, gap_session_first_event_id])

        # ---- Journeys: cut after every CONVERSION event; the rest (if any) is a trailing journey.
        runs: list[list[Row]] = []
        current: list[Row] = []
        for event in ordered:
            current.append(event)
            if event["type"] == CONVERSION:
                runs.append(current)
                current = []
        if current:
            runs.append(current)

        for run in runs:
            first_event = run[0]
            last_event = run[-1]
            journey_id = stable_id("jr", [*key_parts, first_event["event_id"]])

            if last_event["type"] == CONVERSION:
                status = CONVERTED
                converted_at = last_event["occurred_at"]
                value = last_event.get("value_micros")
                conversion_value_micros = 0 if value is None else value
                conversion_name = last_event.get("name")
            else:
                assert as_of_us is not None
                inactive_for = as_of_us - last_event["occurred_at"]
                status = IN_PROGRESS if inactive_for <= abandon_after_us else ABANDONED
                converted_at = None
                conversion_value_micros = None
                conversion_name = None

            utm_events = [e for e in run if has_utm(e)]
            first_utm = utm_events[0] if utm_events else {}
            last_utm = utm_events[-1] if utm_events else {}

            seen: set[tuple[str, tuple]] = set()
            touchpoint_count = 0
            for event in run:
                source = touch_source(event)
                if source is None:
                    continue
                pair = (session_of_event[event["event_id"]], source)
                if pair in seen:
                    continue
                seen.add(pair)
                touchpoint_count += 1

            journey: Row = {column: value for column, value in zip(key_columns, key_parts, strict=True)}
            journey["journey_id"] = journey_id
            journey["session_id"] = session_of_event[last_event["event_id"]]
            journey["status"] = status
            journey["started_at"] = first_event["occurred_at"]
            journey["converted_at"] = converted_at
            journey["last_activity_at"] = last_event["occurred_at"]
            journey["conversion_value_micros"] = conversion_value_micros
            journey["conversion_name"] = conversion_name
            for prefix, utm_event in (("first", first_utm), ("last", last_utm)):
                for part in ("source", "medium", "campaign"):
                    journey[f"{prefix}_utm_{part}"] = utm_event.get(f"utm_{part}")
            journey["touchpoint_count"] = touchpoint_count
            journey["event_count"] = len(run)
            journeys.append(journey)

            for sequence_number, event in enumerate(run, start=1):
                journey_events.append(
                    {
                        "journey_id": journey_id,
                        "event_id": event["event_id"],
                        "sequence_number": sequence_number,
                        "occurred_at": event["occurred_at"],
                    }
                )

    return journeys, journey_events, session_of_event
