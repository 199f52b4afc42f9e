"""Hand-computed examples for sessions, touches and journeys (docs/journeys.md) against the reference.

Every expected value below is written out by hand, with the reasoning in a comment; the reference in
``tests/reference/journeys.py`` must reproduce it. The property tests then hold the engine to that
reference.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.reference.journeys import (
    JOURNEY_COLUMNS,
    build_journeys_reference,
    fnv1a_64,
    splitmix64_finalizer,
    stable_id,
    touch_source,
)

T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z in µs
US = 1
MIN = 60 * 1_000_000
HOUR = 60 * MIN
DAY = 24 * HOUR
TIMEOUT = 30 * MIN


def ev(event_id: str, t: int, type_: str = "PAGE_VIEW", anon_id: str = "u1", **columns) -> dict:
    return {"event_id": event_id, "anon_id": anon_id, "occurred_at": t, "type": type_, **columns}


def run(events: list[dict], **kwargs):
    return build_journeys_reference(events, **kwargs)


def by_id(journeys: list[dict]) -> dict[str, dict]:
    return {j["journey_id"]: j for j in journeys}


def events_of(journey_events: list[dict]) -> dict[str, list[str]]:
    """journey_id -> event ids in sequence order (checking that sequence numbers are 1..n)."""
    out: dict[str, list[tuple[int, str]]] = {}
    for row in journey_events:
        out.setdefault(row["journey_id"], []).append((row["sequence_number"], row["event_id"]))
    result = {}
    for jid, rows in out.items():
        rows.sort()
        assert [s for s, _ in rows] == list(range(1, len(rows) + 1))
        result[jid] = [e for _, e in rows]
    return result


# --------------------------------------------------------------------------------------------------------
# Stable ids
# --------------------------------------------------------------------------------------------------------

# An independent implementation, written differently on purpose: bytes built by hand, each byte read with
# int.from_bytes, the FNV prime 0x100000001b3 = 2^40 + 0x1b3 applied as a shift plus a small product, the
# finaliser written with explicit masks, and the hex digits produced by to_bytes(...).hex().
_M64 = (1 << 64) - 1


def _fnv1a_shift_add(data: bytes, basis: int) -> int:
    h = basis
    for i in range(len(data)):
        h ^= int.from_bytes(data[i : i + 1], "big")
        h = ((h << 40) + h * 0x1B3) & _M64
    return h


def _mix(z: int) -> int:
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & _M64
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & _M64
    return z ^ (z >> 31)


def _independent_stable_id(prefix: str, parts: list[str | None]) -> str:
    data = bytearray()
    for i, part in enumerate(parts):
        if i:
            data.append(31)
        data.extend(bytes([0]) if part is None else bytes(part, "utf-8"))
    h1 = _mix(_fnv1a_shift_add(bytes(data), 14695981039346656037))  # 0xcbf29ce484222325
    h2 = _mix(_fnv1a_shift_add(bytes(data), 9521211207457086692))  # 0x84222325cbf29ce4
    return f"{prefix}_{h1.to_bytes(8, 'big').hex()}{h2.to_bytes(8, 'big').hex()}"


def test_stable_id_hand_derivation() -> None:
    # stable_id("jr", ["a"]): one part, so b = b"a" = 0x61 (no separator).
    #
    # h1, FNV-1a with basis 0xcbf29ce484222325:
    #   xor:      0xcbf29ce484222325 ^ 0x61                   = 0xcbf29ce484222344
    #   multiply: h * 0x100000001b3 = (h << 40) + h * 0x1b3   (mod 2^64)
    #             (h << 40) mod 2^64                           = 0x2223440000000000
    #             h * 0x1b3 = 0x15a8d40984c8601ec8c, mod 2^64  = 0x8d40984c8601ec8c
    #             sum mod 2^64                                 = 0xaf63dc4c8601ec8c  (the published FNV-1a 64 of "a")
    #   splitmix64 finaliser on z = 0xaf63dc4c8601ec8c:
    #     z ^= z >> 30  (z >> 30 = 0x2bd8f7132)                 -> 0xaf63dc4e3b8e9dbe
    #     z *= 0xbf58476d1ce4e5b9                               -> 0xbc35affae262f44e
    #     z ^= z >> 27  (z >> 27 = 0x1786b5ff5c)                -> 0xbc35afed64d70b12
    #     z *= 0x94d049bb133111eb                               -> 0x02c0bdbf4d955b86
    #     z ^= z >> 31  (z >> 31 = 0x5817b7e)                   -> 0x02c0bdbf481420f8
    # h2, FNV-1a with basis 0x84222325cbf29ce4:
    #   xor:      0x84222325cbf29ce4 ^ 0x61                   = 0x84222325cbf29c85
    #   multiply                                               = 0x789e3e398d3ff5ff
    #   finaliser: 0x789e3e386f470d19 -> 0x8becd5ae5f53d411 -> 0x8becd5bf22c961da
    #              -> 0xa4e626d137164d1e -> 0xa4e626d07eda00bc
    # hex32 = "02c0bdbf481420f8" + "a4e626d07eda00bc" (format(.., "016x") keeps the leading zero).
    expected = "jr_02c0bdbf481420f8a4e626d07eda00bc"
    assert stable_id("jr", ["a"]) == expected
    assert _independent_stable_id("jr", ["a"]) == expected

    # The intermediate values, step by step.
    assert fnv1a_64(b"a", 0xCBF29CE484222325) == 0xAF63DC4C8601EC8C
    assert splitmix64_finalizer(0xAF63DC4C8601EC8C) == 0x02C0BDBF481420F8
    assert fnv1a_64(b"a", 0x84222325CBF29CE4) == 0x789E3E398D3FF5FF
    assert splitmix64_finalizer(0x789E3E398D3FF5FF) == 0xA4E626D07EDA00BC


def test_stable_id_primitives_match_published_vectors() -> None:
    # FNV-1a 64 test vectors (Fowler/Noll/Vo): "" -> the offset basis, "a", "foobar".
    assert fnv1a_64(b"", 0xCBF29CE484222325) == 0xCBF29CE484222325
    assert fnv1a_64(b"a", 0xCBF29CE484222325) == 0xAF63DC4C8601EC8C
    assert fnv1a_64(b"foobar", 0xCBF29CE484222325) == 0x85944171F73967E8
    # splitmix64 (Vigna): the generator's output is the finaliser of state += 0x9e3779b97f4a7c15.
    gamma = 0x9E3779B97F4A7C15
    assert splitmix64_finalizer(gamma) == 0xE220A8397B1DCDAF  # seed 0, first output
    assert splitmix64_finalizer((1234567 + gamma) & _M64) == 6457827717110365317  # seed 1234567, 1st
    assert splitmix64_finalizer((1234567 + 2 * gamma) & _M64) == 3203168211198807973  # 2nd


def test_stable_id_null_part_and_separators() -> None:
    # [None, "u1", "e1"] -> b = 0x00 0x1F "u1" 0x1F "e1"; a null part is the single byte 0x00.
    sid = stable_id("se", [None, "u1", "e1"])
    assert sid == _independent_stable_id("se", [None, "u1", "e1"])
    assert sid == "se_ef03dc5b9dcd3c2d0706853e31518d56"
    assert len(sid) == 3 + 32 and sid[3:] == sid[3:].lower()
    # The null part is not the empty string, and the separator makes ["u1", "e1"] differ from ["u1e1"].
    assert stable_id("se", [None, "u1", "e1"]) != stable_id("se", ["", "u1", "e1"])
    assert stable_id("se", ["u1", "e1"]) != stable_id("se", ["u1e1"])
    # The prefix is not hashed: only the text before "_" changes.
    assert stable_id("jr", ["u1", "e1"])[3:] == stable_id("se", ["u1", "e1"])[3:]


@given(st.text(max_size=3), st.lists(st.one_of(st.none(), st.text(max_size=6)), max_size=4))
def test_stable_id_equals_independent_implementation(prefix: str, parts: list[str | None]) -> None:
    assert stable_id(prefix, parts) == _independent_stable_id(prefix, parts)


# --------------------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------------------


def test_gap_equal_to_timeout_stays_in_session_one_more_microsecond_splits() -> None:
    events = [
        ev("e1", T0),
        ev("e2", T0 + TIMEOUT),  # gap = 30 min exactly: not greater, same session
        ev("e3", T0 + 2 * TIMEOUT + 1 * US),  # gap = 30 min + 1 µs: new gap session starting at e3
        ev("e4", T0 + 2 * TIMEOUT + 1 * US + TIMEOUT),  # gap exactly 30 min again: e3's session
    ]
    _, _, sessions = run(events)
    s1 = stable_id("se", ["u1", "e1"])  # group key ["u1"] + first event of the gap session
    s3 = stable_id("se", ["u1", "e3"])
    assert sessions == {"e1": s1, "e2": s1, "e3": s3, "e4": s3}

    # A custom timeout: with 10 min, every gap here (>= 30 min) splits.
    _, _, sessions = run(events, session_timeout_us=10 * MIN)
    assert sessions == {e: stable_id("se", ["u1", e]) for e in ("e1", "e2", "e3", "e4")}


def test_own_session_id_is_kept_and_does_not_restart_gap_sessions() -> None:
    events = [
        ev("e1", T0, session_id="s-own"),  # own id kept; e1 still starts the gap session
        ev("e2", T0 + 1 * MIN),  # no own id: derived from e1, the first event of its gap session
        ev("e3", T0 + 2 * MIN, session_id="s-x"),  # own id kept although in the same gap session
        ev("e4", T0 + 3 * MIN),  # still the gap session of e1
    ]
    journeys, _, sessions = run(events)
    derived = stable_id("se", ["u1", "e1"])
    assert sessions == {"e1": "s-own", "e2": derived, "e3": "s-x", "e4": derived}
    # The journey's session_id is the session of its last event (e4).
    (journey,) = journeys
    assert journey["session_id"] == derived

    # Journey ending at e3 (a conversion): session_id is e3's own id.
    events[2]["type"] = "CONVERSION"
    journeys, _, _ = run(events)
    assert [j["session_id"] for j in sorted(journeys, key=lambda j: j["started_at"])] == ["s-x", derived]


# --------------------------------------------------------------------------------------------------------
# Journeys
# --------------------------------------------------------------------------------------------------------


def test_full_journey_row() -> None:
    # One converting journey, every column written out.
    events = [
        ev("a1", T0, utm_source="google", utm_medium="cpc", utm_campaign="spring"),
        ev("a2", T0 + 5 * MIN),
        ev("a3", T0 + 10 * MIN, "CONVERSION", value_micros=1_990_000, name="purchase"),
    ]
    journeys, journey_events, _ = run(events)
    jid = stable_id("jr", ["u1", "a1"])
    sid = stable_id("se", ["u1", "a1"])
    assert journeys == [
        {
            "anon_id": "u1",
            "journey_id": jid,
            "session_id": sid,
            "status": "CONVERTED",
            "started_at": T0,
            "converted_at": T0 + 10 * MIN,
            "last_activity_at": T0 + 10 * MIN,
            "conversion_value_micros": 1_990_000,
            "conversion_name": "purchase",
            "first_utm_source": "google",
            "first_utm_medium": "cpc",
            "first_utm_campaign": "spring",
            "last_utm_source": "google",
            "last_utm_medium": "cpc",
            "last_utm_campaign": "spring",
            "touchpoint_count": 1,
            "event_count": 3,
        }
    ]
    assert list(journeys[0]) == ["anon_id", *JOURNEY_COLUMNS]
    assert journey_events == [
        {"journey_id": jid, "event_id": "a1", "sequence_number": 1, "occurred_at": T0},
        {"journey_id": jid, "event_id": "a2", "sequence_number": 2, "occurred_at": T0 + 5 * MIN},
        {"journey_id": jid, "event_id": "a3", "sequence_number": 3, "occurred_at": T0 + 10 * MIN},
    ]


def _two_conversions_then_trailing() -> list[dict]:
    return [
        ev("e1", T0),
        ev("e2", T0 + 1 * HOUR, "CONVERSION", value_micros=500, name="signup"),
        ev("e3", T0 + 2 * HOUR),
        ev("e4", T0 + 3 * HOUR, "CONVERSION", value_micros=7),
        ev("e5", T0 + 4 * HOUR),
        ev("e6", T0 + 5 * HOUR),
    ]


def test_two_conversions_then_trailing_events() -> None:
    journeys, journey_events, _ = run(_two_conversions_then_trailing())
    j1, j2, j3 = (stable_id("jr", ["u1", e]) for e in ("e1", "e3", "e5"))
    assert events_of(journey_events) == {j1: ["e1", "e2"], j2: ["e3", "e4"], j3: ["e5", "e6"]}
    got = by_id(journeys)
    assert (got[j1]["status"], got[j1]["converted_at"], got[j1]["conversion_value_micros"]) == (
        "CONVERTED",
        T0 + 1 * HOUR,
        500,
    )
    assert got[j1]["conversion_name"] == "signup"
    assert (got[j2]["status"], got[j2]["converted_at"], got[j2]["conversion_value_micros"]) == (
        "CONVERTED",
        T0 + 3 * HOUR,
        7,
    )
    assert got[j2]["conversion_name"] is None  # no name given
    # Trailing run: as_of defaults to the latest event (e6): as_of - last_activity = 0 <= 30 days.
    assert got[j3]["status"] == "IN_PROGRESS"
    assert (got[j3]["converted_at"], got[j3]["conversion_value_micros"], got[j3]["conversion_name"]) == (None,) * 3
    assert (got[j3]["started_at"], got[j3]["last_activity_at"], got[j3]["event_count"]) == (
        T0 + 4 * HOUR,
        T0 + 5 * HOUR,
        2,
    )


@pytest.mark.parametrize(
    ("as_of_offset", "abandon_after", "status"),
    [
        (30 * DAY, 30 * DAY, "IN_PROGRESS"),  # as_of - last = 30 days exactly: <=, still in progress
        (30 * DAY + 1 * US, 30 * DAY, "ABANDONED"),  # one µs more
        (2 * HOUR, 2 * HOUR, "IN_PROGRESS"),
        (2 * HOUR + 1, 2 * HOUR, "ABANDONED"),
    ],
)
def test_trailing_status_by_as_of(as_of_offset: int, abandon_after: int, status: str) -> None:
    last = T0 + 5 * HOUR  # e6
    journeys, _, _ = run(_two_conversions_then_trailing(), as_of_us=last + as_of_offset, abandon_after_us=abandon_after)
    statuses = {j["journey_id"]: j["status"] for j in journeys}
    # as_of only changes the trailing journey; the converted ones stay CONVERTED.
    assert statuses == {
        stable_id("jr", ["u1", "e1"]): "CONVERTED",
        stable_id("jr", ["u1", "e3"]): "CONVERTED",
        stable_id("jr", ["u1", "e5"]): status,
    }


def test_default_as_of_is_latest_event_of_whole_input() -> None:
    # u1's last event is at T0; u2 has an event 31 days later, so the default as_of is T0 + 31 days and
    # u1's journey (31 days > 30 days of inactivity) is ABANDONED, u2's (0 days) IN_PROGRESS.
    events = [ev("e1", T0), ev("e2", T0 + 31 * DAY, anon_id="u2")]
    journeys, _, _ = run(events)
    assert {j["anon_id"]: j["status"] for j in journeys} == {"u1": "ABANDONED", "u2": "IN_PROGRESS"}


def test_conversion_as_first_event_and_consecutive_conversions() -> None:
    # Each CONVERSION closes a journey, so back-to-back conversions give one-event journeys.
    events = [ev("c1", T0, "CONVERSION"), ev("c2", T0 + MIN, "CONVERSION"), ev("c3", T0 + 2 * MIN, "CONVERSION")]
    journeys, journey_events, _ = run(events)
    assert [(j["status"], j["event_count"]) for j in journeys] == [("CONVERTED", 1)] * 3
    assert events_of(journey_events) == {stable_id("jr", ["u1", c]): [c] for c in ("c1", "c2", "c3")}


def test_null_value_on_conversion_counts_zero() -> None:
    events = [ev("e1", T0), ev("e2", T0 + MIN, "CONVERSION", value_micros=None), ev("e3", T0 + 2 * MIN)]
    journeys, _, _ = run(events)
    got = by_id(journeys)
    converted = got[stable_id("jr", ["u1", "e1"])]
    trailing = got[stable_id("jr", ["u1", "e3"])]
    assert converted["conversion_value_micros"] == 0  # null value on the conversion -> 0
    assert trailing["conversion_value_micros"] is None  # no conversion -> null
    # The largest int64 passes through unchanged; a value on a non-conversion event is ignored.
    events = [ev("e1", T0, value_micros=5), ev("e2", T0 + MIN, "CONVERSION", value_micros=2**63 - 1)]
    (journey,) = run(events)[0]
    assert journey["conversion_value_micros"] == 2**63 - 1


# --------------------------------------------------------------------------------------------------------
# UTM and touches
# --------------------------------------------------------------------------------------------------------


def test_first_and_last_utm_come_from_the_right_events() -> None:
    events = [
        ev("e1", T0),  # no UTM at all
        ev("e2", T0 + 1 * MIN, utm_campaign="campaign-only"),  # campaign alone: not a UTM event
        ev("e3", T0 + 2 * MIN, utm_source="google", utm_campaign="c3"),  # first: source set, medium null
        ev("e4", T0 + 3 * MIN, utm_source="news", utm_medium="email", utm_campaign="c4"),
        ev("e5", T0 + 4 * MIN, gclid="G1", utm_medium="cpc"),  # last: medium set (click id irrelevant here)
        ev("e6", T0 + 5 * MIN),
        ev("e7", T0 + 6 * MIN, "CONVERSION", utm_campaign="c7"),  # campaign alone again: ignored
    ]
    (journey,) = run(events)[0]
    # first: all three columns from e3 (medium stays null, not borrowed from e4)
    assert (journey["first_utm_source"], journey["first_utm_medium"], journey["first_utm_campaign"]) == (
        "google",
        None,
        "c3",
    )
    # last: all three from e5 (source and campaign null, not borrowed from e4 / e7)
    assert (journey["last_utm_source"], journey["last_utm_medium"], journey["last_utm_campaign"]) == (None, "cpc", None)
    # touches: e3 (utm google/-/c3), e4 (utm news/email/c4), e5 (gclid G1) -> 3; e2 and e7 are not touches.
    assert journey["touchpoint_count"] == 3

    # A journey with no UTM event has all six columns null.
    (journey,) = run([ev("x1", T0, gclid="G"), ev("x2", T0 + 1, utm_campaign="c")])[0]
    assert [journey[f"{p}_utm_{c}"] for p in ("first", "last") for c in ("source", "medium", "campaign")] == [None] * 6


def test_touches_deduplicated_per_session_and_source() -> None:
    gap = TIMEOUT + 1  # more than the timeout: a new gap session
    t_s2 = T0 + 4 * MIN + gap
    events = [
        # session S1 = se(u1, e1)
        ev("e1", T0, utm_source="google", utm_medium="cpc", utm_campaign="x"),  # touch 1: utm google/cpc/x
        ev("e2", T0 + 1 * MIN, utm_source="google", utm_medium="cpc", utm_campaign="x"),  # same (S1, source): no
        ev("e3", T0 + 2 * MIN, utm_source="google", utm_medium="cpc", utm_campaign="y"),  # other campaign: touch 2
        ev("e4", T0 + 3 * MIN, gclid="g1"),  # touch 3: (gclid, g1)
        ev("e5", T0 + 4 * MIN, gclid="g1", utm_source="bing"),  # source is (gclid, g1) again: no
        # session S2 = se(u1, e6): the same source counts again in a new session
        ev("e6", t_s2, utm_source="google", utm_medium="cpc", utm_campaign="x"),  # touch 4
        ev("e7", t_s2 + 1 * MIN, "CONVERSION"),
        # next journey, still session S2: (S2, google/cpc/x) was seen, but in the previous journey -> counts
        ev("e8", t_s2 + 2 * MIN, utm_source="google", utm_medium="cpc", utm_campaign="x"),  # touch 1 of J2
        ev("e9", t_s2 + 3 * MIN, utm_source="google", utm_medium="cpc", utm_campaign="x"),  # dup in J2: no
    ]
    journeys, _, sessions = run(events)
    assert sessions["e5"] == stable_id("se", ["u1", "e1"]) and sessions["e6"] == stable_id("se", ["u1", "e6"])
    got = by_id(journeys)
    assert got[stable_id("jr", ["u1", "e1"])]["touchpoint_count"] == 4
    assert got[stable_id("jr", ["u1", "e8"])]["touchpoint_count"] == 1


def test_touch_dedup_nulls_equal_and_own_session_ids() -> None:
    events = [
        # (utm, google, None, None) twice in one session: nulls compare equal -> 1 touch
        ev("e1", T0, utm_source="google"),
        ev("e2", T0 + 1 * MIN, utm_source="google"),
        # medium only: a different source (utm, None, email, None) -> touch 2
        ev("e3", T0 + 2 * MIN, utm_medium="email"),
        # two gap sessions apart, but both carry the own session id "s-own": same (session, source) -> 1 touch
        ev("e4", T0 + 1 * DAY, session_id="s-own", fbclid="F"),
        ev("e5", T0 + 2 * DAY, session_id="s-own", fbclid="F"),
    ]
    (journey,) = run(events, as_of_us=T0 + 2 * DAY)[0]
    assert journey["touchpoint_count"] == 3
    assert journey["session_id"] == "s-own"


def test_click_id_precedence() -> None:
    assert touch_source({"gclid": "G", "fbclid": "F", "ttclid": "T", "utm_source": "s"}) == ("gclid", "G")
    assert touch_source({"gclid": None, "fbclid": "F", "ttclid": "T"}) == ("fbclid", "F")
    assert touch_source({"ttclid": "T", "utm_source": "s", "utm_medium": "m"}) == ("ttclid", "T")
    assert touch_source({"utm_source": "s", "utm_campaign": "c"}) == ("utm", "s", None, "c")
    assert touch_source({"utm_campaign": "c"}) is None
    assert touch_source({}) is None
    events = [
        ev("e1", T0, gclid="G", fbclid="F"),  # (gclid, G): touch 1
        ev("e2", T0 + 1 * MIN, fbclid="F"),  # (fbclid, F): a different source, touch 2
        ev("e3", T0 + 2 * MIN, fbclid="F", ttclid="T"),  # (fbclid, F) again: no
        ev("e4", T0 + 3 * MIN, ttclid="T"),  # (ttclid, T): touch 3
        ev("e5", T0 + 4 * MIN, gclid="G", utm_source="google", utm_medium="cpc"),  # click id wins: (gclid, G), no
        ev("e6", T0 + 5 * MIN, ttclid="G"),  # (ttclid, G) is not (gclid, G): touch 4
    ]
    (journey,) = run(events)[0]
    assert journey["touchpoint_count"] == 4


# --------------------------------------------------------------------------------------------------------
# Order and groups
# --------------------------------------------------------------------------------------------------------


def test_ties_in_time_are_ordered_by_event_id_bytes() -> None:
    # All at T0. UTF-8 byte order: "B" 0x42 < "a" 0x61 < "b" 0x62 < "z" 0x7a < "é" C3 A9 < "｡" EF BD A1
    # < "😀" F0 9F 98 80. (Case-insensitive order would put "a" before "B"; UTF-16 order would put
    # "😀" (D83D ...) before "｡" (FF61).)
    ids = ["😀", "b", "｡", "é", "a", "z", "B"]
    events = [ev(i, T0, "CONVERSION" if i == "b" else "PAGE_VIEW") for i in ids]
    journeys, journey_events, sessions = run(events)
    j1, j2 = stable_id("jr", ["u1", "B"]), stable_id("jr", ["u1", "z"])
    # The conversion "b" closes the first journey after B, a; the rest form the trailing journey.
    assert events_of(journey_events) == {j1: ["B", "a", "b"], j2: ["z", "é", "｡", "😀"]}
    assert {j["journey_id"]: j["status"] for j in journeys} == {j1: "CONVERTED", j2: "IN_PROGRESS"}
    # One gap session, started by the first event in order, "B".
    assert set(sessions.values()) == {stable_id("se", ["u1", "B"])}
    # Input order does not matter.
    assert run(list(reversed(events))) == (journeys, journey_events, sessions)


def test_organization_none_is_a_group_of_its_own() -> None:
    group_by = ("organization_id", "anon_id")
    events = [
        ev("e1", T0, organization_id=None),
        ev("e2", T0 + 1 * MIN, "CONVERSION", organization_id="o1"),
        ev("e3", T0 + 2 * MIN, "CONVERSION", organization_id=None),
        ev("e4", T0 + 3 * MIN, organization_id="o1"),
    ]
    journeys, journey_events, sessions = run(events, group_by=group_by)
    # Groups (None, u1): e1, e3 -> one converted journey; (o1, u1): e2 | e4.
    j_none = stable_id("jr", [None, "u1", "e1"])  # b = 00 1F "u1" 1F "e1"
    j_o1a, j_o1b = stable_id("jr", ["o1", "u1", "e2"]), stable_id("jr", ["o1", "u1", "e4"])
    assert j_none != stable_id("jr", ["u1", "e1"])  # the null organization is a key part (byte 0x00)
    assert events_of(journey_events) == {j_none: ["e1", "e3"], j_o1a: ["e2"], j_o1b: ["e4"]}
    got = by_id(journeys)
    assert [got[j]["organization_id"] for j in (j_none, j_o1a, j_o1b)] == [None, "o1", "o1"]
    assert [got[j]["status"] for j in (j_none, j_o1a, j_o1b)] == ["CONVERTED", "CONVERTED", "IN_PROGRESS"]
    assert list(got[j_none]) == ["organization_id", "anon_id", *JOURNEY_COLUMNS]
    # Sessions are per group: e1 and e3 are 2 min apart in group (None, u1).
    assert sessions == {
        "e1": stable_id("se", [None, "u1", "e1"]),
        "e3": stable_id("se", [None, "u1", "e1"]),
        "e2": stable_id("se", ["o1", "u1", "e2"]),
        "e4": stable_id("se", ["o1", "u1", "e2"]),
    }


def test_all_three_key_columns_in_doc_order() -> None:
    # Key parts are organization_id, site_id, anon_id in that order, whatever order group_by lists them.
    events = [ev("e1", T0, organization_id="o", site_id=None)]
    for group_by in (("organization_id", "site_id", "anon_id"), ("anon_id", "site_id", "organization_id")):
        (journey,) = run(events, group_by=group_by)[0]
        assert journey["journey_id"] == stable_id("jr", ["o", None, "u1", "e1"])
        assert list(journey)[:3] == ["organization_id", "site_id", "anon_id"]
    # Different anon_ids (same time) are different groups.
    journeys, _, _ = run([ev("e1", T0), ev("e2", T0, anon_id="u2")])
    assert {j["journey_id"] for j in journeys} == {stable_id("jr", ["u1", "e1"]), stable_id("jr", ["u2", "e2"])}


@pytest.mark.parametrize(
    "bad",
    [
        {"event_id": None},
        {"anon_id": None},
        {"occurred_at": None},
        {"type": "CLICK"},
        {"value_micros": -1},
    ],
)
def test_reference_rejects_invalid_rows(bad: dict) -> None:
    with pytest.raises(ValueError):
        run([{**ev("e1", T0), **bad}])


def test_reference_rejects_duplicate_ids() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        run([ev("e1", T0), ev("e1", T0 + 1, anon_id="u2")])


def test_empty_input() -> None:
    assert run([]) == ([], [], {})
