"""Focused tests of the journey kernels and of build_journeys' plumbing (docs/journeys.md).

The full comparison with the reference lives in test_journeys_properties.py; here each kernel is checked
on small hand-made inputs, and the stable id against a plain Python transcription of the doc's formula.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import optiq_engine as oq
from optiq_engine import journeys
from optiq_engine.frames import normalize_events
from optiq_engine.grouping import arrow_strings, readonly
from optiq_engine.kernels import journeys as kj
from optiq_engine.kernels.stable_id import hex_ids, key_hashes

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
MIN = 60_000_000  # one minute in microseconds


# --- stable ids: the doc's formula, transcribed -------------------------------------------------------

_MASK64 = (1 << 64) - 1


def _splitmix_finaliser(z: int) -> int:
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & _MASK64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _fnv1a(data: bytes, basis: int) -> int:
    h = basis
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & _MASK64
    return h


def doc_stable_id(prefix: str, parts: list[str | None]) -> str:
    """``stable_id(prefix, parts)`` exactly as docs/journeys.md writes it."""
    b = b"\x1f".join(b"\x00" if p is None else p.encode("utf-8") for p in parts)
    h1 = _splitmix_finaliser(_fnv1a(b, 0xCBF29CE484222325))
    h2 = _splitmix_finaliser(_fnv1a(b, 0x84222325CBF29CE4))
    return prefix + "_" + format(h1, "016x") + format(h2, "016x")


def test_doc_formula_transcription_has_the_fnv_known_answer() -> None:
    # FNV-1a 64 of "a" is a published test vector; it pins the transcription the tests rely on.
    assert _fnv1a(b"a", 0xCBF29CE484222325) == 0xAF63DC4C8601EC8C
    assert _fnv1a(b"", 0xCBF29CE484222325) == 0xCBF29CE484222325


def _arrow_parts(columns: list[list[str | None]]):
    parts = [arrow_strings(pl.Series(c, dtype=pl.String)) for c in columns]
    return tuple(p[0] for p in parts), tuple(p[1] for p in parts), tuple(p[2] for p in parts)


def test_key_hashes_and_hex_ids_follow_the_doc() -> None:
    org = ["o1", None, "", "ü-org", "o1"]
    anon = ["u1", "u1", "u1", "", None]
    event = ["e1", "e2", "ÉvÉnt \u2603", "x", ""]
    offsets, data, valid = _arrow_parts([org, anon, event])
    rows = np.tile(np.arange(5, dtype=np.int64), (3, 1))
    hashes = key_hashes(offsets, data, valid, *readonly(rows))
    raw = hex_ids(*readonly(np.frombuffer(b"jr_", dtype=np.uint8), hashes, np.array([4, 0, 2, 0])))
    got = [bytes(r).decode() for r in raw]
    assert got == [doc_stable_id("jr", [org[i], anon[i], event[i]]) for i in (4, 0, 2, 0)]


def test_key_hashes_ignores_unused_tuple_slots_and_reads_rows_per_part() -> None:
    offsets, data, valid = _arrow_parts([["site"], ["u1", "u2", "u3"], ["a", "b", "c"], ["unused"]])
    rows = np.array([[0, 0, 0], [2, 1, 0], [0, 1, 2]], dtype=np.int64)  # 3 parts of 4 columns
    hashes = key_hashes(offsets, data, valid, *readonly(rows))
    raw = hex_ids(*readonly(np.frombuffer(b"se_", dtype=np.uint8), hashes, np.arange(3)))
    assert [bytes(r).decode() for r in raw] == [
        doc_stable_id("se", ["site", "u3", "a"]),
        doc_stable_id("se", ["site", "u2", "b"]),
        doc_stable_id("se", ["site", "u1", "c"]),
    ]


def test_null_part_differs_from_empty_part() -> None:
    assert doc_stable_id("jr", [None, "u"]) != doc_stable_id("jr", ["", "u"])
    frame = pl.DataFrame({"site_id": [None, ""], "anon_id": ["u", "u"], "event_id": ["e", "e"]})
    (ids,) = journeys.stable_id_series(frame, ["site_id", "anon_id"], [("journey_id", "jr", np.array([0, 1]))])
    assert ids.to_list() == [doc_stable_id("jr", [None, "u", "e"]), doc_stable_id("jr", ["", "u", "e"])]


@given(
    st.lists(
        st.tuples(st.one_of(st.none(), st.text(max_size=6)), st.text(max_size=8), st.text(min_size=1, max_size=8)),
        min_size=1,
        max_size=20,
    ),
    st.booleans(),
)
def test_stable_id_series_matches_the_doc_formula(keys: list[tuple[str | None, str, str]], constant_site: bool) -> None:
    frame = pl.DataFrame(
        {
            "organization_id": [k[0] for k in keys],
            "site_id": ["s"] * len(keys) if constant_site else [str(i % 2) for i in range(len(keys))],
            "anon_id": [k[1] for k in keys],
            "event_id": [k[2] for k in keys],
        },
        schema={c: pl.String for c in ("organization_id", "site_id", "anon_id", "event_id")},
    )
    rows = np.arange(len(keys))[::-1].copy()
    parts = ["organization_id", "site_id", "anon_id"]
    jr, se = journeys.stable_id_series(frame, parts, [("journey_id", "jr", rows), ("session_id", "se", rows[:1])])
    want = [doc_stable_id("jr", [*frame.row(int(i))]) for i in rows]
    assert jr.to_list() == want
    assert se.to_list() == [doc_stable_id("se", [*frame.row(int(rows[0]))])]


# --- sessions and journeys kernels --------------------------------------------------------------------


def test_gap_sessions_split_on_gaps_greater_than_the_timeout_and_on_group_change() -> None:
    h = np.array([7, 7, 7, 7, 9, 9], dtype=np.uint64)
    ts = np.array([0, 30, 60, 91, 92, 93], dtype=np.int64) * MIN
    start, first = kj.gap_sessions(*readonly(h, ts), 30 * MIN)
    # 30 min gaps stay in the session, 31 min splits, a new group always starts one.
    assert start.tolist() == [True, False, False, True, True, False]
    assert first.tolist() == [0, 0, 0, 3, 4, 4]


def test_derived_sessions_only_for_gap_sessions_with_an_event_without_its_own_id() -> None:
    start = np.array([True, False, True, False, True, True], dtype=np.bool_)
    own = kj.OWN_SESSION
    flags = np.array([own, 0, own, own, 0, own], dtype=np.int32)
    first, index = kj.derived_sessions(*readonly(start, flags))
    assert first.tolist() == [0, 4]  # the session at 2..3 has its own ids only, the one at 5 too
    assert index.tolist() == [-1, 0, -1, -1, 1, -1]


def test_journey_bounds_end_at_conversions_and_group_ends() -> None:
    c = kj.CONVERSION
    h = np.array([1, 1, 1, 1, 2, 2, 3], dtype=np.uint64)
    flags = np.array([0, c, 0, 0, c, c, 0], dtype=np.int32)
    offsets = kj.journey_bounds(*readonly(h, flags))
    assert offsets.tolist() == [0, 2, 4, 5, 6, 7]
    journey, sequence = kj.journey_positions(readonly(offsets)[0])
    assert journey.tolist() == [0, 0, 1, 1, 2, 3, 4]
    assert sequence.tolist() == [1, 2, 1, 2, 1, 1, 1]


def test_journey_summaries_first_and_last_utm_and_touch_offsets() -> None:
    u, t = kj.UTM, kj.TOUCH
    flags = np.array([0, t, u | t, 0, u | t, 0, t], dtype=np.int32)
    offsets = np.array([0, 4, 6, 7], dtype=np.int64)
    first, last, touch_offsets = kj.journey_summaries(*readonly(offsets, flags))
    assert first.tolist() == [2, 4, -1]  # a click-only touch is no UTM event
    assert last.tolist() == [2, 4, -1]
    assert touch_offsets.tolist() == [0, 2, 3, 4]


@pytest.mark.parametrize("n", [2, 5, kj._SMALL, kj._SMALL + 1, 3 * kj._SMALL])
def test_count_touchpoints_counts_distinct_keys_in_small_and_large_journeys(n: int) -> None:
    rng = np.random.default_rng(n)
    key = rng.integers(0, max(2, n // 3), n).astype(np.uint64)
    other = np.array([5, 5, 6], dtype=np.uint64)  # a second journey with a repeated key
    keys = np.concatenate([key, other])
    offsets = np.array([0, n, n + 3], dtype=np.int64)
    count, clashes = kj.count_touchpoints(*readonly(offsets, keys, keys))
    assert count.tolist() == [len(set(key.tolist())), 2] and clashes == 0


@pytest.mark.parametrize("n", [3, 3 * kj._SMALL])
def test_count_touchpoints_reports_a_key_clash(n: int) -> None:
    key = np.zeros(n, dtype=np.uint64)
    check = np.zeros(n, dtype=np.uint64)
    check[n // 2] = 1  # equal primary keys, different check hashes: the hash merged two keys
    count, clashes = kj.count_touchpoints(*readonly(np.array([0, n], dtype=np.int64), key, check))
    assert clashes > 0


def test_source_keys_take_the_first_click_id_and_ignore_utm_values_then() -> None:
    n = 5
    g = np.array([10, 10, 0, 0, 0], dtype=np.uint64)
    f = np.array([0, 0, 10, 0, 0], dtype=np.uint64)
    t = np.zeros(n, dtype=np.uint64)
    gv = np.array([1, 1, 0, 0, 0], dtype=np.bool_)
    fv = np.array([0, 0, 1, 0, 0], dtype=np.bool_)
    tv = np.zeros(n, dtype=np.bool_)
    src = np.array([1, 2, 1, 1, 1], dtype=np.uint64)
    med = np.array([3, 3, 3, 3, 4], dtype=np.uint64)
    camp = np.zeros(n, dtype=np.uint64)
    key = kj.source_keys(readonly(g, f, t), readonly(gv, fv, tv), readonly(src, med, camp))
    assert key[0] == key[1]  # same gclid, different utm_source: one source
    assert key[2] != key[0]  # the same value as an fbclid is another source
    assert len({int(key[3]), int(key[4]), int(key[0])}) == 3


def test_touch_keys_use_the_own_or_the_derived_session_hash() -> None:
    order = np.array([2, 0, 1], dtype=np.int64)  # sorted position -> input row
    touch_rank = np.array([0, -1, 1], dtype=np.int64)  # input rows 0 and 2 are touches
    derived_index = np.array([-1, 0, -1], dtype=np.int64)  # sorted position 1 (row 0) has no own id
    touch_pos = np.array([0, 1], dtype=np.int64)
    # per touch (input order): source (seed 1, seed 2), own session (seed 1, seed 2)
    touch_hash = np.array([[7, 8, 99, 99], [7, 8, 5, 6]], dtype=np.uint64)
    derived_hash = np.array([[5, 6]], dtype=np.uint64)  # the derived id hashes like row 2's own id
    key, check = kj.touch_keys(*readonly(touch_pos, order, touch_rank, derived_index, touch_hash, derived_hash))
    assert key[0] == key[1] and check[0] == check[1]


# --- build_journeys -------------------------------------------------------------------------------------


def events(**columns) -> pl.DataFrame:
    n = len(columns["event_id"])
    base = {
        "anon_id": ["u1"] * n,
        "type": ["PAGE_VIEW"] * n,
    }
    base.update(columns)
    if "minutes" in base:
        base["occurred_at"] = [T0 + timedelta(minutes=m) for m in base.pop("minutes")]
    return pl.DataFrame(base)


def test_sessions_on_a_hand_example() -> None:
    ev = events(
        event_id=["a", "b", "c", "d", "e"],
        minutes=[0, 30, 61, 62, 200],
        session_id=[None, None, None, "own", None],
    )
    result = oq.build_journeys(ev)
    sessions = dict(result.sessions.iter_rows())
    first = doc_stable_id("se", ["u1", "a"])
    assert sessions == {
        "a": first,
        "b": first,
        "c": doc_stable_id("se", ["u1", "c"]),
        "d": "own",  # its own id is kept; the gap session is still the one that starts at c
        "e": doc_stable_id("se", ["u1", "e"]),
    }
    (journey,) = result.journeys.iter_rows(named=True)
    assert journey["journey_id"] == doc_stable_id("jr", ["u1", "a"])
    assert journey["session_id"] == sessions["e"]
    assert journey["status"] == "IN_PROGRESS" and journey["event_count"] == 5


def test_ties_are_ordered_by_event_id_bytes() -> None:
    ev = events(
        event_id=["b", "B", "a", "é"], minutes=[0, 0, 0, 0], type=["PAGE_VIEW", "CONVERSION", "PAGE_VIEW", "PAGE_VIEW"]
    )
    result = oq.build_journeys(ev)
    rows = result.journey_events.select("journey_id", "event_id", "sequence_number").rows()
    first = doc_stable_id("jr", ["u1", "B"])
    second = doc_stable_id("jr", ["u1", "a"])
    assert rows == [(first, "B", 1), (second, "a", 1), (second, "b", 2), (second, "é", 3)]


def test_touchpoints_count_once_per_session_and_source() -> None:
    ev = events(
        event_id=["e1", "e2", "e3", "e4", "e5", "e6"],
        minutes=[0, 5, 10, 100, 101, 102],
        utm_source=["google", "google", None, "google", None, "google"],
        utm_medium=["cpc", "cpc", None, "cpc", None, "cpc"],
        gclid=[None, None, "G", None, "G", "G"],
        type=["PAGE_VIEW"] * 5 + ["CONVERSION"],
    )
    (journey,) = oq.build_journeys(ev).journeys.iter_rows(named=True)
    # session 1: utm(google, cpc) twice -> 1, gclid G -> 1; session 2: utm -> 1, gclid G twice (e5, e6) -> 1
    assert journey["touchpoint_count"] == 4
    assert (journey["first_utm_source"], journey["last_utm_source"]) == ("google", "google")
    assert journey["status"] == "CONVERTED" and journey["conversion_value_micros"] == 0


def test_an_own_session_id_equal_to_a_derived_one_is_the_same_session() -> None:
    # A recompute after some events got the engine's session id written back: one session, one touch.
    derived = doc_stable_id("se", ["u1", "e1"])
    ev = events(event_id=["e1", "e2"], minutes=[0, 5], session_id=[derived, None], utm_source=["x", "x"])
    result = oq.build_journeys(ev)
    assert result.sessions.get_column("session_id").to_list() == [derived, derived]
    assert result.journeys.get_column("touchpoint_count").to_list() == [1]


def test_conversion_value_name_and_status() -> None:
    ev = events(
        event_id=["a", "b", "c", "d"],
        anon_id=["u1", "u1", "u1", "u2"],
        minutes=[0, 10, 20, 0],
        type=["PAGE_VIEW", "CONVERSION", "CUSTOM", "PAGE_VIEW"],
        value_micros=[None, None, 5, 7],
        name=[None, "purchase", "x", None],
    )
    as_of = T0 + timedelta(days=30, minutes=10)
    frame = oq.build_journeys(ev, as_of=as_of).journeys.sort("started_at", "anon_id")
    assert frame.get_column("status").to_list() == ["CONVERTED", "ABANDONED", "IN_PROGRESS"]
    assert frame.get_column("conversion_value_micros").to_list() == [0, None, None]
    assert frame.get_column("conversion_name").to_list() == ["purchase", None, None]
    assert frame.get_column("converted_at").to_list() == [T0 + timedelta(minutes=10), None, None]


def test_output_schema_follows_the_doc() -> None:
    ev = events(event_id=["a"], minutes=[0], organization_id=["o"], site_id=["s"])
    result = oq.build_journeys(ev)
    ts = pl.Datetime("us", "UTC")
    assert result.journeys.schema == pl.Schema(
        {
            "journey_id": pl.String,
            "organization_id": pl.String,
            "site_id": pl.String,
            "anon_id": pl.String,
            "session_id": pl.String,
            "status": pl.String,
            "started_at": ts,
            "last_activity_at": ts,
            "converted_at": ts,
            "conversion_value_micros": pl.Int64,
            "conversion_name": pl.String,
            "first_utm_source": pl.String,
            "first_utm_medium": pl.String,
            "first_utm_campaign": pl.String,
            "last_utm_source": pl.String,
            "last_utm_medium": pl.String,
            "last_utm_campaign": pl.String,
            "touchpoint_count": pl.Int32,
            "event_count": pl.Int32,
        }
    )
    assert result.journey_events.schema == pl.Schema(
        {"journey_id": pl.String, "event_id": pl.String, "sequence_number": pl.Int32, "occurred_at": ts}
    )
    assert result.sessions.schema == pl.Schema({"event_id": pl.String, "session_id": pl.String})
    assert result.journeys.get_column("journey_id").to_list() == [doc_stable_id("jr", ["o", "s", "u1", "a"])]


def test_empty_input_gives_empty_frames_with_the_schema() -> None:
    ev = events(event_id=["a"], minutes=[0], type=["NOPE"])
    result = oq.build_journeys(ev, on_invalid="quarantine")
    assert result.journeys.height == 0 and "touchpoint_count" in result.journeys.columns
    assert result.journey_events.height == 0 and result.sessions.height == 0
    assert result.quarantined.get_column("reason").to_list() == ["unknown type"]
    assert result.as_of is None


def _random_events(seed: int, n: int = 300) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in rng.permutation(n)],
            "anon_id": rng.choice(["u1", "u2", "u3", "u4"], n).tolist(),
            "site_id": rng.choice(["s1", "s2"], n).tolist(),
            "occurred_at": [
                T0 + timedelta(minutes=int(m)) for m in rng.choice([0, 10, 40, 90, 3000], n) * rng.integers(0, 4, n)
            ],
            "type": rng.choice(["PAGE_VIEW", "PAGE_VIEW", "CUSTOM", "CONVERSION"], n).tolist(),
            "session_id": [None if x else "own" for x in rng.random(n) < 0.7],
            "utm_source": rng.choice(["g", "f", None], n).tolist(),
            "gclid": rng.choice(["G1", None, None, None], n).tolist(),
        }
    )


def test_results_do_not_depend_on_input_row_order() -> None:
    ev = _random_events(1)
    a = oq.build_journeys(ev)
    b = oq.build_journeys(ev.sample(fraction=1.0, shuffle=True, seed=5))
    assert a.journeys.equals(b.journeys)
    assert a.journey_events.equals(b.journey_events)
    assert a.sessions.equals(b.sessions)


def test_pandas_and_pyarrow_inputs_give_the_same_result() -> None:
    ev = _random_events(2)
    want = oq.build_journeys(ev)
    for frame in (ev.to_pandas(), ev.to_arrow()):
        got = oq.build_journeys(frame)
        assert got.journeys.equals(want.journeys) and got.sessions.equals(want.sessions)
    assert isinstance(ev.to_pandas(), pd.DataFrame)


def test_hash_collisions_fall_back_to_exact_codes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ev = _random_events(3)
    want = oq.build_journeys(ev)
    monkeypatch.setattr(journeys, "_HASH_MASK", np.uint64(3))  # 2-bit group and touch-key hashes
    with caplog.at_level(logging.WARNING, logger="optiq_engine.journeys"):
        got = oq.build_journeys(ev)
    assert "group hash collision" in caplog.text and "touch key hash collision" in caplog.text
    key = ["journey_id"]
    assert got.journeys.sort(key).equals(want.journeys.sort(key))
    assert got.journey_events.sort(key + ["sequence_number"]).equals(
        want.journey_events.sort(key + ["sequence_number"])
    )
    assert got.sessions.sort("event_id").equals(want.sessions.sort("event_id"))


def test_timings_cover_the_stages() -> None:
    result = oq.build_journeys(_random_events(4, n=20))
    assert {"validate", "sort", "sessions", "journeys", "ids", "touchpoints", "frames"} <= set(result.timings)


# --- validation -----------------------------------------------------------------------------------------


def test_normalize_events_rejects_unknown_types_and_negative_values() -> None:
    ev = events(
        event_id=["a", "b", "c", "d", "e"],
        minutes=[0, 1, 2, 3, 4],
        type=["PAGE_VIEW", "page_view", None, "CONVERSION", "CUSTOM"],
        value_micros=[None, 1, 2, -3, 4],
    )
    with pytest.raises(oq.InputError) as info:
        normalize_events(ev)
    assert info.value.counts == {"unknown type": 2, "negative value_micros": 1}
    norm = normalize_events(ev, on_invalid="quarantine")
    assert norm.frame.get_column("event_id").to_list() == ["a", "e"]
    assert norm.frame.get_column("value_micros").to_list() == [0, 4]
    assert dict(norm.quarantined.select("event_id", "reason").iter_rows()) == {
        "b": "unknown type",
        "c": "unknown type",
        "d": "negative value_micros",
    }


def test_events_without_value_column_get_zero_and_categorical_type_is_accepted() -> None:
    ev = events(event_id=["a", "b"], minutes=[0, 1], type=["PAGE_VIEW", "CONVERSION"])
    ev = ev.with_columns(pl.col("type").cast(pl.Categorical))
    (journey,) = oq.build_journeys(ev).journeys.iter_rows(named=True)
    assert journey["conversion_value_micros"] == 0


def test_duplicate_event_ids_are_an_error() -> None:
    with pytest.raises(oq.InputError, match="event_id"):
        oq.build_journeys(events(event_id=["a", "a"], minutes=[0, 1]))


@pytest.mark.parametrize(
    "options",
    [
        {"session_timeout": 30},
        {"session_timeout": timedelta(minutes=-1)},
        {"abandon_after": timedelta(days=-1)},
        {"as_of": "2026-01-01"},
        {"on_invalid": "drop"},
    ],
)
def test_bad_options_raise_config_error(options: dict) -> None:
    with pytest.raises(oq.ConfigError):
        oq.build_journeys(events(event_id=["a"], minutes=[0]), **options)


def test_naive_as_of_is_utc() -> None:
    ev = events(event_id=["a"], minutes=[0])
    naive = oq.build_journeys(ev, as_of=datetime(2026, 4, 1), abandon_after=timedelta(days=31))
    assert naive.journeys.get_column("status").to_list() == ["IN_PROGRESS"]
    assert naive.as_of == datetime(2026, 4, 1, tzinfo=UTC)
