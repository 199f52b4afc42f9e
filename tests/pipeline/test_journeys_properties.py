"""Property tests: ``optiq_engine.journeys.build_journeys`` equals the pure-Python reference, and invariants hold.

The reference is ``tests/reference/journeys.py`` (docs/journeys.md written out literally). Inputs are small
random event lists: few users, an optional organization / site key with None among its values, times on a
coarse grid (so ties and gaps of exactly the session timeout happen), frequent conversions, some own
session ids, UTM / click values from tiny sets, values up to 2**63 - 1 and odd (non-ASCII) event ids.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optiq_engine import journeys as engine_journeys  # ImportError until the engine's module exists
from optiq_engine.errors import InputError
from tests.reference.journeys import JOURNEY_COLUMNS, KEY_ORDER, build_journeys_reference

build_journeys = engine_journeys.build_journeys
JourneyResult = engine_journeys.JourneyResult

TIMESTAMP = pl.Datetime("us", "UTC")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = 1_700_000_000_000_000
I63 = 2**63 - 1
MIN = 60 * 1_000_000
DAY = 86_400_000_000
DEFAULT_TIMEOUT = 30 * MIN
DEFAULT_ABANDON = 30 * DAY
ID_ALPHABET = "abAB09_-é€\uff61😀"

STRING_COLUMNS = (
    "event_id",
    "anon_id",
    "type",
    "session_id",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "gclid",
    "fbclid",
    "ttclid",
    "name",
)
OPTIONAL_COLUMNS = (
    "session_id",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "gclid",
    "fbclid",
    "ttclid",
    "value_micros",
    "name",
)
TIME_COLUMNS = ("started_at", "converted_at", "last_activity_at")


# --------------------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------------------


@dataclass
class JourneyCase:
    events: list[dict]
    group_by: tuple[str, ...]
    columns: tuple[str, ...]  # optional, non-key columns present in the frame
    session_timeout_us: int | None = None  # None: use the engine's default (30 min)
    abandon_after_us: int | None = None  # None: the default (30 days)
    as_of_us: int | None = None  # None: the default (latest event)
    invalid: list[dict] = field(default_factory=list)

    def reference_kwargs(self) -> dict:
        return {
            "session_timeout_us": DEFAULT_TIMEOUT if self.session_timeout_us is None else self.session_timeout_us,
            "abandon_after_us": DEFAULT_ABANDON if self.abandon_after_us is None else self.abandon_after_us,
            "as_of_us": self.as_of_us,
            "group_by": self.group_by,
        }

    def engine_kwargs(self) -> dict:
        kwargs: dict = {}
        if self.session_timeout_us is not None:
            kwargs["session_timeout"] = timedelta(microseconds=self.session_timeout_us)
        if self.abandon_after_us is not None:
            kwargs["abandon_after"] = timedelta(microseconds=self.abandon_after_us)
        if self.as_of_us is not None:
            kwargs["as_of"] = to_datetime(self.as_of_us)
        return kwargs

    def frame(self, rows: list[dict] | None = None) -> pl.DataFrame:
        return events_frame(self.events if rows is None else rows, self.group_by, self.columns)


def to_datetime(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def events_frame(events: list[dict], group_by: tuple[str, ...], columns: tuple[str, ...]) -> pl.DataFrame:
    """The events as a polars frame: key columns present, required columns, then the optional ``columns``."""
    names = [c for c in KEY_ORDER if c in group_by and c != "anon_id"]
    names += ["event_id", "anon_id", "occurred_at", "type", *columns]
    schema = {c: (pl.Int64 if c in ("occurred_at", "value_micros") else pl.String) for c in names}
    rows = [[e.get(c) for c in names] for e in events]
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    return frame.with_columns(pl.col("occurred_at").cast(TIMESTAMP))


values = st.one_of(
    st.none(),
    st.integers(0, 1_000),
    st.sampled_from([0, 1, 2**53 + 1, I63 - 1, I63]),
    st.integers(0, I63),
)


def small(*options: str | None) -> st.SearchStrategy[str | None]:
    return st.sampled_from(options)


@st.composite
def journey_cases(draw, max_events: int = 30, slots: int = 40, alphabet: str = ID_ALPHABET) -> JourneyCase:
    unit = draw(st.sampled_from([1, 10 * MIN, 15 * MIN, 30 * MIN, DAY]))
    n_users = draw(st.integers(1, 4))
    users = [f"u{i}" for i in range(n_users)] + (["ü"] if draw(st.booleans()) else [])
    with_org = draw(st.booleans())
    with_site = draw(st.booleans())
    group_by = tuple(
        c for c, present in (("organization_id", with_org), ("site_id", with_site), ("anon_id", True)) if present
    )
    n = draw(st.integers(0, max_events))
    ids = draw(st.lists(st.text(alphabet, min_size=1, max_size=4), min_size=n, max_size=n, unique=True))
    time = st.integers(0, slots).map(lambda k: T0 + k * unit)
    event_type = small("PAGE_VIEW", "CONVERSION", "CONVERSION", "CUSTOM")
    session = st.one_of(st.none(), st.none(), small("s1", "s2", "é"))
    click = small(None, None, None, "g1", "g2")

    events = []
    for event_id in ids:
        e = {
            "event_id": event_id,
            "anon_id": draw(st.sampled_from(users)),
            "occurred_at": draw(time),
            "type": draw(event_type),
            "session_id": draw(session),
            "utm_source": draw(small(None, None, "google", "fb", "")),
            "utm_medium": draw(small(None, None, "cpc", "email")),
            "utm_campaign": draw(small(None, "c1", "c2")),
            "gclid": draw(click),
            "fbclid": draw(click),
            "ttclid": draw(click),
            "value_micros": draw(values),
            "name": draw(small(None, "purchase", "signup")),
        }
        if with_org:
            e["organization_id"] = draw(small(None, "o1", "o2"))
        if with_site:
            e["site_id"] = draw(small(None, "s1"))
        events.append(e)

    # Sometimes drop optional columns that are all null (the engine must accept frames without them).
    columns = OPTIONAL_COLUMNS
    if draw(st.booleans()):
        columns = tuple(c for c in OPTIONAL_COLUMNS if any(e[c] is not None for e in events) or draw(st.booleans()))
    for e in events:
        for c in OPTIONAL_COLUMNS:
            if c not in columns:
                del e[c]

    timeout = draw(st.sampled_from([None, unit, 2 * unit, 3 * unit, DEFAULT_TIMEOUT]))
    abandon = draw(st.sampled_from([None, unit, 5 * unit, 20 * unit, DEFAULT_ABANDON]))
    # as_of: the default, a grid point, or exactly / one µs past the abandon limit of a group's last event.
    as_of_kind = draw(st.sampled_from(["default", "grid", "edge", "edge+1"]))
    as_of = None
    if as_of_kind == "grid" or (as_of_kind != "default" and not events):
        as_of = T0 + draw(st.integers(-5, 60)) * unit
    elif as_of_kind != "default":
        limit = DEFAULT_ABANDON if abandon is None else abandon
        last_of_group: dict[tuple, int] = {}
        for e in events:
            key = tuple(e.get(c) for c in group_by)
            last_of_group[key] = max(last_of_group.get(key, e["occurred_at"]), e["occurred_at"])
        last = draw(st.sampled_from(sorted(last_of_group.values())))
        as_of = last + limit + (1 if as_of_kind == "edge+1" else 0)
    return JourneyCase(events, group_by, columns, timeout, abandon, as_of)


# --------------------------------------------------------------------------------------------------------
# Canonical forms
# --------------------------------------------------------------------------------------------------------


def key_columns(case: JourneyCase) -> list[str]:
    return [c for c in KEY_ORDER if c in case.group_by]


def canonical_engine(result: JourneyResult, case: JourneyCase) -> tuple[dict, set, dict]:
    """(journeys by id, journey_events as a set of tuples, session of every event), checking the dtypes."""
    journey_columns = [*key_columns(case), *JOURNEY_COLUMNS]
    journeys = result.journeys
    assert set(journeys.columns) == set(journey_columns), journeys.columns
    for c in TIME_COLUMNS:
        assert journeys.schema[c] == TIMESTAMP, (c, journeys.schema[c])
    assert journeys.schema["conversion_value_micros"] == pl.Int64
    assert journeys.schema["touchpoint_count"] in (pl.Int32, pl.Int64)
    assert journeys.schema["event_count"] in (pl.Int32, pl.Int64)
    rows = journeys.select(journey_columns).with_columns(pl.col(c).cast(pl.Int64) for c in TIME_COLUMNS).rows()
    by_id = {row[len(key_columns(case))]: row for row in rows}
    assert len(by_id) == len(rows), "duplicate journey_id"

    je = result.journey_events
    assert set(je.columns) == {"journey_id", "event_id", "sequence_number", "occurred_at"}, je.columns
    assert je.schema["sequence_number"] == pl.Int32
    assert je.schema["occurred_at"] == TIMESTAMP
    je_rows = je.select("journey_id", "event_id", "sequence_number", pl.col("occurred_at").cast(pl.Int64)).rows()
    assert len(set(je_rows)) == len(je_rows)

    sessions = result.sessions
    assert {"event_id", "session_id"} <= set(sessions.columns), sessions.columns
    session_of = dict(sessions.select("event_id", "session_id").iter_rows())
    assert len(session_of) == sessions.height, "an event with two sessions"
    return by_id, set(je_rows), session_of


def canonical_reference(case: JourneyCase, events: list[dict] | None = None) -> tuple[dict, set, dict]:
    journeys, journey_events, session_of = build_journeys_reference(
        case.events if events is None else events, **case.reference_kwargs()
    )
    journey_columns = [*key_columns(case), *JOURNEY_COLUMNS]
    by_id = {j["journey_id"]: tuple(j[c] for c in journey_columns) for j in journeys}
    je = {(r["journey_id"], r["event_id"], r["sequence_number"], r["occurred_at"]) for r in journey_events}
    return by_id, je, session_of


def run_engine(case: JourneyCase, frame=None, **kwargs) -> JourneyResult:
    return build_journeys(case.frame() if frame is None else frame, **case.engine_kwargs(), **kwargs)


def assert_same(ours: tuple[dict, set, dict], ref: tuple[dict, set, dict]) -> None:
    our_journeys, our_je, our_sessions = ours
    ref_journeys, ref_je, ref_sessions = ref
    assert our_sessions == ref_sessions
    assert our_journeys.keys() == ref_journeys.keys()
    for jid, row in our_journeys.items():
        assert row == ref_journeys[jid], jid
    assert our_je == ref_je


# --------------------------------------------------------------------------------------------------------
# Engine == reference
# --------------------------------------------------------------------------------------------------------


@given(journey_cases())
@settings(deadline=None)
def test_engine_matches_reference(case: JourneyCase) -> None:
    assert_same(canonical_engine(run_engine(case), case), canonical_reference(case))


@given(journey_cases(slots=3, alphabet="aB\u00e9\ue000\uff61\U0001f600"))
@settings(deadline=None)
def test_engine_matches_reference_with_dense_ties(case: JourneyCase) -> None:
    """Few time slots: many ties, ordered by UTF-8 bytes (U+E000 and U+FF61 sort before U+1F600 there, after it in
    UTF-16)."""
    assert_same(canonical_engine(run_engine(case), case), canonical_reference(case))


@given(journey_cases(max_events=8), st.integers(1, 6))
@settings(deadline=None)
def test_engine_matches_reference_on_repeated_bursts(case: JourneyCase, copies: int) -> None:
    """Many events per user: each event repeated at nearby times under fresh ids (long runs, many ties)."""
    events = []
    for k in range(copies):
        for e in case.events:
            events.append({**e, "event_id": f"{e['event_id']}#{k}", "occurred_at": e["occurred_at"] + k})
    case = JourneyCase(
        events, case.group_by, case.columns, case.session_timeout_us, case.abandon_after_us, case.as_of_us
    )
    assert_same(canonical_engine(run_engine(case), case), canonical_reference(case))


# --------------------------------------------------------------------------------------------------------
# Invariants of the engine's own output
# --------------------------------------------------------------------------------------------------------


@given(journey_cases())
@settings(deadline=None)
def test_engine_invariants(case: JourneyCase) -> None:
    result = run_engine(case)
    journeys, journey_events, sessions = canonical_engine(result, case)
    events = {e["event_id"]: e for e in case.events}
    keys = key_columns(case)
    column = {c: i for i, c in enumerate([*keys, *JOURNEY_COLUMNS])}

    # Every event in exactly one journey (and in the sessions frame exactly once), with its own time.
    assert Counter(r[1] for r in journey_events) == Counter(events.keys())
    assert sessions.keys() == events.keys()
    assert all(events[eid]["occurred_at"] == t for _, eid, _, t in journey_events)

    members: dict[str, list[tuple[int, str, int]]] = {}
    for jid, eid, seq, t in journey_events:
        members.setdefault(jid, []).append((seq, eid, t))
    assert members.keys() == journeys.keys()

    trailing_per_group: Counter = Counter()
    for jid, row in journeys.items():
        rows = sorted(members[jid])
        # Sequence numbers are 1..n, in (occurred_at, event_id bytes) order.
        assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1))
        order = [(t, eid.encode("utf-8")) for _, eid, t in rows]
        assert order == sorted(order)
        assert row[column["event_count"]] == len(rows)
        assert 0 <= row[column["touchpoint_count"]] <= len(rows)
        assert row[column["started_at"]] == rows[0][2] and row[column["last_activity_at"]] == rows[-1][2]
        # All events of a journey share its group.
        for _, eid, _ in rows:
            assert tuple(events[eid].get(c) for c in keys) == row[: len(keys)]
        assert row[column["session_id"]] == sessions[rows[-1][1]]

        conversions = [seq for seq, eid, _ in rows if events[eid]["type"] == "CONVERSION"]
        status = row[column["status"]]
        if status == "CONVERTED":
            # Exactly one conversion, and the journey ends with it.
            assert conversions == [len(rows)]
            assert row[column["converted_at"]] == row[column["last_activity_at"]]
            last = events[rows[-1][1]]
            expected_value = last.get("value_micros")
            assert row[column["conversion_value_micros"]] == (0 if expected_value is None else expected_value)
        else:
            assert status in ("IN_PROGRESS", "ABANDONED")
            assert conversions == []
            assert row[column["converted_at"]] is None and row[column["conversion_value_micros"]] is None
            trailing_per_group[row[: len(keys)]] += 1
    # At most one non-converted (trailing) journey per group.
    assert all(count == 1 for count in trailing_per_group.values())


@given(journey_cases(), st.randoms(use_true_random=False))
@settings(deadline=None)
def test_independent_of_row_order(case: JourneyCase, rnd: random.Random) -> None:
    shuffled = list(case.events)
    rnd.shuffle(shuffled)
    first = canonical_engine(run_engine(case), case)
    second = canonical_engine(run_engine(case, frame=case.frame(shuffled)), case)
    assert_same(first, second)


@given(journey_cases(max_events=12))
@settings(deadline=None, max_examples=40)
def test_pyarrow_and_pandas_inputs_give_the_same_result(case: JourneyCase) -> None:
    frame = case.frame()
    expected = canonical_engine(run_engine(case, frame=frame), case)
    assert_same(canonical_engine(run_engine(case, frame=frame.to_arrow()), case), expected)
    pandas_frame = frame.to_pandas(use_pyarrow_extension_array=True)
    assert_same(canonical_engine(run_engine(case, frame=pandas_frame), case), expected)


# --------------------------------------------------------------------------------------------------------
# Invalid rows
# --------------------------------------------------------------------------------------------------------

INVALID_KINDS = {
    "null event_id": {"event_id": None},
    "null anon_id": {"anon_id": None},
    "null occurred_at": {"occurred_at": None},
    "unknown type": {"type": "page_view"},
    "negative value": {"value_micros": -1},
}


@st.composite
def cases_with_invalid_rows(draw) -> JourneyCase:
    case = draw(journey_cases(max_events=15))
    if "value_micros" not in case.columns:
        case.columns = (*case.columns, "value_micros")
        for e in case.events:
            e["value_micros"] = None
    kinds = draw(st.lists(st.sampled_from(sorted(INVALID_KINDS)), min_size=1, max_size=5))
    for i, kind in enumerate(kinds):
        base = {
            "event_id": f"bad{i}",  # never an id of a valid event (their alphabet has no 'd')
            "anon_id": "u0",
            "occurred_at": T0,
            "type": "CONVERSION",
            **{c: None for c in case.columns},
        }
        if "organization_id" in case.group_by:
            base["organization_id"] = None
        if "site_id" in case.group_by:
            base["site_id"] = None
        case.invalid.append({**base, **INVALID_KINDS[kind]})
    # With invalid rows the default as_of is ambiguous (latest of which rows?): always give it.
    if case.as_of_us is None:
        case.as_of_us = T0 + draw(st.integers(0, 60)) * DAY
    return case


@given(cases_with_invalid_rows(), st.randoms(use_true_random=False))
@settings(deadline=None, max_examples=60)
def test_invalid_rows_raise_or_are_quarantined(case: JourneyCase, rnd: random.Random) -> None:
    rows = case.events + case.invalid
    rnd.shuffle(rows)
    frame = case.frame(rows)

    with pytest.raises(InputError) as info:
        run_engine(case, frame=frame)
    assert sum(info.value.counts.values()) == len(case.invalid), info.value.counts

    result = run_engine(case, frame=frame, on_invalid="quarantine")
    quarantined = result.quarantined
    assert "reason" in quarantined.columns
    assert quarantined.height == len(case.invalid)
    assert Counter(quarantined["event_id"].to_list()) == Counter(e["event_id"] for e in case.invalid)
    assert quarantined["reason"].null_count() == 0
    # The valid rows give exactly the reference's result.
    assert_same(canonical_engine(result, case), canonical_reference(case))


@given(journey_cases(max_events=10).filter(lambda c: len(c.events) >= 1), st.data())
@settings(deadline=None, max_examples=30)
def test_duplicate_event_ids_are_an_error(case: JourneyCase, data: st.DataObject) -> None:
    original = data.draw(st.sampled_from(case.events))
    duplicate = {**original, "occurred_at": original["occurred_at"] + 1}
    with pytest.raises(InputError):
        run_engine(case, frame=case.frame([*case.events, duplicate]))
