"""extract_touchpoints() on frames: the reference (docs/touchpoints.md) on random events, worked examples,
bad rows, organizations sharing anon ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import optiq_engine as oq
from optiq_engine.errors import InputError
from tests.reference.touchpoints import BAD_PROPERTIES, extract_touchpoints_reference

T0 = datetime(2026, 3, 1, tzinfo=UTC)
T0_US = int(T0.timestamp() * 1_000_000)
COLUMNS = [
    "touchpoint_id",
    "organization_id",
    "anon_id",
    "session_id",
    "journey_id",
    "occurred_at",
    "event_id",
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
]
EVENT_SCHEMA = {
    "event_id": pl.String,
    "organization_id": pl.String,
    "anon_id": pl.String,
    "occurred_at": pl.Datetime("us", "UTC"),
    "type": pl.String,
    "session_id": pl.String,
    "utm_source": pl.String,
    "utm_medium": pl.String,
    "utm_campaign": pl.String,
    "utm_content": pl.String,
    "gclid": pl.String,
    "fbclid": pl.String,
    "ttclid": pl.String,
    "properties": pl.String,
    "url": pl.String,
}


def _frame(events: list[dict[str, Any]]) -> pl.DataFrame:
    rows = [{**e, "occurred_at": T0 + timedelta(microseconds=e["occurred_at"] - T0_US)} for e in events]
    return pl.DataFrame(rows, schema=EVENT_SCHEMA)


def _engine(events: list[dict[str, Any]], **kw: Any) -> tuple[list[dict[str, Any]], pl.DataFrame]:
    result = oq.extract_touchpoints(_frame(events), on_invalid="quarantine", **kw)
    tp = result.touchpoints.with_columns(pl.col("occurred_at").dt.epoch("us")).select(COLUMNS).sort("touchpoint_id")
    return tp.to_dicts(), result


def _reference(events: list[dict[str, Any]], **kw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tps, bad = extract_touchpoints_reference(events, group_by=("organization_id", "anon_id"), **kw)
    return sorted(({c: t.get(c) for c in COLUMNS} for t in tps), key=lambda t: t["touchpoint_id"]), bad


# --- random events -----------------------------------------------------------------------------------

_values = st.sampled_from(["google", "cpc", "c1", "a1", "é🙂", "x y", "", "12"])
_maybe = st.none() | _values
_json_scalar = st.none() | _values | st.integers(-5, 5) | st.booleans()
_property_keys = st.sampled_from(
    [
        "utm_source",
        "utmSource",
        "utm_medium",
        "utmMedium",
        "utm_campaign",
        "utmCampaign",
        "utm_content",
        "utmContent",
        "gclid",
        "fbclid",
        "ttclid",
        "url",
        "pageUrl",
        "other",
    ]
)
_url_params = st.sampled_from(
    ["utm_source", "utm_medium", "utm_campaign", "utm_content", "gclid", "fbclid", "ttclid", "x"]
)
_url_values = st.sampled_from(["g1", "%C3%A9t%C3%A9", "a+b", "%FF", "%zz", "", "c1", "%F0%9F%99%82"])


@st.composite
def _url(draw: st.DrawFn) -> str | None:
    if draw(st.booleans()):
        return None
    pairs = draw(st.lists(st.tuples(_url_params, _url_values), max_size=4))
    query = "&".join(f"{k}={v}" for k, v in pairs)
    return (
        draw(st.sampled_from(["https://s.example/p?", "https://s.example/?a&", "/x#f?"]))
        + query
        + draw(st.sampled_from(["", "#top", "#k?gclid=frag"]))
    )


@st.composite
def _properties(draw: st.DrawFn) -> str | None:
    kind = draw(st.sampled_from(["none", "object", "object", "bad", "other"]))
    if kind == "none":
        return None
    if kind == "bad":
        return draw(st.sampled_from(["not json", "{bad", "", '{"a":1} x', "[1,"]))
    if kind == "other":
        return draw(st.sampled_from(["null", "[1,2]", '"str"', "12"]))
    doc = draw(st.dictionaries(_property_keys, _json_scalar, max_size=4))
    if "url" in doc and draw(st.booleans()):
        doc["url"] = draw(_url())
    return json.dumps(doc, ensure_ascii=draw(st.booleans()))


@st.composite
def _events(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(0, 14))
    events = []
    for i in range(n):
        events.append(
            {
                "event_id": f"e{draw(st.integers(0, 3))}{i}",
                "organization_id": draw(st.sampled_from(["o1", "o2"])),
                "anon_id": draw(st.sampled_from(["u1", "u2", "ü"])),
                "occurred_at": T0_US + draw(st.sampled_from([0, 1, 10, 29, 30, 31, 45, 90])) * 60_000_000,
                "type": draw(st.sampled_from(["PAGE_VIEW", "PAGE_VIEW", "CONVERSION", "CUSTOM"])),
                "session_id": draw(st.none() | st.none() | st.just("s1")),
                "utm_source": draw(st.none() | st.none() | _maybe),
                "utm_medium": draw(st.none() | st.none() | _maybe),
                "utm_campaign": draw(st.none() | _maybe),
                "utm_content": draw(st.none() | _maybe),
                "gclid": draw(st.none() | st.none() | st.sampled_from(["g1", "g2"])),
                "fbclid": draw(st.none() | st.none() | st.just("f1")),
                "ttclid": draw(st.none() | st.none() | st.just("t1")),
                "properties": draw(_properties()),
                "url": draw(_url()),
            }
        )
    return events


_CAMPAIGNS = [
    {"campaign_id": "C1", "external_id": "c1", "platform_code": "GOOGLE_ADS", "organization_id": "o1"},
    {"campaign_id": "C2", "external_id": "c1", "platform_code": "META", "organization_id": "o1"},
    {"campaign_id": "C3", "external_id": "12", "platform_code": "TIKTOK", "organization_id": "o2"},
    {"campaign_id": "C4", "external_id": "google", "platform_code": "GOOGLE_ADS", "organization_id": "o1"},
]
_ADS = [
    {"ad_id": "A1", "campaign_id": "C1", "external_id": "a1", "organization_id": "o1"},
    {"ad_id": "A2", "campaign_id": "C2", "external_id": "a1", "organization_id": "o1"},
    {"ad_id": "A3", "campaign_id": "C3", "external_id": "x y", "organization_id": "o2"},
    {"ad_id": "A4", "campaign_id": "C4", "external_id": "12", "organization_id": "o1"},
]


@pytest.mark.slow
@given(_events(), st.booleans())
def test_engine_equals_the_reference_on_random_events(events: list[dict[str, Any]], resolve: bool) -> None:
    kw: dict[str, Any] = {}
    if resolve:
        kw = {"campaigns": pl.DataFrame(_CAMPAIGNS), "ads": pl.DataFrame(_ADS)}
    engine, result = _engine(events, **kw)
    ref_kw = {"campaigns": _CAMPAIGNS, "ads": _ADS, "by_org": (True, True)} if resolve else {}
    expected, bad = _reference(events, **ref_kw)
    assert engine == expected
    assert sorted(result.quarantined.get_column("event_id").to_list()) == sorted(e["event_id"] for e in bad)
    # One definition of a touchpoint: each journey's touchpoint_count is its number of touchpoints.
    counts = dict(result.touchpoints.group_by("journey_id").len().iter_rows())
    for journey_id, count in result.journeys.journeys.select("journey_id", "touchpoint_count").iter_rows():
        assert counts.get(journey_id, 0) == count


@pytest.mark.slow
@given(_events(), st.randoms(use_true_random=False))
def test_result_does_not_depend_on_row_order(events: list[dict[str, Any]], rnd: Any) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert _engine(events)[0] == _engine(shuffled)[0]


# --- worked examples ----------------------------------------------------------------------------------


def _ev(i: int, minute: int, **kw: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "organization_id": "o1",
        "anon_id": "u1",
        "type": "PAGE_VIEW",
        "occurred_at": T0_US + minute * 60_000_000,
        **kw,
    }


def test_worked_example_one_touchpoint_per_source_per_session() -> None:
    events = [
        _ev(1, 0, gclid="G"),  # touchpoint 1 (GOOGLE_ADS)
        _ev(2, 5, properties='{"gclid": "G"}'),  # same source, same session: not counted
        _ev(3, 6, utm_source="news", utm_medium="email"),  # touchpoint 2
        _ev(4, 7),  # direct: no touchpoint
        _ev(5, 50, gclid="G"),  # 43 min gap > 30: new session, touchpoint 3
        _ev(6, 51, type="CONVERSION"),
    ]
    tps, result = _engine(events)
    assert [(t["event_id"], t["platform_code"]) for t in sorted(tps, key=lambda t: t["occurred_at"])] == [
        ("e1", "GOOGLE_ADS"),
        ("e3", None),
        ("e5", "GOOGLE_ADS"),
    ]
    assert result.journeys.journeys.get_column("touchpoint_count").to_list() == [3]


def test_worked_example_conversion_mid_session_starts_a_new_touchpoint_with_rank_2() -> None:
    events = [_ev(1, 0, gclid="G"), _ev(2, 1, type="CONVERSION"), _ev(3, 2, gclid="G")]
    tps, _ = _engine(events)
    assert len(tps) == 2 and tps[0]["session_id"] == tps[1]["session_id"]
    ref, _ = _reference(events)
    assert [t["touchpoint_id"] for t in tps] == [t["touchpoint_id"] for t in ref]


def test_worked_example_parameters_from_column_then_properties_then_url() -> None:
    events = [
        _ev(
            1,
            0,
            utm_source="col",
            properties='{"utm_source": "prop", "utmMedium": "pm", "pageUrl": "https://a/?utm_campaign=%E2%82%AC+1&utm_medium=um"}',
        ),
    ]
    (tp,), _ = _engine(events)
    assert (tp["utm_source"], tp["utm_medium"], tp["utm_campaign"]) == ("col", "pm", "€ 1")


def test_worked_example_campaign_and_ad_resolution() -> None:
    camps = pl.DataFrame(_CAMPAIGNS)
    ads = pl.DataFrame(_ADS)
    events = [
        _ev(1, 0, gclid="G", utm_campaign="c1", utm_content="a1"),  # Google's c1 -> C1, its ad a1 -> A1
        _ev(2, 100, utm_source="s", utm_campaign="c1", utm_content="a1"),  # c1 on two platforms: ambiguous
        _ev(3, 200, fbclid="F", utm_content="a1"),  # no campaign; META's ad a1 -> A2, campaign C2
        _ev(4, 300, utm_source="s", utm_campaign="none", utm_content="12"),  # ad 12 -> A4 and its C4
        _ev(5, 400, gclid="G", utm_campaign="google", utm_content="a1"),  # C4 has no ad a1: ad null
    ]
    tps, _ = _engine(events, campaigns=camps, ads=ads)
    got = {t["event_id"]: (t["campaign_id"], t["ad_id"]) for t in tps}
    assert got == {"e1": ("C1", "A1"), "e2": (None, None), "e3": ("C2", "A2"), "e4": ("C4", "A4"), "e5": ("C4", None)}


def test_two_organizations_sharing_anon_ids_never_mix() -> None:
    events = [
        _ev(1, 0, gclid="G", utm_campaign="12"),
        {**_ev(2, 0, gclid="G", utm_campaign="12"), "organization_id": "o2"},
    ]
    tps, _ = _engine(events, campaigns=pl.DataFrame(_CAMPAIGNS))
    assert len(tps) == 2 and tps[0]["touchpoint_id"] != tps[1]["touchpoint_id"]
    assert tps[0]["session_id"] != tps[1]["session_id"]
    # Campaign "12" is TIKTOK's in o2: a gclid touch matches no campaign in either organization.
    assert {t["organization_id"]: t["campaign_id"] for t in tps} == {"o1": None, "o2": None}
    tiktok = [{**_ev(3, 0, ttclid="T", utm_campaign="12"), "organization_id": o} for o in ("o1", "o2")]
    tiktok[1]["event_id"] = "e4"
    tps, _ = _engine(tiktok, campaigns=pl.DataFrame(_CAMPAIGNS))
    assert {t["organization_id"]: t["campaign_id"] for t in tps} == {"o1": None, "o2": "C3"}


def test_bad_rows_are_counted_or_quarantined_never_dropped() -> None:
    events = _frame([_ev(1, 0, gclid="G"), _ev(2, 1, properties="{oops"), _ev(3, 2, gclid="H")]).with_columns(
        pl.when(pl.col("event_id") == "e3").then(None).otherwise(pl.col("anon_id")).alias("anon_id")
    )
    with pytest.raises(InputError) as info:
        oq.extract_touchpoints(events)
    assert info.value.counts == {BAD_PROPERTIES: 1, "null anon_id": 1}
    result = oq.extract_touchpoints(events, on_invalid="quarantine")
    assert sorted(result.quarantined.select("event_id", "reason").rows()) == [
        ("e2", BAD_PROPERTIES),
        ("e3", "null anon_id"),
    ]
    assert result.touchpoints.get_column("event_id").to_list() == ["e1"]
    assert result.touchpoints.height + result.quarantined.height + 0 == 3


def test_ids_are_stable_engine_ids_and_a_rerun_reproduces_them() -> None:
    data = oq.synthetic.generate(n_users=200, seed=5)
    events = data.touchpoints.select(
        pl.col("touchpoint_id").alias("event_id"),
        "anon_id",
        "occurred_at",
        pl.lit("PAGE_VIEW").alias("type"),
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "gclid",
        "fbclid",
        "ttclid",
    )
    a = oq.extract_touchpoints(events).touchpoints.sort("touchpoint_id")
    b = oq.extract_touchpoints(events.reverse()).touchpoints.sort("touchpoint_id")
    assert a.equals(b)
    assert a.get_column("touchpoint_id").str.contains(r"^tp_[0-9a-f]{32}$").all()
    assert a.get_column("touchpoint_id").n_unique() == a.height


def test_no_events_no_touchpoints() -> None:
    result = oq.extract_touchpoints(_frame([]))
    assert result.touchpoints.height == 0 and "touchpoint_id" in result.touchpoints.columns
